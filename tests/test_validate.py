"""validate: stores the builder writes pass; stores broken on purpose fail with the reason.
export-table: the Parquet file reads back as ``open_store(...).cases``."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import zarr
from test_build import OBLIQUE_LPS, _chest_source, _ct_volume

from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.export import read_exported_table
from medimg_build.store.validate import validate_store

CLASSES = {"0": "background", "1": "liver", "2": "tumour"}


def _volume_source(root: Path, n: int, with_masks=range(99)) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for index in range(n):
        image, mask = _ct_volume(index, shape=(20, 18, 8))
        nib.save(nib.Nifti1Image(image, OBLIQUE_LPS), root / "images" / f"case{index}.nii.gz")
        if index in with_masks:
            nib.save(nib.Nifti1Image(mask, OBLIQUE_LPS), root / "labels" / f"case{index}.nii.gz")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """One store of each kind the builder writes; tests break copies of them."""
    return _build_all(tmp_path_factory.mktemp("stores"), ".zarr")


@pytest.fixture(scope="module")
def built_h5(tmp_path_factory) -> dict[str, Path]:
    """The same stores, built as HDF5 files."""
    return _build_all(tmp_path_factory.mktemp("h5stores"), ".h5")


def _build_all(base: Path, suffix: str) -> dict[str, Path]:
    segmentation = {"segmentation": {"classes": CLASSES}}
    volumes = load_recipe("volume-folder").with_overrides(
        {"harmonize": {"spacing": [3.0, 3.0, 4.0]}, "labels": segmentation})
    # The third case has no mask: volumes allow that.
    _volume_source(base / "vsrc", 3, with_masks=(0, 1))
    assert build_store(volumes, base / "vsrc", base / f"volumes{suffix}", progress=False).ok
    stack = volumes.with_overrides({"layout": "stack", "harmonize": {"shape": [12, 10, 6]}})
    _volume_source(base / "ssrc", 3)
    assert build_store(stack, base / "ssrc", base / f"stack{suffix}", progress=False).ok
    rows = [("00000001_000.png", "Cardiomegaly", "1"),
            ("00000001_001.png", "Cardiomegaly|Effusion", "1"),
            ("00000002_000.png", "No Finding", "2"), ("00000003_000.png", "", "3")]
    chest = load_recipe("nih-chestxray14").with_overrides({
        "harmonize": {"shape": [16, 16]},
        "labels": {"classification": [
            *load_recipe("nih-chestxray14").data["labels"]["classification"],
            {"name": "view", "column": "View Position", "kind": "multiclass",
             "classes": ["PA", "AP"]}]}})
    source = _chest_source(base / "csrc", rows)
    assert build_store(chest, source, base / f"chest{suffix}", progress=False).ok
    return {kind: base / f"{kind}{suffix}" for kind in ("volumes", "stack", "chest")}


@pytest.fixture
def copy_of(built, tmp_path):
    def copy(kind: str) -> Path:
        target = tmp_path / f"{kind}-{len(list(tmp_path.iterdir()))}.zarr"
        shutil.copytree(built[kind], target)
        return target
    return copy


@pytest.fixture
def copy_h5(built_h5, tmp_path):
    def copy(kind: str) -> Path:
        target = tmp_path / f"{kind}-{len(list(tmp_path.iterdir()))}.h5"
        shutil.copyfile(built_h5[kind], target)
        return target
    return copy


def _problems(path) -> list[str]:
    if Path(path).is_dir():
        # The edits of these tests go through zarr, which leaves the consolidated copy of
        # an edited node stale (itself a violation, test_consolidated_copy_...):
        # consolidated again as a build does, each store shows only its own breakage.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)  # "not in v3 spec"
            zarr.consolidate_metadata(path)
    return [str(v) for v in validate_store(path)]


def _set_medimg(path: Path, **changes) -> None:
    if Path(path).is_file():  # HDF5: JSON text in the HDF5 format (see store/formats/hdf5_backend.py)
        with h5py.File(path, "r+") as f:
            f.attrs["medimg"] = json.dumps(_changed(json.loads(f.attrs["medimg"]), changes))
        return
    root = zarr.open_group(path, mode="r+")
    root.attrs["medimg"] = _changed(dict(root.attrs["medimg"]), changes)


def _changed(medimg: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if value is None:
            medimg.pop(key)
        else:
            medimg[key] = value
    return medimg


@pytest.mark.parametrize("kind", ["volumes", "stack", "chest"])
def test_built_stores_are_valid(built, kind):
    assert _problems(built[kind]) == []


def test_built_stores_have_what_the_checks_need(built):
    assert "mask" in zarr.open_group(built["stack"])  # the stack has masks
    chest = zarr.open_group(built["chest"])
    assert chest["label_finding"].ndim == 2 and chest["label_view"].ndim == 1


def test_misaligned_volumes_mask(copy_of):
    path = copy_of("volumes")
    group = zarr.open_group(path, mode="r+")["cases/case0"]
    shape = group["scale0/image"].shape[1:]
    group.create_array("labels/mask/mask", shape=(shape[0], shape[1] + 1, shape[2]),
                       dtype="uint8", dimension_names=("z", "y", "x"), overwrite=True)
    problems = _problems(path)
    assert len(problems) == 1
    assert "cases/case0/labels/mask/mask" in problems[0]
    assert "not on the image grid" in problems[0]


def test_changed_case_affine(copy_of):
    path = copy_of("volumes")
    group = zarr.open_group(path, mode="r+")["cases/case1"]
    attrs = dict(group.attrs["medimg_case"])
    attrs["affine"] = (np.asarray(attrs["affine"]) @ np.diag([2.0, 1, 1, 1])).tolist()
    group.attrs["medimg_case"] = attrs
    problems = _problems(path)
    assert len(problems) == 2  # the affine's own spacing, and the NGFF scale of level 0
    assert problems[0].startswith("cases/case1: medimg_case: spacing")
    assert "disagrees with the affine" in problems[0]
    assert problems[1] == ("cases/case1: ome level-0 scale/translation disagree with the "
                           "case's affine")


def test_stack_mask_of_another_shape(copy_of):
    path = copy_of("stack")
    root = zarr.open_group(path, mode="r+")
    image = root["image"]
    root.create_array("mask", shape=(image.shape[0],) + image.shape[2:-1] + (3,),
                      dtype="uint8", dimension_names=("case", "z", "y", "x"), overwrite=True)
    problems = _problems(path)
    assert any(p.startswith("mask: shape") and "is not the image's" in p for p in problems)


def test_mask_value_not_in_vocabulary(copy_of):
    for kind, name in (("stack", "mask"), ("volumes", "cases/case1/labels/mask/mask")):
        path = copy_of(kind)
        mask = zarr.open_group(path, mode="r+")[name]
        mask[(-1,) * mask.ndim] = 7
        expected = f"{name}: values [7] are not in the segmentation vocabulary [0, 1, 2]"
        assert _problems(path) == [expected]


def test_label_value_out_of_range(copy_of):
    path = copy_of("chest")
    root = zarr.open_group(path, mode="r+")
    root["label_view"][0] = 7
    root["label_finding"][1, 2] = 2
    assert _problems(path) == [
        "label_finding: values [2] are not in {-1, 0, 1} (14 classes)",
        "label_view: values [7] are not in {-1} or [0, 2) (2 classes)"]


def test_table_column_missing_and_bad_json(copy_of):
    path = copy_of("volumes")
    root = zarr.open_group(path, mode="r+")
    del root["split"]
    root["intensity"][0] = "{not json"
    problems = _problems(path)
    assert any(p.startswith("split: table column 'split' is listed") for p in problems)
    assert any(p.startswith("intensity[0]: case 'case0': not JSON") for p in problems)


def test_root_attrs_against_schema(copy_of):
    path = copy_of("chest")
    _set_medimg(path, organ=None, layout="pile")
    problems = _problems(path)
    assert "attrs medimg: 'organ' is a required property" in problems
    assert any(p.startswith("attrs medimg.layout: 'pile' is not one of") for p in problems)
    # Without a known layout the arrays are not checked: the schema error says it all.
    assert len(problems) == 2


def test_schema_paths_point_inside(copy_of):
    path = copy_of("stack")
    root = zarr.open_group(path, mode="r")
    recipe = dict(root.attrs["medimg"]["recipe"], sha256="xyz")
    labels = {"segmentation": {"classes": CLASSES},
              "classification": {"grade": {"kind": "fuzzy", "classes": ["a"],
                                           "unknown_value": -1}}}
    _set_medimg(path, recipe=recipe, modality="XR", labels=labels, n_cases=5,
                extension_by_a_later_issue={"ok": True})
    problems = _problems(path)
    assert any(p.startswith("attrs medimg.recipe.sha256: 'xyz' does not match") for p in problems)
    assert any(p.startswith("attrs medimg.modality: 'XR' is not one of") for p in problems)
    assert any(p.startswith("attrs medimg.labels.classification.grade.kind:")
               for p in problems)
    # n_cases=5: every case-axis array of the 3-case store is now misaligned.
    assert "image: has 3 entries on the case axis, the store has n_cases=5" in problems
    assert not any("extension_by_a_later_issue" in p for p in problems)


def test_dimension_names_required(copy_of):
    path = copy_of("chest")
    root = zarr.open_group(path, mode="r+")
    data = root["patient_age"][:]
    root.create_array("patient_age", data=data, overwrite=True)  # no dimension_names
    problems = _problems(path)
    assert any(p.startswith("patient_age: dimension_names None") for p in problems)


def test_unfinished_and_not_a_store(copy_of, tmp_path):
    path = copy_of("chest")
    _set_medimg(path, finished=False)
    assert _problems(path) == ["attrs medimg.finished: True was expected"]
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    assert _problems(tmp_path / "plain.zarr") == [
        "attrs: no 'medimg' root attribute: not a medimg store"]


def test_cli_validate(built, copy_of, capsys, tmp_path):
    assert main(["validate", str(built["volumes"])]) == 0
    assert capsys.readouterr().out == f"{built['volumes']}: valid (3 cases, volumes)\n"
    path = copy_of("chest")
    _set_medimg(path, layout="pile", dataset=None)
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{path}: attrs medimg") for line in lines)
    assert main(["validate", str(tmp_path / "nowhere.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no store at this path" in err


@pytest.mark.parametrize("kind", ["volumes", "chest"])
def test_export_table_round_trip(built, tmp_path, capsys, kind):
    out = tmp_path / "cases.parquet"
    assert main(["export-table", str(built[kind]), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"{out}: case table of")
    expected = open_store(built[kind]).cases
    back = read_exported_table(out)
    labels = list(back.columns[len(expected.columns):])  # then the label columns
    assert all(name.startswith("label_") for name in labels)
    pd.testing.assert_frame_equal(back.drop(columns=labels), expected, check_dtype=False)
    # Plain pandas sees lists as Arrow lists, not JSON text.
    plain = pd.read_parquet(out)
    assert len(plain) == len(expected)
    assert list(plain.columns) == [*expected.columns, *labels]
    if kind == "volumes":
        assert list(plain.loc[0, "harmonized_shape"]) == expected.loc[0, "harmonized_shape"]


def test_export_table_default_path_and_duckdb(copy_of, capsys):
    path = copy_of("chest")
    assert main(["export-table", str(path)]) == 0
    target = Path(f"{path}.cases.parquet")
    assert target.exists() and str(target) in capsys.readouterr().out
    import duckdb  # in the test extra: the Parquet must open in duckdb, not only pandas

    count = duckdb.sql(f"select count(*) from read_parquet('{target}')").fetchall()[0][0]
    assert count == 4


def test_exported_json_fallback_is_declared(copy_of, tmp_path):
    """A column Arrow cannot hold exactly (mixed types per row) is JSON text, named in
    the file's metadata so that read_exported_table decodes it."""
    import pyarrow.parquet as pq

    from medimg_build.store.export import table_to_arrow

    cases = pd.DataFrame({"case_id": ["a", "b"], "mixed": [[1, "x"], {"k": 1}]})
    table = table_to_arrow(cases, ["mixed"])
    assert json.loads(table.schema.metadata[b"medimg.json_columns"]) == ["mixed"]
    pq.write_table(table, tmp_path / "m.parquet")
    back = read_exported_table(tmp_path / "m.parquet")
    assert back["mixed"].tolist() == [[1, "x"], {"k": 1}]


