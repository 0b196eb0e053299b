"""The Philips isotropic trace volume (b > 0, no gradient direction) is not a diffusion
direction: it is left out of the DWI and read on its own on request (issue 15, item 3).

dcm2niix does the same (nii_dicom_batch.cpp, nii_saveDTI: Philips volumes with
isADCnotDTI are counted as ADC/trace, written with the rest to ``<name>_ADC`` and removed
from ``<name>``). The series here is a slab of the real Philips classic DTI (3 slices x 17
volumes) with a trace volume added the way Philips writes it: b=1000, gradient (0, 0, 0),
numbered after the directions of each slice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medimg_build.errors import DicomSeriesError
from medimg_build.io import read_diffusion_trace, read_image

from dcm2niix_reference import assert_same_volume, run_dcm2niix

PHILIPS_DTI = "dcm_qa_vendor/dcm_qa_philips_enh/In/cl"
N_SLICES = 3


def _slab(shared_data: Path) -> list[list[pydicom.Dataset]]:
    """The frames of the first N_SLICES slice positions, by position then instance."""
    by_position: dict[float, list[pydicom.Dataset]] = {}
    for path in sorted((shared_data / PHILIPS_DTI).glob("2201_*.dcm")):
        ds = pydicom.dcmread(path)
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        distance = float(np.array([float(v) for v in ds.ImagePositionPatient])
                         @ np.cross(iop[:3], iop[3:]))
        by_position.setdefault(round(distance, 2), []).append(ds)
    return [sorted(by_position[d], key=lambda ds: int(ds.InstanceNumber))
            for d in sorted(by_position)[:N_SLICES]]


def _trace_frame(direction: pydicom.Dataset) -> pydicom.Dataset:
    """A copy of a b=1000 frame as Philips writes its isotropic image: no direction."""
    trace = pydicom.dcmread(Path(direction.filename))
    trace.DiffusionGradientOrientation = [0.0, 0.0, 0.0]
    for element in (0x10B0, 0x10B1, 0x10B2):  # Philips' private direction RL, AP, FH
        if (0x2005, element) in trace:
            trace[0x2005, element].value = 0.0
    trace.InstanceNumber = int(direction.InstanceNumber) + 1
    trace.SOPInstanceUID = trace.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    trace.PixelData = (trace.pixel_array // 2).tobytes()  # not a copy of the direction
    return trace


@pytest.fixture(scope="module")
def dwi_with_trace(shared_data, tmp_path_factory) -> tuple[Path, Path]:
    """(a folder with the slab and its trace volume, a folder with the slab alone)."""
    root = tmp_path_factory.mktemp("trace")
    with_trace, without = root / "with_trace", root / "without"
    with_trace.mkdir()
    without.mkdir()
    for frames in _slab(shared_data):
        for ds in frames:
            name = Path(ds.filename).name
            ds.save_as(with_trace / name)
            (without / name).symlink_to(with_trace / name)
        last = frames[-1]
        assert last.DiffusionBValue > 0 and any(last.DiffusionGradientOrientation)
        used = {int(ds.InstanceNumber) for ds in frames}
        assert int(last.InstanceNumber) + 1 not in used
        _trace_frame(last).save_as(with_trace / f"trace_{last.InstanceNumber}.dcm")
    return with_trace, without


def _dcm2niix_outputs(folder: Path, out: Path) -> tuple[Path, Path]:
    run_dcm2niix(folder, out, ["-b", "n", "-f", "%s"])
    log = (out / "dcm2niix.log").read_text()
    assert "appear to be ADC or trace images that will be removed" in log
    return out / "2201.nii", out / "2201_ADC.nii"


def test_trace_is_left_out_of_the_dwi_and_read_alone_like_dcm2niix(dwi_with_trace, tmp_path):
    folder = dwi_with_trace[0]
    dwi_nii, all_nii = _dcm2niix_outputs(folder, tmp_path / "nii")

    dwi = read_image(folder)
    assert dwi.array.shape == (128, 128, N_SLICES, 17)
    assert_same_volume(dwi, dwi_nii)
    facts = dwi.meta["dicom"]
    np.testing.assert_array_equal(facts["DiffusionBValues"],
                                  np.loadtxt(dwi_nii.with_suffix(".bval")))
    assert [0.0, 0.0, 0.0] not in facts["DiffusionGradients"][1:]  # only the b=0 has none
    assert facts["IsotropicTrace"] == "left out" and facts["NumberOfVolumes"] == 17

    trace = read_diffusion_trace(folder)
    assert trace.array.shape == (128, 128, N_SLICES) and not trace.has_channels
    assert_same_volume(trace, all_nii, volume=-1)  # all_nii: the DWI, then the trace last
    assert trace.meta["dicom"]["IsotropicTrace"] == "only"
    assert trace.meta["dicom"]["DiffusionBValues"] == [1000.0]


def test_a_dwi_without_trace_has_none_to_read(dwi_with_trace):
    folder = dwi_with_trace[1]
    image = read_image(folder)
    assert image.meta["dicom"]["NumberOfVolumes"] == 17
    assert "IsotropicTrace" not in image.meta["dicom"]
    with pytest.raises(DicomSeriesError) as caught:
        read_diffusion_trace(folder)
    message = str(caught.value)
    assert "no isotropic trace volume" in message and str(folder) in message
    assert "\n" not in message
