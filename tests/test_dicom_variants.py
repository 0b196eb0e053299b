"""Variants of real series, built with pydicom, that red-team the issue 15 rules.

Each test starts from a real series of the shared data and changes only the attributes
a scanner or an exporter could write differently; the pixels carry what the result must
show (the time point of a frame), so a mixed or reordered volume is seen in its values.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medimg_build.errors import DicomSeriesError
from medimg_build.io import discover_series, read_image
from medimg_build.io.read_options import read_options

GE_FMRI = "dcm_qa_nih/In/20180918GE/mr_0004"  # file k: slice k % 15, time point k // 15
N_SLICES, N_TIMES = 15, 10
SIEMENS_PHASE = "dcm_qa_vendor/dcm_qa_fmap/In/Siemens/3_gre_field_magph"  # 36 slices


def _edited_copy(source: Path, folder: Path, edit) -> None:
    """The series copied to ``folder``, each file's dataset changed by ``edit(ds, k)``."""
    folder.mkdir()
    for k, path in enumerate(sorted(source.glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        edit(ds, k)
        ds.save_as(folder / path.name)


def _time_points_per_volume(image) -> list[list[int]]:
    return [sorted(np.unique(image.array[..., v]).astype(int).tolist())
            for v in range(image.array.shape[-1])]


@pytest.mark.parametrize("stamp", ["date and time", "datetime with offset"])
def test_volumes_acquired_across_midnight_keep_their_order(shared_data, tmp_path, stamp):
    # InstanceNumber restarting in every volume leaves the acquisition time to order the
    # volumes (dcm2niix's tie-break). A run from 23:59:55 to 00:00:04 restarts the time
    # of day at midnight: without the date the last five volumes came first, silently.
    # (dcm2niix 1.0.20260724 orders this series neither way: its volumes mix time points.)
    start = datetime.datetime(2018, 9, 18, 23, 59, 55)

    def run_past_midnight(ds, k):
        t = k // N_SLICES
        ds.PixelData = np.full(ds.pixel_array.shape, t, ds.pixel_array.dtype).tobytes()
        ds.InstanceNumber = k % N_SLICES + 1
        when = start + datetime.timedelta(seconds=t, milliseconds=40 * (k % N_SLICES))
        if stamp == "date and time":
            ds.AcquisitionDate = when.strftime("%Y%m%d")
            ds.AcquisitionTime = when.strftime("%H%M%S.%f")
        else:
            del ds.AcquisitionTime
            ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S.%f") + "+0100"

    folder = tmp_path / "fmri"
    _edited_copy(shared_data / GE_FMRI, folder, run_past_midnight)
    image = read_image(folder)
    assert _time_points_per_volume(image) == [[t] for t in range(N_TIMES)]


def test_echo_time_written_with_a_rounding_error_is_one_volume(shared_data, tmp_path):
    # Alternate slices saying TE 7.65 and 7.650001 ms are one echo. dcm2niix compares the
    # float TE exactly (nii_dicom_batch.cpp, isSameSet) and writes two interleaved
    # half-volumes (_ph and _pha); ours keeps one volume of all 36 slices.
    def round_echo_time(ds, k):
        ds.EchoTime = "7.650001" if k % 2 else "7.65"

    folder = tmp_path / "phase"
    _edited_copy(shared_data / SIEMENS_PHASE, folder, round_echo_time)
    (ref,) = discover_series(folder).series
    assert (ref.split, ref.image_kind, ref.n_frames) == ("", "phase", 36)
    assert read_image(folder).array.shape[-1] == 36


def _ge_fmri_by_time_point(shared_data: Path, folder: Path, edit) -> None:
    """The GE fMRI, each frame's pixels set to its time point t, then ``edit(ds, k, t)``."""
    def mark(ds, k):
        t = k // N_SLICES
        ds.PixelData = np.full(ds.pixel_array.shape, t, ds.pixel_array.dtype).tobytes()
        edit(ds, k, t)

    _edited_copy(shared_data / GE_FMRI, folder, mark)


def test_temporal_position_missing_from_one_volume_does_not_move_it(shared_data, tmp_path):
    # TemporalPositionIdentifier on every volume but the 7th: an absent number sorted
    # first, so that volume silently became the first. A key only some frames carry is
    # not used; InstanceNumber (dcm2niix's sort key, fillTDCMsort) orders the series.
    def drop_one_volume_s_position(ds, k, t):
        if t != 6:
            ds.TemporalPositionIdentifier = t + 1

    folder = tmp_path / "fmri"
    _ge_fmri_by_time_point(shared_data, folder, drop_one_volume_s_position)
    image = read_image(folder)
    assert _time_points_per_volume(image) == [[t] for t in range(N_TIMES)]


def test_acquisition_time_missing_from_one_volume_is_refused(shared_data, tmp_path):
    # InstanceNumber restarting per volume leaves AcquisitionTime alone to order the
    # volumes; the 7th volume's files lack it, so nothing says where that volume goes.
    # It was put first silently (dcm2niix 1.0.20260724 mixes time points here).
    def drop_one_volume_s_time(ds, k, t):
        ds.InstanceNumber = k % N_SLICES + 1
        ds.AcquisitionTime = f"1148{10 + t:02d}"
        if t == 6:
            del ds.AcquisitionTime

    folder = tmp_path / "fmri"
    _ge_fmri_by_time_point(shared_data, folder, drop_one_volume_s_time)
    with pytest.raises(DicomSeriesError, match="lacks the numbers that order its volumes"):
        read_image(folder)


PHILIPS_ASL = "dcm_qa_vendor/dcm_qa_philips_enh/In/cl"  # 1903_*: classic, 240 files


def test_philips_scale_slope_on_some_files_only_is_refused(shared_data, tmp_path):
    # Every other file without MRScaleSlope: the precise values of those files are
    # unknown. The series was read in displayed values, without a word, though precise
    # ones were asked for (dcm2niix divides every file by another file's SS).
    folder = tmp_path / "asl"
    folder.mkdir()
    for k, path in enumerate(sorted((shared_data / PHILIPS_ASL).glob("1903_*.dcm"))):
        ds = pydicom.dcmread(path)
        if k % 2:
            del ds[0x2005, 0x100E]
        ds.save_as(folder / path.name)
    with pytest.raises(DicomSeriesError, match=r"MRScaleSlope \(2005,100E\) on 120 of 240"):
        read_image(folder)
    with read_options(philips_scaling="display"):  # RS/RI only: every file has them
        image = read_image(folder)
    assert "philips_scaling" not in image.meta["intensity"]
    assert image.array.shape == (96, 96, 40, 6)


def test_acquisition_date_on_some_volumes_only_does_not_reorder_them(shared_data, tmp_path):
    # Restarted InstanceNumbers, one day, AcquisitionDate on the first five volumes only:
    # the date may order only when every frame gives it, else the time of day alone.
    def date_half_the_volumes(ds, k, t):
        ds.InstanceNumber = k % N_SLICES + 1
        ds.AcquisitionTime = f"1148{10 + t:02d}"
        if t < 5:
            ds.AcquisitionDate = "20180918"
        elif "AcquisitionDate" in ds:
            del ds.AcquisitionDate

    folder = tmp_path / "fmri"
    _ge_fmri_by_time_point(shared_data, folder, date_half_the_volumes)
    image = read_image(folder)
    assert _time_points_per_volume(image) == [[t] for t in range(N_TIMES)]