def _write_boxes(path: Path, rows: dict[str, list]) -> None:
    """A ``boxes`` table as store/annotation_tables.py writes it (1-D columns, edges)."""
    group = zarr.open_group(path, mode="r+").create_group(
        "boxes", attributes={"dimension": "box", "classes": ["lesion"], "columns": list(rows)})
    for name, values in rows.items():
        group.create_array(name, data=np.asarray(values), dimension_names=("box",))


def test_boxes_inside_the_image(copy_of):
    path = copy_of("stack")
    z, y, x = zarr.open_group(path)["image"].shape[2:]
    inside = {"case_index": [0, 2], "label_index": [0, 0],
              "z_min": [-0.5, 1.5], "z_max": [z - 0.5, 2.5], "y_min": [0.5, 2.5],
              "y_max": [y - 0.5, 4.5], "x_min": [-0.5, 3.5], "x_max": [x - 0.5, 5.5]}
    _write_boxes(path, inside)
    assert _problems(path) == []

    path = copy_of("stack")
    _write_boxes(path, dict(inside, x_max=[x - 0.5, x + 0.5], label_index=[0, 1]))
    assert _problems(path) == [
        "boxes/label_index[1]: 1 is not an index into the 1 classes",
        (f"boxes/x_max[1]: case 'case2': {x + 0.5:g} is outside the image "
         f"(-0.5 .. {x - 0.5:g} along x)")]


