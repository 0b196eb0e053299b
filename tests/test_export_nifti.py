"""``medimg-build export --to nifti`` on stores of the real TotalSegmentator CT and its
segmentation (tests/reference_stores.py), the ChestX-ray14 stack and BraTS-like MR:
values back as the store's image with its normalization undone (HU exact), the affine
within 1e-4 mm, the mask equal, the steps in the header and the sidecar, the source
grid on request, and one-line refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fixtures.brats import make_brats2021
from medimg_build import open_store, read_image
from medimg_build.cli import main
from medimg_build.harmonize.normalize import denormalize
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

CASE = "ct"  # the reference CT store's one case
WINDOW = (-1024, 3071)  # the ct preset's window (the reference CT store's)


def export(store, out, *options: str) -> int:
    return main(["export", str(store), "--to", "nifti", "--out", str(out), *options])


def voxels(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def steps_of(store, case_id: str) -> list[dict]:
    return store.cases.set_index("case_id").loc[case_id, "steps"]


def normalize_params(steps: list[dict]) -> dict:
    return next(s for s in reversed(steps) if s["name"].startswith("normalize"))["params"]


@pytest.fixture(scope="module")
def ct_source(tmp_path_factory, shared_data) -> Path:
    """The real CT and its segmentation as a volume folder (the reference store's)."""
    source = tmp_path_factory.mktemp("ct-source")
    (source / "images").mkdir()
    (source / "labels").mkdir()
    base = shared_data / "totalsegmentator"
    (source / "images" / f"{CASE}.nii.gz").symlink_to(base / "example_ct_sm.nii.gz")
    (source / "labels" / f"{CASE}.nii.gz").symlink_to(base / "example_seg.nii.gz")
    return source


def ct_recipe(**harmonize):
    return load_recipe("volume-folder").with_overrides({"harmonize": harmonize})


def test_real_ct_exports_hu_exact_with_its_affine_mask_and_steps(reference_stores, tmp_path,
                                                                 capsys):
    store = open_store(reference_stores.ct)
    out = tmp_path / "nifti"
    assert export(reference_stores.ct, out) == 0
    assert f"{out}: 1 case(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [f"{CASE}.json", f"{CASE}.nii.gz",
                                                     f"{CASE}_mask.nii.gz"]
    stored, mask = store.read_image(CASE), store.read_mask(CASE)
    steps = steps_of(store, CASE)
    image = nib.load(out / f"{CASE}.nii.gz")
    # HU exact: the store's values with the ct step undone, still whole int16 numbers.
    expected = denormalize(stored.array, normalize_params(steps))
    assert image.get_data_dtype() == np.int16
    assert np.array_equal(voxels(out / f"{CASE}.nii.gz"), expected)
    assert np.abs(image.affine - stored.affine).max() < 1e-4
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    exported_mask = nib.load(out / f"{CASE}_mask.nii.gz")
    assert np.array_equal(voxels(out / f"{CASE}_mask.nii.gz"), mask.array)
    assert np.abs(exported_mask.affine - stored.affine).max() < 1e-4
    # The steps: the store's, then what the export did; in the sidecar and the header,
    # and given back by the package's own reader.
    sidecar = json.loads((out / f"{CASE}.json").read_text())
    assert sidecar["steps"][:-1] == steps
    assert sidecar["steps"][-1] == {"name": "denormalize", "params": {
        "undid": "normalize_ct", "method": "ct"}}
    assert sidecar["intensity"]["exact"] is True
    censored = sidecar["intensity"]["censored"]
    assert censored["at_low"] == int(np.sum(stored.array == WINDOW[0]))
    read_back = read_image(out / f"{CASE}.nii.gz")
    assert read_back.history[0].name == "exported"
    assert read_back.history[0].params["steps"] == sidecar["steps"]
    assert read_back.history[-1].name == "read"
    assert read_back.meta["modality"] == "CT"
    assert np.array_equal(read_back.array, expected)


