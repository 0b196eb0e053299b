"""4D DICOM series (fMRI, diffusion) against dcm2niix's and dicom2nifti's answers.

A 4D series is one MedicalImage whose trailing channel axis holds the volumes, in the
order dcm2niix writes them, on the grid of the first volume. A volume short of a frame
is refused, never stacked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medimg_build.errors import DicomSeriesError
from medimg_build.io import read_image
from medimg_build.io.read_options import read_options

NIH_PAIRS = [
    (f"20180918GE/mr_000{k}", f"DCM2NIIX_regression_test_{k}.nii") for k in (4, 5, 6, 7)
] + [
    (f"20180918Si/mr_000{k}", f"EPI_PE={pe}_{k}.nii")
    for k, pe in ((3, "AP"), (4, "PA"), (5, "RL"), (6, "LR"))
]

DICOM2NIFTI_4D = ["ge/dti/001", "ge/dti/001_implicit", "ge/dti/002", "ge/fmri/001",
                  "ge/fmri/001_implicit", "philips_enhanced/fmri/001",
                  "philips_enhanced/fmri/001_implicit"]


def ras(array: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    return nib.as_closest_canonical(nib.Nifti1Image(array, affine))


def compare(image, truth: nib.Nifti1Image, exact: bool = True) -> None:
    ours, theirs = ras(image.array, image.affine), nib.as_closest_canonical(truth)
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3, rtol=0)
    a, b = np.asanyarray(ours.dataobj), np.asanyarray(theirs.dataobj)
    assert a.shape == b.shape
    if exact:
        np.testing.assert_array_equal(a, b)
    else:
        # dicom2nifti scales Philips data in float32; we scale in float64 and round once.
        np.testing.assert_allclose(a, b, rtol=2.0**-22, atol=0)


@pytest.mark.parametrize(("series", "ref"), NIH_PAIRS, ids=[s for s, _ in NIH_PAIRS])
def test_dcm_qa_nih_4d_matches_dcm2niix(shared_data, series, ref):
    # GE: 150 classic files, 15 slices x 10 time points, ordered by InstanceNumber.
    # Siemens: 2 mosaics of 5 tiles, one per volume. dcm2niix stores the Siemens uint16
    # values as int16 (they fit); the numbers are compared, not the dtype.
    folder = shared_data / "dcm_qa_nih/In" / series
    image = read_image(folder)
    compare(image, nib.load(shared_data / "dcm_qa_nih/Ref" / ref))
    n_volumes = image.array.shape[-1]
    assert image.spatial_ndim == 3 and image.has_channels
    assert image.meta["dicom"]["NumberOfVolumes"] == n_volumes == (10 if "GE" in series else 2)
    [step] = image.history
    assert step.params["n_volumes"] == n_volumes
    assert step.params["n_slices"] == image.array.shape[2]
    assert "InstanceNumber" in step.params["volumes_vary_in"]
    assert image.array.flags.f_contiguous  # (i, j, k, volume) like every other image
    json.dumps(image.meta)
    json.loads(step.to_json())


@pytest.mark.parametrize("rel", DICOM2NIFTI_4D)
def test_dicom2nifti_4d_ground_truth(shared_data, rel):
    folder = shared_data / "dicom2nifti" / rel
    with read_options(philips_scaling="display"):  # dicom2nifti applies RS/RI only
        image = read_image(folder)
    compare(image, nib.load(f"{folder}_ground_truth.nii.gz"), exact="philips" not in rel)


@pytest.mark.parametrize("rel", ["ge/dti/001", "ge/dti/001_implicit"])
def test_ge_diffusion_b_values_from_private_tags(shared_data, rel):
    folder = shared_data / "dicom2nifti" / rel
    facts = read_image(folder).meta["dicom"]
    truth = np.loadtxt(f"{folder}_ground_truth.bval")
    np.testing.assert_array_equal(facts["DiffusionBValues"], truth)
    assert facts["VolumesVaryIn"][-2:] == ["DiffusionBValue", "DiffusionGradientOrientation"]
    # Raw GE (0019,10BB-BD); dicom2nifti's .bvec negates x for its own voxel frame.
    assert facts["DiffusionGradients"] == [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]


@pytest.mark.parametrize("rel", ["philips_enhanced/dti/001", "philips_enhanced/dti/001_implicit"])
def test_philips_enhanced_dti(shared_data, rel):
    folder = shared_data / "dicom2nifti" / rel
    with read_options(philips_scaling="display"):  # dicom2nifti applies RS/RI only
        image = read_image(folder)
    facts = image.meta["dicom"]
    # dcm2niix sorts enhanced frames by DimensionIndexValues, last index first: the b=0
    # frames carry gradient index 65, so its .bval reads "1300 1300 1300 0".
    assert facts["DiffusionBValues"] == [1300.0, 1300.0, 1300.0, 0.0]
    bval = np.loadtxt(f"{folder}_ground_truth.bval")
    bvec = np.loadtxt(f"{folder}_ground_truth.bvec").T
    ours = sorted(zip(facts["DiffusionBValues"], map(tuple, facts["DiffusionGradients"])))
    theirs = sorted(zip(bval, map(tuple, bvec)))
    np.testing.assert_allclose(np.array([[b, *g] for b, g in ours]),
                               np.array([[b, *g] for b, g in theirs]), atol=1e-9)
    # dicom2nifti's ground truth holds only one non-zero volume (the third gradient's
    # data, though its .bval lists b=0 first), so that is the one compared.
    truth = nib.as_closest_canonical(nib.load(f"{folder}_ground_truth.nii.gz"))
    expected = np.asanyarray(truth.dataobj)
    assert not expected[..., 1:].any()
    ours_ras = ras(image.array, image.affine)
    np.testing.assert_allclose(ours_ras.affine, truth.affine, atol=1e-3, rtol=0)
    third = facts["DiffusionGradients"].index([-0.02599947154521942, -0.6491867899894714,
                                               0.7601845264434814])
    np.testing.assert_allclose(np.asanyarray(ours_ras.dataobj)[..., third], expected[..., 0],
                               rtol=2.0**-22, atol=0)


def test_3d_series_has_no_volume_facts(shared_data):
    image = read_image(shared_data / "dicom2nifti/generic/anatomical/001")
    assert image.array.ndim == 3 and not image.has_channels
    assert "NumberOfVolumes" not in image.meta["dicom"]
    assert "n_volumes" not in image.history[0].params


# -- incomplete 4D series are refused ---------------------------------------------------------


def _ge_copy(shared_data: Path, tmp_path: Path) -> tuple[Path, list[Path]]:
    src = shared_data / "dcm_qa_nih/In/20180918GE/mr_0004"
    dst = tmp_path / "fmri"
    shutil.copytree(src, dst)
    return dst, sorted(dst.glob("*.dcm"))  # file k: slice k % 15, time point k // 15


def _one_line(error: DicomSeriesError, folder: Path) -> str:
    message = str(error)
    assert "\n" not in message and str(folder) in message
    return message


def test_one_time_point_short_at_one_slice_is_refused(shared_data, tmp_path):
    folder, files = _ge_copy(shared_data, tmp_path)
    files[4 * 15 + 2].unlink()  # slice 3 of time point 5
    with pytest.raises(DicomSeriesError) as caught:
        read_image(folder)
    message = _one_line(caught.value, folder)
    assert "missing or duplicated frame" in message and "slice 3 holds 9" in message


def test_duplicated_file_is_refused(shared_data, tmp_path):
    folder, files = _ge_copy(shared_data, tmp_path)
    shutil.copy(files[7], folder / "copy.dcm")
    with pytest.raises(DicomSeriesError) as caught:
        read_image(folder)
    assert "slice 8 holds 11" in _one_line(caught.value, folder)


def test_missing_frame_hidden_by_a_duplicate_is_refused(shared_data, tmp_path):
    # Same count at every slice, but slice 3 lacks time point 5 and has 6 twice.
    folder, files = _ge_copy(shared_data, tmp_path)
    shutil.copy(files[5 * 15 + 2], folder / "copy.dcm")
    files[4 * 15 + 2].unlink()
    with pytest.raises(DicomSeriesError) as caught:
        read_image(folder)
    assert "duplicated frame" in _one_line(caught.value, folder)


def test_time_points_that_disagree_across_slices_are_refused(shared_data, tmp_path):
    # With TemporalPositionIdentifier written, a renumbered copy is caught by its label.
    folder, files = _ge_copy(shared_data, tmp_path)
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.TemporalPositionIdentifier = k // 15 + 1
        ds.save_as(path)
    ds = pydicom.dcmread(files[5 * 15 + 2])
    ds.InstanceNumber = 999
    ds.save_as(folder / "copy.dcm")
    files[4 * 15 + 2].unlink()
    with pytest.raises(DicomSeriesError) as caught:
        read_image(folder)
    message = _one_line(caught.value, folder)
    assert "volume 5 is time point 5 at slice 1 but time point 6 at slice 3" in message


def test_temporal_position_orders_volumes_before_instance_number(shared_data, tmp_path):
    reference = read_image(shared_data / "dcm_qa_nih/In/20180918GE/mr_0004")
    folder, files = _ge_copy(shared_data, tmp_path)
    for k, path in enumerate(files):  # instance numbers reversed, time points kept
        ds = pydicom.dcmread(path)
        ds.TemporalPositionIdentifier = k // 15 + 1
        ds.InstanceNumber = 1000 - k
        ds.save_as(path)
    image = read_image(folder)
    np.testing.assert_array_equal(image.array, reference.array)
    assert image.meta["dicom"]["VolumesVaryIn"][0] == "TemporalPositionIdentifier"


def test_a_duplicated_slice_in_a_3d_series_is_named_as_such(shared_data, tmp_path):
    folder = tmp_path / "ct"
    shutil.copytree(shared_data / "dicom2nifti/generic/anatomical/001", folder)
    shutil.copy(sorted(folder.iterdir())[1], folder / "copy.dcm")
    with pytest.raises(DicomSeriesError) as caught:
        read_image(folder)
    message = _one_line(caught.value, folder)
    assert "5 slices at only 4 distinct positions" in message and "holds 2" in message


def test_a_duplicate_in_another_folder_is_named_by_its_path(shared_data, tmp_path):
    """Copies of one file name in two folders read as two paths, not one name twice."""
    folder, files = _ge_copy(shared_data, tmp_path)
    (folder / "copies").mkdir()
    copied = files[5 * 15 + 2]
    shutil.copy(copied, folder / "copies" / copied.name)
    files[4 * 15 + 2].unlink()
    with pytest.raises(DicomSeriesError) as caught:
        read_image(folder)
    message = _one_line(caught.value, folder)
    assert f"{copied.name} and copies/{copied.name}" in message \
        or f"copies/{copied.name} and {copied.name}" in message, message
