"""End to end: recipe + source folder -> store -> open_store, on generated and real data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from PIL import Image

from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.errors import RecipeError
from medimg_build.privacy import pseudonym_key
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.pipeline import BuildContext, harmonize_case
from medimg_build.recipe.sources import discover_cases
from medimg_build.store.validate import validate_store

# An oblique, LPS-stored CT-like volume: the harmonized store must be RAS+ anyway.
OBLIQUE_LPS = np.array([[-0.8, 0.05, 0.0, 120.0],
                        [-0.04, -0.8, 0.1, 90.0],
                        [0.0, 0.2, 2.5, -40.0],
                        [0.0, 0.0, 0.0, 1.0]])


def _ct_volume(seed: int, shape=(40, 36, 12)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(-1000, 1500, size=shape).astype(np.int16)
    mask = np.zeros(shape, np.uint8)
    mask[10:20, 8:18, 3:8] = 1
    mask[25:30, 20:30, 5:10] = 2
    return image, mask


@pytest.fixture
def volume_source(tmp_path) -> Path:
    source = tmp_path / "source"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    for index in range(3):
        image, mask = _ct_volume(index)
        nib.save(nib.Nifti1Image(image, OBLIQUE_LPS), source / "images" / f"case{index}.nii.gz")
        if index != 2:  # masks are optional
            nib.save(nib.Nifti1Image(mask, OBLIQUE_LPS), source / "labels" / f"case{index}.nii.gz")
    return source


def _volume_recipe():
    return load_recipe("volume-folder").with_overrides({
        "harmonize": {"spacing": [1.5, 1.5, 2.0]},
        "labels": {"segmentation": {"classes": {"0": "background", "1": "liver", "2": "tumour"}}}})


def test_volumes_round_trip_equals_in_memory_harmonization(volume_source, tmp_path):
    recipe = _volume_recipe()
    out = tmp_path / "ct.zarr"
    report = build_store(recipe, volume_source, out, progress=False)
    assert report.ok and sorted(report.built) == ["case0", "case1", "case2"]
    assert validate_store(out) == []

    store = open_store(out)
    assert store.layout == "volumes"
    assert list(store.cases["case_id"]) == ["case0", "case1", "case2"]
    context = BuildContext(recipe, volume_source, pseudonym_key(None)[0])
    for source in discover_cases(recipe, volume_source):
        expected = harmonize_case(source, context)
        stored = store.read_image(source.case_id)
        assert stored.orientation == "RAS"
        np.testing.assert_array_equal(stored.array, expected.image.array)
        np.testing.assert_allclose(stored.affine, expected.image.affine, atol=1e-9)
        mask = store.read_mask(source.case_id)
        if source.mask_path is None:
            assert mask is None
        else:
            np.testing.assert_array_equal(mask.array, expected.mask.array)
            assert set(np.unique(mask.array)) <= {0, 1, 2}
    tree = xr.open_datatree(out, engine="zarr")
    assert tree["cases/case0/scale0/image"].dims == ("channel", "z", "y", "x")  # NGFF level 0


def test_table_has_contract_columns_and_no_raw_ids(volume_source, tmp_path):
    out = tmp_path / "ct.zarr"
    build_store(_volume_recipe(), volume_source, out, progress=False, key="secret")
    cases = open_store(out).cases
    for column in ["case_id", "patient_id", "split", "modality", "organ", "original_shape",
                   "original_spacing", "original_orientation", "source_files",
                   "source_sha256", "intensity", "steps"]:
        assert column in cases, column
    assert cases.loc[0, "original_orientation"] == "LPS"
    assert cases.loc[0, "intensity"]["window"] == [-1024, 3071]
    assert not (cases["patient_id"] == cases["case_id"]).any()
    assert [s["name"] for s in cases.loc[0, "steps"]][:2] == ["read", "to_ras"]
    cases.to_parquet(tmp_path / "cases.parquet")


def _chest_source(root: Path, rows: list[tuple[str, str, str]]) -> Path:
    (root / "images_001" / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, _, _ in rows:
        pixels = rng.integers(0, 256, size=(80, 100)).astype(np.uint8)
        Image.fromarray(pixels).save(root / "images_001" / "images" / name)
    (root / "test_list.txt").write_text(f"{rows[-1][0]}\n")  # the official test list
    (root / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
    with open(root / "Data_Entry_2017.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Image Index", "Finding Labels", "Follow-up #", "Patient ID",
                         "Patient Age", "Patient Gender", "View Position"])
        for name, findings, patient in rows:
            writer.writerow([name, findings, "0", patient, "58", "M", "PA"])
    return root


def test_stack_of_xrays_with_multilabel_findings(tmp_path):
    rows = [("00000001_000.png", "Cardiomegaly", "1"),
            ("00000001_001.png", "Cardiomegaly|Effusion", "1"),
            ("00000002_000.png", "No Finding", "2"),
            ("00000003_000.png", "", "3")]
    source = _chest_source(tmp_path / "nih", rows)
    recipe = load_recipe("nih-chestxray14").with_overrides({"harmonize": {"shape": [64, 64]}})
    out = tmp_path / "chest.zarr"
    assert build_store(recipe, source, out, progress=False).ok

    ds = xr.open_zarr(out)
    assert ds["image"].dims == ("case", "channel", "y", "x")
    assert ds["image"].shape == (4, 1, 64, 64)
    assert ds["image"].dtype == np.float16
    assert float(ds["image"].max()) <= 1.0 and float(ds["image"].min()) >= 0.0
    findings = ds["label_finding"].sel(case="00000001_001").values
    classes = list(ds["finding_class"].values)
    assert findings[classes.index("Cardiomegaly")] == 1 and findings[classes.index("Effusion")] == 1
    assert findings.sum() == 2
    assert (ds["label_finding"].sel(case="00000002_000").values == 0).all()
    assert (ds["label_finding"].sel(case="00000003_000").values == -1).all()
    cases = open_store(out).cases.set_index("case_id")
    # Two images of patient 1: one pseudonym, one split.
    assert cases.loc["00000001_000", "patient_id"] == cases.loc["00000001_001", "patient_id"]
    assert cases.loc["00000001_000", "split"] == cases.loc["00000001_001", "split"]
    assert cases.loc["00000001_000", "view_position"] == "PA"
    assert cases.loc["00000003_000", "split"] == "test"  # from the official list
    assert set(cases["split"]) <= {"train", "val", "test"}
    assert open_store(out).attrs["split"]["method"].startswith("official lists (test)")


def test_cli_recipe_mistake_is_one_line(tmp_path, capsys, volume_source):
    bad = tmp_path / "bad.yaml"
    recipe = load_recipe("volume-folder").data | {"harmonise": {}}
    bad.write_text(json.dumps(recipe))
    code = main(["build", str(bad), "--source", str(volume_source), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and str(bad) in err and "'harmonise' was unexpected" in err


def test_cli_missing_source_folder(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code = main(["build", "volume-folder", "--source", str(missing), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert str(missing) in err and "does not exist" in err


def test_corrupt_file_fails_its_case_only(volume_source, tmp_path, capsys):
    corrupt = volume_source / "images" / "case9.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00 this is not a gzip stream")
    out = tmp_path / "ct.zarr"
    args = ["build", "volume-folder", "--source", str(volume_source), "--out", str(out),
            "--set", "harmonize.spacing=[2,2,2]", "--set",
            'labels.segmentation.classes={"0": background, "1": a, "2": b}', "--quiet"]
    assert main(args) == 1
    output = capsys.readouterr().out
    failure = [line for line in output.splitlines() if "failed case9" in line]
    assert len(failure) == 1 and str(corrupt) in failure[0]
    assert "3 case(s) built, 1 failed" in output
    assert list(open_store(out).cases["case_id"]) == ["case0", "case1", "case2"]
    assert main(args + ["--overwrite", "--allow-failures"]) == 0


def test_mask_on_another_grid_is_refused_naming_both_files(volume_source, tmp_path):
    image, mask = _ct_volume(0)
    shifted = OBLIQUE_LPS.copy()
    shifted[0, 3] += 3.0
    nib.save(nib.Nifti1Image(mask, shifted), volume_source / "labels" / "case0.nii.gz")
    report = build_store(_volume_recipe(), volume_source, tmp_path / "o.zarr", progress=False)
    error = report.failed["case0"]
    assert "labels/case0.nii.gz" in error and "images/case0.nii.gz" in error and "mm" in error


def test_real_ct_with_segmentation(shared_data, tmp_path):
    """The real TotalSegmentator CT (DICOM, J2K, intercept -1024) with its segmentation."""
    base = shared_data / "totalsegmentator"
    source = tmp_path / "src"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    (source / "images" / "ct").symlink_to(base / "example_ct_dicom")
    (source / "labels" / "ct.nii.gz").symlink_to(base / "example_seg_dicom.nii.gz")
    seg = np.asanyarray(nib.load(base / "example_seg_dicom.nii.gz").dataobj)
    classes = {str(int(v)): f"s{int(v)}" for v in np.unique(seg)}
    recipe = load_recipe("volume-folder").with_overrides(
        {"labels": {"segmentation": {"classes": classes}}})
    out = tmp_path / "ct.zarr"
    assert build_store(recipe, source, out, progress=False).ok
    store = open_store(out)
    image, mask = store.read_image("ct"), store.read_mask("ct")
    assert image.array.dtype == np.int16 and image.spacing == pytest.approx((1.5, 1.5, 1.5))
    assert -1024 <= image.array.min() and image.array.max() <= 3071
    assert mask.array.shape == image.array.shape[:3]
    # Nearest-neighbour resampling keeps label values and roughly each label's volume.
    assert set(np.unique(mask.array)) <= {int(v) for v in np.unique(seg)}
    original = nib.load(base / "example_seg_dicom.nii.gz")
    voxel_ml = np.prod(original.header.get_zooms()[:3]) / 1000
    for value in [5, 52]:  # two large structures
        before = (seg == value).sum() * voxel_ml
        after = (mask.array == value).sum() * 1.5**3 / 1000
        assert after == pytest.approx(before, rel=0.1)


def test_demo_builds_every_store(shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDIMG_SHARED_DATA", str(shared_data))
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    output = capsys.readouterr().out
    for name in ["pydicom-ct", "nibabel-mr", "totalsegmentator-ct", "chest-xray"]:
        assert (tmp_path / "demo" / f"{name}.zarr").is_dir(), output
        assert f"{name}" in output
    assert "skipped" not in output and "failed" not in output
    chest = open_store(tmp_path / "demo" / "chest-xray.zarr")
    assert len(chest.cases) >= 5
    for name in ["pydicom-ct", "nibabel-mr", "totalsegmentator-ct", "chest-xray"]:
        assert validate_store(tmp_path / "demo" / f"{name}.zarr") == [], name
    assert main(["inspect", str(tmp_path / "demo" / "chest-xray.zarr")]) == 0


def test_demo_works_without_shared_data(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--no-shared-data"]) == 0
    output = capsys.readouterr().out
    assert (tmp_path / "demo" / "pydicom-ct.zarr").is_dir()
    assert (tmp_path / "demo" / "nibabel-mr.zarr").is_dir()
    assert "chest-xray           skipped" in output


def test_demo_says_once_that_it_uses_the_built_in_key(tmp_path, capsys):
    """Each build with the built-in key warns; the demo, which builds several stores of
    public samples, says it in one line instead of one warning per store."""
    import warnings

    from medimg_build.privacy import DefaultKeyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", DefaultKeyWarning)  # pyproject ignores it in tests
        assert main(["demo", "--out", str(tmp_path / "demo"), "--no-shared-data"]) == 0
    printed = capsys.readouterr()
    assert "warning" not in printed.err
    assert printed.out.count("built-in key") == 1


def test_parallel_build_on_dask_equals_serial_build(volume_source, tmp_path):
    """Two local Dask worker processes give the same store contents as one process."""
    recipe = _volume_recipe()
    serial, parallel = tmp_path / "serial.zarr", tmp_path / "parallel.zarr"
    assert build_store(recipe, volume_source, serial, progress=False).ok
    assert build_store(recipe, volume_source, parallel, workers=2, progress=False).ok
    one, two = open_store(serial), open_store(parallel)
    assert one.cases.to_json() == two.cases.to_json()
    for case_id in one.cases["case_id"]:
        np.testing.assert_array_equal(one.read_image(case_id).array, two.read_image(case_id).array)
        np.testing.assert_array_equal(one.read_image(case_id).affine, two.read_image(case_id).affine)


def test_stack_with_2d_masks_mapped_to_labels(tmp_path):
    """PNG masks saved as 0/255 become label 1 on the resized image grid."""
    source = tmp_path / "src"
    (source / "images").mkdir(parents=True)
    (source / "masks").mkdir()
    rows = []
    for index in range(3):
        pixels = np.full((80, 100), 20, np.uint8)
        mask = np.zeros((80, 100), np.uint8)
        mask[10 + index * 5:40, 30:70] = 255
        pixels[mask > 0] = 220  # the structure the mask outlines
        name = f"{index:08d}_000.png"
        Image.fromarray(pixels).save(source / "images" / name)
        Image.fromarray(mask).save(source / "masks" / f"{index:08d}_000_mask.png")
        rows.append({"Image Index": name, "Finding Labels": "No Finding", "Patient ID": str(index)})
    with open(source / "Data_Entry_2017.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (source / "test_list.txt").write_text("")
    (source / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
    recipe = load_recipe("nih-chestxray14").with_overrides({
        # This table has no demographic columns: the recipe must not name them.
        "source": {"masks": "masks/{case_id}_mask.png", "columns": None},
        "labels": {"segmentation": {"classes": {"0": "background", "1": "structure"},
                                    "map": {"255": 1}}},
        "harmonize": {"shape": [64, 64]}})
    out = tmp_path / "masks.zarr"
    assert build_store(recipe, source, out, progress=False).ok
    assert validate_store(out) == []
    ds = xr.open_zarr(out)
    assert ds["mask"].dims == ("case", "y", "x") and ds["mask"].dtype == np.uint8
    assert set(np.unique(ds["mask"].values)) == {0, 1}
    image, mask = ds["image"].values[:, 0].astype(float), ds["mask"].values
    assert image[mask == 1].mean() > 0.8 and image[(mask == 0) & (image > 0.05)].mean() < 0.2


def test_stack_case_without_its_mask_fails_alone(tmp_path):
    source = _chest_source(tmp_path / "nih", [("00000001_000.png", "", "1"),
                                              ("00000002_000.png", "", "2")])
    (source / "masks").mkdir()
    Image.fromarray(np.zeros((80, 100), np.uint8)).save(source / "masks" / "00000001_000.png")
    recipe = load_recipe("nih-chestxray14").with_overrides({
        "source": {"masks": "masks/{case_id}.png", "images": "images_001/**/*.png"},
        "harmonize": {"shape": [32, 32]},
        "labels": {"segmentation": {"classes": {"0": "background"}}}})
    report = build_store(recipe, source, tmp_path / "o.zarr", progress=False)
    assert report.built == ["00000001_000"]
    assert "mask" in report.failed["00000002_000"]


def test_real_segmentation_at_native_spacing_keeps_every_voxel(shared_data, tmp_path):
    """Without resampling, the stored mask has the source's labels and voxel counts, and
    lies on the same HU structures (bone labels on dense voxels)."""
    base = shared_data / "totalsegmentator"
    source = tmp_path / "src"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    (source / "images" / "ct").symlink_to(base / "example_ct_dicom")
    (source / "labels" / "ct.nii.gz").symlink_to(base / "example_seg_dicom.nii.gz")
    seg = np.asanyarray(nib.load(base / "example_seg_dicom.nii.gz").dataobj)
    values, counts = np.unique(seg, return_counts=True)
    recipe = load_recipe("volume-folder").with_overrides({
        "harmonize": {"spacing": None},
        "labels": {"segmentation": {"classes": {str(int(v)): f"s{int(v)}" for v in values}}}})
    out = tmp_path / "native.zarr"
    assert build_store(recipe, source, out, progress=False).ok
    store = open_store(out)
    image, mask = store.read_image("ct"), store.read_mask("ct")
    stored_values, stored_counts = np.unique(mask.array, return_counts=True)
    np.testing.assert_array_equal(stored_values, values)
    np.testing.assert_array_equal(stored_counts, counts)
    # The overlap with dense (bone) voxels is the source's: same HU under each label.
    from medimg_build import read_image
    from medimg_build.harmonize import to_ras
    source_ct = to_ras(read_image(base / "example_ct_dicom")).array
    source_seg = to_ras(read_image(base / "example_seg_dicom.nii.gz")).array
    for value in values[values > 0][:8]:
        np.testing.assert_array_equal(np.sort(image.array[mask.array == value]),
                                      np.sort(np.clip(source_ct[source_seg == value], -1024, 3071)))


def test_mask_keeps_its_labels_and_volume_through_the_pipeline(tmp_path):
    """Two ellipsoids on an anisotropic LPS grid, resampled to 1.5 mm: same label set,
    each label's volume in mm^3 within 2%."""
    shape, spacing = (160, 150, 48), (0.8, 0.8, 2.5)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [60, 50, -40]
    i, j, k = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    mask = np.zeros(shape, np.uint8)
    mask[((i - 60) / 30) ** 2 + ((j - 60) / 25) ** 2 + ((k - 60) / 35) ** 2 <= 1] = 1
    mask[((i - 95) / 15) ** 2 + ((j - 70) / 20) ** 2 + ((k - 50) / 25) ** 2 <= 1] = 2
    image = np.where(mask > 0, 300, -800).astype(np.int16)
    source = tmp_path / "src"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    nib.save(nib.Nifti1Image(image, affine), source / "images" / "e.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), source / "labels" / "e.nii.gz")
    recipe = load_recipe("volume-folder").with_overrides(
        {"labels": {"segmentation": {"classes": {"0": "bg", "1": "big", "2": "small"}}}})
    out = tmp_path / "e.zarr"
    assert build_store(recipe, source, out, progress=False).ok
    stored = open_store(out).read_mask("e").array
    assert set(np.unique(stored)) == {0, 1, 2}
    for value in (1, 2):
        before = (mask == value).sum() * np.prod(spacing)
        after = (stored == value).sum() * 1.5**3
        assert after == pytest.approx(before, rel=0.02), value


def test_nih_boxes_and_landmarks_land_on_their_structure(tmp_path):
    """ChestX-ray14's BBox_List (x, y, w, h on the 1024-pixel image) and a landmark
    table, through the stack recipe: the stored boxes cover the bright structure of the
    resized image, and the stored landmark is on it."""
    source = _chest_source(tmp_path / "nih", [("00000001_000.png", "Mass", "1"),
                                              ("00000002_000.png", "No Finding", "2")])
    pixels = np.full((80, 100), 10, np.uint8)
    pixels[20:35, 60:90] = 250  # rows 20..34, columns 60..89
    Image.fromarray(pixels).save(source / "images_001" / "images" / "00000001_000.png")
    with open(source / "BBox_List_2017.csv", "w", newline="") as handle:
        handle.write("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
        handle.write("00000001_000.png,Mass,60,20,30,15,,,\n")
    with open(source / "points.csv", "w", newline="") as handle:
        handle.write("image,name,x,y\n00000001_000.png,centre,75,27\n")
    recipe = load_recipe("nih-chestxray14").with_overrides({
        "source": {"images": "images_001/**/*.png"}, "harmonize": {"shape": [64, 64]},
        "labels": {"boxes": {"table": "BBox_List_2017.csv", "image_column": "Image Index",
                             "label_column": "Finding Label", "format": "xywh",
                             "columns": ["Bbox [x", "y", "w", "h]"], "classes": ["Mass"]},
                   "landmarks": {"table": "points.csv", "image_column": "image",
                                 "label_column": "name", "columns": ["x", "y"]}}})
    out = tmp_path / "boxes.zarr"
    assert build_store(recipe, source, out, progress=False).ok
    store = open_store(out)
    assert validate_store(out) == []
    boxes, points = store.boxes(), store.landmarks()
    assert list(boxes["case_id"]) == ["00000001_000"] and list(boxes["label"]) == ["Mass"]
    image = store.read_image("00000001_000").array  # (x, y) = (column, row)
    box = boxes.iloc[0]
    inside = image[int(np.ceil(box.x_min)):int(np.floor(box.x_max)) + 1,
                   int(np.ceil(box.y_min)):int(np.floor(box.y_max)) + 1]
    # The box holds the bright structure (edge voxels are partly covered: partial volume).
    assert inside.min() > 0.5 and inside.mean() > 0.85
    bright = np.argwhere(image > 0.7)
    assert bright[:, 0].min() >= box.x_min - 1 and bright[:, 0].max() <= box.x_max + 1
    assert bright[:, 1].min() >= box.y_min - 1 and bright[:, 1].max() <= box.y_max + 1
    point = points.iloc[0]
    assert image[int(round(point.x)), int(round(point.y))] > 0.7  # ...and the point on it
    # Original coordinates are kept, as box edges in voxel-centre units (pixel 60 spans
    # 59.5 .. 60.5): x = 60, w = 30 covers columns 60..89.
    assert (box["source_i_min"], box["source_i_max"]) == (59.5, 89.5)
    assert (box["source_j_min"], box["source_j_max"]) == (19.5, 34.5)


def test_table_and_folder_that_disagree_are_reported_with_counts(tmp_path):
    rows = [("00000001_000.png", "Cardiomegaly", "1"), ("00000002_000.png", "", "2")]
    source = _chest_source(tmp_path / "nih", rows)
    (source / "images_001" / "images" / "00000002_000.png").unlink()  # a row, no image
    for extra in ("00000009_000.png", "00000009_001.png"):  # images, no rows
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(source / "images_001" / "images" / extra)
    report = build_store(load_recipe("nih-chestxray14").with_overrides(
        {"harmonize": {"shape": [16, 16]}}), source, tmp_path / "o.zarr", progress=False)
    assert report.built == ["00000001_000"]
    reasons = list(report.skipped.values())
    assert reasons.count("row without an image file") == 1
    assert reasons.count("image without a table row") == 2
    assert "skipped 2: image without a table row" in report.summary()
    assert open_store(tmp_path / "o.zarr").attrs["build_report"]["skipped"] == {
        "row without an image file": 1, "image without a table row": 2}


def test_table_that_matches_no_image_names_the_mismatch(tmp_path):
    source = _chest_source(tmp_path / "nih", [("00000001_000.png", "", "1")])
    recipe = load_recipe("nih-chestxray14").with_overrides({"source": {"images": "**/*.jpg"}})
    with pytest.raises(RecipeError, match=r"none of its 1 rows names an image .*0 image files"):
        build_store(recipe, source, tmp_path / "o.zarr", progress=False)