# -- HDF5: the same checks, the same messages -------------------------------------------

@pytest.mark.parametrize("kind", ["volumes", "stack", "chest"])
def test_built_hdf5_stores_are_valid(built_h5, kind):
    assert h5py.is_hdf5(built_h5[kind])
    assert _problems(built_h5[kind]) == []


def test_built_hdf5_stores_have_what_the_checks_need(built_h5):
    with h5py.File(built_h5["stack"]) as f:
        assert "mask" in f
    with h5py.File(built_h5["volumes"]) as f:
        assert "labels/mask/mask" in f["cases/case0"] and "labels" not in f["cases/case2"]
    with h5py.File(built_h5["chest"]) as f:
        assert f["label_finding"].ndim == 2 and f["label_view"].ndim == 1


def _edit(path: Path):
    """The store opened for writing: a zarr.Group or an h5py.File (close it)."""
    return h5py.File(path, "r+") if path.is_file() else zarr.open_group(path, mode="r+")


def _close(root) -> None:
    if isinstance(root, h5py.File):
        root.close()


def _replace_array(root, name: str, shape: tuple, dims: tuple) -> None:
    if isinstance(root, h5py.Group):
        del root[name]
        dataset = root.create_dataset(name, shape=shape, dtype="uint8")
        dataset.attrs["dimension_names"] = np.array(dims, dtype=h5py.string_dtype())
    else:
        root.create_array(name, shape=shape, dtype="uint8", dimension_names=dims,
                          overwrite=True)