def test_keep_normalization_writes_the_stored_values(tmp_path, capsys):
    """BraTS-like MR (z-scored after a 0.5..99.5 percentile clip): undoing it cannot
    give back the clipped voxels, so the export refuses in one line naming the store,
    the case and --keep-normalization; with it, the stored values are written."""
    make_brats2021(tmp_path / "src")
    out_store = tmp_path / "brats.zarr"
    assert build_store(load_recipe("brats"), tmp_path / "src", out_store, progress=False).ok
    assert export(out_store, tmp_path / "refused") == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and str(out_store) in error
    assert "of its normalize_mr clip" in error and "--keep-normalization" in error
    assert "percentiles=[0,100]" in error
    assert not (tmp_path / "refused").exists()  # nothing half-written

    assert export(out_store, tmp_path / "kept", "--keep-normalization",
                  "--case", "BraTS2021_00000") == 0
    store = open_store(out_store)
    stored = store.read_image("BraTS2021_00000")
    image = nib.load(tmp_path / "kept" / "BraTS2021_00000.nii.gz")
    assert image.shape == stored.array.shape  # (x, y, z, 4 channels)
    assert np.array_equal(voxels(tmp_path / "kept" / "BraTS2021_00000.nii.gz"), stored.array)
    sidecar = json.loads((tmp_path / "kept" / "BraTS2021_00000.json").read_text())
    assert sidecar["intensity"]["kept"] == "normalize_mr"
    assert sidecar["steps"] == steps_of(store, "BraTS2021_00000")  # nothing undone


