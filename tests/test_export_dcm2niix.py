"""``medimg-build export --to nifti`` of real DICOM series against dcm2niix, the field's
reference converter: a GE EPI time series (dcm_qa_nih, 15 slices x 10 volumes; dcm2niix's
answer is in its ``Ref/``), an oblique GE anatomical series (dicom2nifti's test data) and
TotalSegmentator's JPEG 2000 CT, these two converted here by the dcm2niix binary when it
is installed. The affine agrees within 1e-4 mm, and the voxels are dcm2niix's int16
exactly: the MR's once its z-score is undone (and rounded: the source's were integers),
the CT's HU as stored; the default MR percentile clip is refused, and
--keep-normalization writes the stored values."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

NO_CLIP = {"preset": "mr", "percentiles": [0, 100]}


def mr_store(source: Path, out: Path, intensity: dict) -> Path:
    return dicom_store(source, out, {"modality": "MR", "source": {"modalities": ["MR"]},
                                     "harmonize": {"spacing": None, "intensity": intensity}})


def dicom_store(source: Path, out: Path, overrides: dict) -> Path:
    recipe = load_recipe("dicom-tree").with_overrides(overrides)
    report = build_store(recipe, source, out, progress=False)
    assert report.ok, report.failed
    return out


def only_nifti(folder: Path) -> nib.Nifti1Image:
    [path] = folder.glob("*.nii.gz")
    return nib.load(path)


def on_grid_of(reference: nib.Nifti1Image, image: nib.Nifti1Image) -> nib.Nifti1Image:
    """``reference`` with its axes permuted and flipped onto ``image``'s orientation
    (dcm2niix keeps the DICOM row order; a store is RAS+)."""
    transform = nib.orientations.ornt_transform(nib.io_orientation(reference.affine),
                                                nib.io_orientation(image.affine))
    return reference.as_reoriented(transform)


def assert_same_volume(exported: nib.Nifti1Image, reference: nib.Nifti1Image) -> None:
    """Same grid, same values; the MR z-score undone gives dcm2niix's int16 exactly
    (before: float32 within 1e-3 of them)."""
    reference = on_grid_of(reference, exported)
    assert exported.shape == reference.shape
    assert np.abs(exported.affine - reference.affine).max() < 1e-4
    assert int(exported.header["sform_code"]) == int(exported.header["qform_code"]) == 1
    assert np.abs(exported.get_qform() - exported.get_sform()).max() < 1e-4  # rigid
    assert reference.get_data_dtype() == exported.get_data_dtype() == np.int16
    assert np.array_equal(np.asanyarray(exported.dataobj), np.asanyarray(reference.dataobj))


def test_ge_epi_time_series_matches_dcm2niix(shared_data, tmp_path, capsys):
    source = tmp_path / "src"
    shutil.copytree(shared_data / "dcm_qa_nih" / "In" / "20180918GE" / "mr_0004",
                    source / "mr_0004")
    store = mr_store(source, tmp_path / "epi.zarr", NO_CLIP)
    assert main(["export", str(store), "--to", "nifti", "--out", str(tmp_path / "out")]) == 0
    exported = only_nifti(tmp_path / "out")
    assert exported.shape == (64, 64, 15, 10)  # the volumes stay NIfTI's 4th axis
    reference = nib.load(shared_data / "dcm_qa_nih" / "Ref" / "DCM2NIIX_regression_test_4.nii")
    assert_same_volume(exported, reference)

    clipped = mr_store(source, tmp_path / "clipped.zarr", {"preset": "mr"})
    assert main(["export", str(clipped), "--to", "nifti", "--out", str(tmp_path / "no")]) == 2
    error = capsys.readouterr().err.strip()
    assert "normalize_mr clip" in error and "--keep-normalization" in error
    assert "\n" not in error and not (tmp_path / "no").exists()
    assert main(["export", str(clipped), "--to", "nifti", "--out", str(tmp_path / "kept"),
                 "--keep-normalization"]) == 0
    case_id = open_store(clipped).cases["case_id"][0]
    kept = np.asanyarray(only_nifti(tmp_path / "kept").dataobj)
    assert np.array_equal(kept, open_store(clipped).read_image(case_id).array)


def converted_by_dcm2niix(series: Path, out: Path) -> nib.Nifti1Image:
    dcm2niix = shutil.which("dcm2niix") or shutil.which(
        "dcm2niix", path=str(Path(sys.executable).parent))
    if dcm2niix is None:
        pytest.skip("the dcm2niix binary is not installed (pip install dcm2niix)")
    out.mkdir()
    subprocess.run([dcm2niix, "-b", "n", "-z", "n", "-f", "series", "-o", str(out),
                    str(series)], check=True, capture_output=True)
    return nib.load(out / "series.nii")


def test_oblique_ge_anatomical_matches_dcm2niix(shared_data, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(shared_data / "dicom2nifti" / "ge" / "anatomical" / "001", source / "ge")
    reference = converted_by_dcm2niix(source / "ge", tmp_path / "dcm2niix")
    store = mr_store(source, tmp_path / "ge.zarr", NO_CLIP)
    assert main(["export", str(store), "--to", "nifti", "--out", str(tmp_path / "out")]) == 0
    exported = only_nifti(tmp_path / "out")
    assert np.count_nonzero(np.abs(exported.affine[:3, :3]) > 1e-3) > 3  # oblique
    assert_same_volume(exported, reference)


def test_jpeg2000_ct_comes_back_in_hu_as_dcm2niix_gives_them(shared_data, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(shared_data / "totalsegmentator" / "example_ct_dicom", source / "ct")
    reference = converted_by_dcm2niix(source / "ct", tmp_path / "dcm2niix")
    store = dicom_store(source, tmp_path / "ct.zarr", {"harmonize": {"spacing": None}})
    assert main(["export", str(store), "--to", "nifti", "--out", str(tmp_path / "out")]) == 0
    exported = only_nifti(tmp_path / "out")
    assert exported.get_data_dtype() == np.int16
    reference = on_grid_of(reference, exported)
    assert np.abs(exported.affine - reference.affine).max() < 1e-4
    assert np.array_equal(np.asanyarray(exported.dataobj), np.asanyarray(reference.dataobj))