def _break_stack_mask_shape(path: Path) -> None:
    root = _edit(path)
    shape = root["image"].shape
    _replace_array(root, "mask", (shape[0],) + tuple(shape[2:-1]) + (3,),
                   ("case", "z", "y", "x"))
    _close(root)


def _break_volumes_mask_shape(path: Path) -> None:
    root = _edit(path)
    group = root["cases/case0"]
    z, y, x = group["scale0/image"].shape[1:]
    _replace_array(group, "labels/mask/mask", (z, y + 1, x), ("z", "y", "x"))
    _close(root)


def _break_mask_values(name: str):
    def breakage(path: Path) -> None:
        root = _edit(path)
        mask = root[name]
        mask[(-1,) * mask.ndim] = 7
        _close(root)
    return breakage


def _break_labels(path: Path) -> None:
    root = _edit(path)
    root["label_view"][0] = 7
    root["label_finding"][1, 2] = 2
    _close(root)


def _break_table(path: Path) -> None:
    root = _edit(path)
    del root["split"]
    root["intensity"][0] = "{not json"
    _close(root)


def _break_layout(path: Path) -> None:
    _set_medimg(path, organ=None, layout="pile")


def _break_case_affine(path: Path) -> None:
    root = _edit(path)
    group = root["cases/case1"]
    if isinstance(group, h5py.Group):
        attrs = json.loads(group.attrs["medimg_case"])
    else:
        attrs = dict(group.attrs["medimg_case"])
    attrs["affine"] = (np.asarray(attrs["affine"]) @ np.diag([2.0, 1, 1, 1])).tolist()
    group.attrs["medimg_case"] = json.dumps(attrs) if isinstance(group, h5py.Group) else attrs
    _close(root)