def test_a_narrow_ct_window_is_refused_not_passed_off_as_hu(ct_source, tmp_path, capsys):
    out_store = tmp_path / "narrow.zarr"
    recipe = ct_recipe(spacing=None, intensity={"preset": "ct", "window": [-160, 240]})
    assert build_store(recipe, ct_source, out_store, progress=False).ok
    assert export(out_store, tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert f"case '{CASE}': " in error
    assert "on the high bound 240 of its normalize_ct clip" in error
    assert export(out_store, tmp_path / "out", "--keep-normalization") == 0


def test_original_grid_gives_back_the_source_voxels_exactly(reference_stores, shared_data,
                                                            tmp_path):
    """The reference store kept the CT's grid (only reoriented to RAS+): on the original
    grid the export is the source file itself, its HU clipped to the store's window."""
    out = tmp_path / "original"
    assert export(reference_stores.ct, out, "--original-grid") == 0
    source = nib.load(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz")
    seg = nib.load(shared_data / "totalsegmentator" / "example_seg.nii.gz")
    image = nib.load(out / f"{CASE}.nii.gz")
    assert image.shape == source.shape
    assert np.abs(image.affine - source.affine).max() < 1e-4
    hu = np.rint(np.clip(source.get_fdata(), *WINDOW)).astype(np.int16)
    assert np.array_equal(voxels(out / f"{CASE}.nii.gz"), hu)
    assert np.array_equal(voxels(out / f"{CASE}_mask.nii.gz"), np.asanyarray(seg.dataobj))
    grid = json.loads((out / f"{CASE}.json").read_text())["grid"]
    assert grid == {"grid": "original", "exact": True, "shape": list(source.shape),
                    "interpolation": None}


def test_original_grid_resamples_a_resampled_hdf5_store(ct_source, shared_data, tmp_path):
    """A store resampled to 4.5 mm (HDF5): back on the source's 3 mm grid by the store's
    linear interpolation, the mask by nearest neighbour."""
    out_store = tmp_path / "ct.h5"
    report = build_store(ct_recipe(spacing=[4.5, 4.5, 4.5]), ct_source, out_store,
                         progress=False, format="hdf5")
    assert report.ok, report.failed
    out = tmp_path / "original"
    assert export(out_store, out, "--original-grid") == 0
    source = nib.load(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz")
    seg = np.asanyarray(nib.load(shared_data / "totalsegmentator" / "example_seg.nii.gz")
                        .dataobj)
    image = nib.load(out / f"{CASE}.nii.gz")
    assert image.shape == source.shape and image.get_data_dtype() == np.int16
    assert np.abs(image.affine - source.affine).max() < 1e-4
    values = voxels(out / f"{CASE}.nii.gz").astype(float)
    hu = np.clip(source.get_fdata(), *WINDOW)
    assert np.corrcoef(values.ravel(), hu.ravel())[0, 1] > 0.9
    mask = voxels(out / f"{CASE}_mask.nii.gz")
    assert set(np.unique(mask)) <= set(np.unique(seg))
    foreground = (mask > 0) & (seg > 0)
    assert 2 * foreground.sum() / ((mask > 0).sum() + (seg > 0).sum()) > 0.8  # Dice
    record = json.loads((out / f"{CASE}.json").read_text())
    assert record["grid"]["exact"] is False and record["grid"]["interpolation"] == "linear"
    assert record["steps"][-1]["name"] == "to_original_grid"


def test_stack_store_cases_chosen_by_case(reference_stores, tmp_path):
    """The ChestX-ray14 stack (2D, unit-range float16, no masks): the chosen cases only,
    intensities back to the 8-bit pixel values the preset scaled."""
    store = open_store(reference_stores.xray)
    chosen = list(store.cases["case_id"])[1:3]
    out = tmp_path / "xray"
    assert export(reference_stores.xray, out, "--case", *chosen) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{c}.nii.gz" for c in chosen] + [f"{c}.json" for c in chosen])
    for case_id in chosen:
        stored = store.read_image(case_id)
        expected = denormalize(stored.array, normalize_params(steps_of(store, case_id)))
        image = nib.load(out / f"{case_id}.nii.gz")
        assert image.shape == stored.array.shape  # 2D
        assert np.array_equal(voxels(out / f"{case_id}.nii.gz"), expected)
        assert np.abs(image.affine - stored.affine).max() < 1e-4
        unit = store.cases.set_index("case_id").loc[case_id, "spacing_unit"]
        # A picture's frame is its own (code 2, "aligned"), in mm when its size is known.
        assert int(image.header["sform_code"]) == 2
        assert image.header.get_xyzt_units()[0] == ("unknown" if unit == "pixel" else "mm")


@pytest.mark.parametrize("problem", ["unknown case", "non-empty out", "out is a file"])
def test_refusals_are_one_line(reference_stores, tmp_path, capsys, problem):
    out = tmp_path / "out"
    options: list[str] = []
    if problem == "unknown case":
        options = ["--case", CASE, "nope"]
    elif problem == "non-empty out":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    else:
        out.write_text("a file")
    assert export(reference_stores.ct, out, *options) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("medimg-build: error: ") and "\n" not in error
    if problem == "unknown case":
        assert str(reference_stores.ct) in error and "'nope'" in error
        assert not out.exists()
    elif problem == "non-empty out":
        assert "not empty" in error and [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert "not a folder" in error


def test_an_empty_out_folder_is_used(reference_stores, tmp_path):
    (tmp_path / "out").mkdir()
    assert export(reference_stores.ct, tmp_path / "out") == 0
    assert (tmp_path / "out" / f"{CASE}.nii.gz").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial")]


def test_a_copied_zip_snapshot_exports_too(reference_stores, tmp_path):
    """Any store open_store reads: here a snapshot .zip of the reference CT store."""
    snapshot = tmp_path / "ct.zarr.zip"
    assert main(["snapshot", str(reference_stores.ct), str(snapshot)]) == 0
    assert export(snapshot, tmp_path / "out") == 0
    assert np.array_equal(voxels(tmp_path / "out" / f"{CASE}.nii.gz"),
                          open_store(reference_stores.ct).read_image(CASE).array)
    shutil.rmtree(tmp_path / "out")


def test_other_comment_extensions_are_left_alone(tmp_path):
    """Only a comment holding the export's JSON key gives steps back: free text and
    other JSON in a comment extension (any tool may write one) read as before."""
    for name, text in [("text", b"made by hand"), ("json", b'{"steps": [1, 2]}')]:
        image = nib.Nifti1Image(np.zeros((2, 3, 4), np.int16), np.eye(4))
        image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", text))
        nib.save(image, tmp_path / f"{name}.nii.gz")
        read = read_image(tmp_path / f"{name}.nii.gz")
        assert [step.name for step in read.history] == ["read"]
        assert read.meta["modality"] is None
