"""Volume order of 4D DICOM series: never by AcquisitionNumber (issue 15, item 2).

dcm2niix sorts classic frames by (SeriesNumber, InstanceNumber) and breaks ties by
AcquisitionTime (nii_dicom_batch.cpp: fillTDCMsort, compareTDCMsort); vendors reuse
AcquisitionNumber (a Philips DTI carries 19 on some frames of a volume and 22 on the
rest), so a key on it shuffles volumes slice by slice. The fMRI-like series here are
real GE files (15 slices x 10 time points) whose pixels are overwritten with their time
point, so a volume holding slices of two time points shows it in its values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medimg_build.io import read_image
from medimg_build.io.dicom_4d import split_volumes
from medimg_build.io.dicom_frames import frames_of

from dcm2niix_reference import assert_same_volume, run_dcm2niix

GE_FMRI = "dcm_qa_nih/In/20180918GE/mr_0004"  # file k: slice k % 15, time point k // 15
N_SLICES, N_TIMES = 15, 10
PHILIPS_DTI = "dcm_qa_vendor/dcm_qa_philips_enh/In/cl"


def _fmri_with_time_point_pixels(shared_data: Path, folder: Path, edit) -> None:
    """The GE series copied to ``folder``, each frame's pixels set to its time point and
    its header changed by ``edit(dataset, k, time_point)``."""
    folder.mkdir()
    for k, path in enumerate(sorted((shared_data / GE_FMRI).glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        t = k // N_SLICES
        ds.PixelData = np.full(ds.pixel_array.shape, t, ds.pixel_array.dtype).tobytes()
        edit(ds, k, t)
        ds.save_as(folder / path.name)


def _time_points_per_volume(image) -> list[list[int]]:
    return [sorted(np.unique(image.array[..., v]).astype(int).tolist())
            for v in range(image.array.shape[-1])]


def test_reused_acquisition_numbers_do_not_mix_time_points(shared_data, tmp_path):
    # A counter wrapping across the series (1, 2, 3, 4, 1, ...), so that the frames of
    # one slice position carry numbers out of time order: sorting by it would put slices
    # of several time points in one volume.
    def reuse_acquisition_number(ds, k, t):
        ds.AcquisitionNumber = k % 4 + 1

    folder = tmp_path / "fmri"
    _fmri_with_time_point_pixels(shared_data, folder, reuse_acquisition_number)
    image = read_image(folder)
    assert _time_points_per_volume(image) == [[t] for t in range(N_TIMES)]
    assert "AcquisitionNumber" not in image.meta["dicom"]["VolumesVaryIn"]


def test_acquisition_time_breaks_ties_of_restarted_instance_numbers(shared_data, tmp_path):
    # InstanceNumber restarting at 1 in every volume, one AcquisitionNumber for all: the
    # acquisition time orders the volumes, as dcm2niix's fillTDCMsort tie-break does.
    def restart_instance_numbers(ds, k, t):
        ds.InstanceNumber = k % N_SLICES + 1
        ds.AcquisitionNumber = 1
        ds.AcquisitionTime = f"1200{2 * (N_TIMES - t):02d}.{k % N_SLICES:02d}"  # reversed

    folder = tmp_path / "fmri"
    _fmri_with_time_point_pixels(shared_data, folder, restart_instance_numbers)
    image = read_image(folder)
    assert _time_points_per_volume(image) == [[t] for t in reversed(range(N_TIMES))]


@pytest.fixture(scope="module")
def philips_dti(shared_data, tmp_path_factory):
    """The real Philips classic DTI (82 slices x 17 volumes; AcquisitionNumber 19 on 88
    frames, 22 on the rest), alone in a folder, and our image of it."""
    folder = tmp_path_factory.mktemp("philips") / "2201"
    folder.mkdir()
    for path in sorted((shared_data / PHILIPS_DTI).glob("2201_*.dcm")):
        (folder / path.name).symlink_to(path)
    return folder, read_image(folder)


def test_philips_dti_b_values_equal_the_shared_reference(shared_data, philips_dti):
    # The collection's own dcm2niix answer (its .nii is too large to be shared).
    facts = philips_dti[1].meta["dicom"]
    expected = np.loadtxt(shared_data / "dcm_qa_vendor/dcm_qa_philips_enh/Ref/"
                          "2201_WIP_DTI_S2MB2_cl.bval")
    np.testing.assert_array_equal(facts["DiffusionBValues"], expected)
    assert facts["NumberOfVolumes"] == 17


def test_philips_dti_with_several_acquisition_numbers_equals_dcm2niix(philips_dti, tmp_path):
    """Volumes, values and .bval/.bvec order as the dcm2niix binary writes them."""
    folder, image = philips_dti
    out = tmp_path / "nii"
    run_dcm2niix(folder, out, ["-b", "n", "-f", "%s"])
    assert_same_volume(image, out / "2201.nii")

    facts = image.meta["dicom"]
    np.testing.assert_array_equal(facts["DiffusionBValues"], np.loadtxt(out / "2201.bval"))
    # dcm2niix writes each gradient in the voxel frame (row, column, normal; signs of its
    # own); ours are as stored, in the patient frame: the same vectors once projected.
    iop = np.array([float(v) for v in pydicom.dcmread(next(folder.iterdir()))
                    .ImageOrientationPatient])
    axes = np.stack([iop[:3], iop[3:], np.cross(iop[:3], iop[3:])])
    projected = np.abs(np.array(facts["DiffusionGradients"]) @ axes.T)
    np.testing.assert_allclose(projected, np.abs(np.loadtxt(out / "2201.bvec").T), atol=1e-4)


def test_one_enhanced_file_per_volume_is_ordered_by_file_instance_number(shared_data, tmp_path):
    """Siemens XA writes one multi-frame file per volume: dcm2niix sorts the files by
    InstanceNumber before their frames. Here the per-frame time labels are removed and
    the files numbered in reverse, so only the InstanceNumber can order the volumes."""
    datasets = []
    sources = sorted((shared_data / "dcm_qa_vendor/dcm_qa_enh/In/Siemens/XA10").glob("*.dcm"))
    for k, path in enumerate(sources):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = len(sources) - k
        for item in ds.PerFrameFunctionalGroupsSequence:
            content = item.FrameContentSequence[0]
            content.DimensionIndexValues = [1, 1, 1]
            del content.TemporalPositionIndex
        ds.save_as(tmp_path / path.name)
        datasets.append((tmp_path / path.name, pydicom.dcmread(tmp_path / path.name)))
    frames = [f for member in datasets for f in frames_of(tmp_path, [member])]
    volumes = split_volumes(tmp_path, frames)
    n_slices = len(frames) // len(sources)
    assert volumes.n_volumes == len(sources)
    assert [volumes.frames[v * n_slices].path.name for v in range(len(sources))] == \
        [path.name for path in reversed(sources)]
    assert {f.path for f in volumes.frames[:n_slices]} == {tmp_path / sources[-1].name}
    assert volumes.facts["VolumesVaryIn"] == ["InstanceNumber"]