BREAKAGES = {  # kind, breakage, a line the report must hold
    "stack mask shape": ("stack", _break_stack_mask_shape, "mask: shape [3, 6, 10, 3] is "
                         "not the image's (case, z, y, x) = [3, 6, 10, 12]"),
    "volumes mask shape": ("volumes", _break_volumes_mask_shape,
                           "cases/case0/labels/mask/mask: shape"),
    "stack mask value": ("stack", _break_mask_values("mask"), "mask: values [7] are not in "
                         "the segmentation vocabulary [0, 1, 2]"),
    "volumes mask value": ("volumes", _break_mask_values("cases/case1/labels/mask/mask"),
                           "cases/case1/labels/mask/mask: values [7] are not in the "
                           "segmentation vocabulary [0, 1, 2]"),
    "label value": ("chest", _break_labels, "label_view: values [7] are not in {-1} or "
                    "[0, 2) (2 classes)"),
    "table column": ("volumes", _break_table, "split: table column 'split' is listed in "
                     "the root attrs but the array is missing"),
    "layout pile": ("chest", _break_layout, "attrs medimg.layout: 'pile' is not one of"),
    "case affine": ("volumes", _break_case_affine, "cases/case1: medimg_case: spacing"),
}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_hdf5_breakages_reported_as_on_zarr(name, copy_of, copy_h5):
    kind, breakage, expected = BREAKAGES[name]
    on_zarr, on_h5 = copy_of(kind), copy_h5(kind)
    breakage(on_zarr)
    breakage(on_h5)
    zarr_problems, h5_problems = _problems(on_zarr), _problems(on_h5)
    assert any(p.startswith(expected) for p in zarr_problems), zarr_problems
    assert h5_problems == zarr_problems


def test_hdf5_dimension_names_required(copy_h5):
    path = copy_h5("chest")
    with h5py.File(path, "r+") as f:
        del f["patient_age"].attrs["dimension_names"]
    assert any(p.startswith("patient_age: dimension_names None do not name all 1")
               for p in _problems(path))


def test_hdf5_unfinished_and_not_a_store(copy_h5, tmp_path):
    path = copy_h5("chest")
    _set_medimg(path, finished=False)
    assert _problems(path) == ["attrs medimg.finished: True was expected"]
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f.attrs["note"] = "not a store"
    assert _problems(tmp_path / "plain.h5") == [
        "attrs: no 'medimg' root attribute: not a medimg store"]
    with h5py.File(tmp_path / "text.h5", "w") as f:  # hand-written, not JSON
        f.attrs["medimg"] = "layout: stack"
    assert _problems(tmp_path / "text.h5") == [
        "attrs: no 'medimg' root attribute: not a medimg store"]


def test_cli_validate_hdf5(built_h5, copy_h5, capsys, tmp_path):
    for kind, layout in (("volumes", "volumes"), ("stack", "stack"), ("chest", "stack")):
        assert main(["validate", str(built_h5[kind])]) == 0
        cases = 4 if kind == "chest" else 3
        assert capsys.readouterr().out == f"{built_h5[kind]}: valid ({cases} cases, {layout})\n"
    path = copy_h5("chest")
    _set_medimg(path, layout="pile", dataset=None)
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{path}: attrs medimg") for line in lines)
    path = copy_h5("stack")
    _break_mask_values("mask")(path)
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().out == (f"{path}: mask: values [7] are not in the "
                                       "segmentation vocabulary [0, 1, 2]\n")
    assert main(["validate", str(tmp_path / "nowhere.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no store at this path" in err
    (tmp_path / "fake.h5").write_bytes(b"not an HDF5 file")
    assert main(["validate", str(tmp_path / "fake.h5")]) == 2
    assert "not a Zarr v3 group" in capsys.readouterr().err
