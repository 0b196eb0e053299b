"""The case table, Parquet export, and the errors a user can cause when writing or
opening a store."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from medimg_build.case import Case
from medimg_build.errors import StoreError
from medimg_build.image import MedicalImage
from medimg_build.store import create_store, open_store
from medimg_build.store.table import encode_column


def small_case(case_id: str, i: int = 0) -> Case:
    affine = np.diag([0.5, 0.25, 1.0, 1.0])
    affine[:3, 3] = [i, -i, 0.5]
    image = MedicalImage(np.full((4, 3), i, dtype=np.uint16), affine, spatial_ndim=2)
    return Case(case_id, image)


TABLE = pd.DataFrame({
    "case_id": ["a", "b", "c"],
    "patient_id": ["p1", "p2", None],
    "age": [41, None, 63],
    "n_slices": [1, 2, 3],
    "weight": [70.5, np.nan, 80.0],
    "contrast": [True, False, True],
    "original_shape": [[512, 512], [256, 256, 3], None],
    "intensity": [{"window": [-1000, 400]}, {}, {"window": None}],
    "source_digests": [["sha256:aa"], [], ["sha256:bb", "sha256:cc"]],
})


def write(path: Path, table: pd.DataFrame = TABLE, layout: str = "stack") -> Path:
    writer = create_store(path, layout, n_cases=len(table), attrs={"dataset": "t"})
    for i, case_id in enumerate(table["case_id"]):
        writer.write_case(i, small_case(case_id, i))
    writer.close(table)
    return path


@pytest.mark.parametrize("layout", ["stack", "volumes"])
def test_table_round_trip(tmp_path, layout):
    store = open_store(write(tmp_path / "s.zarr", layout=layout))
    cases = store.cases
    assert list(cases.columns) == list(TABLE.columns)
    assert store.attrs["table"]["json_columns"] == ["original_shape", "intensity",
                                                    "source_digests"]
    assert cases["patient_id"].tolist() == ["p1", "p2", ""]  # a missing str is ""
    assert cases["age"].tolist()[::2] == [41.0, 63.0] and np.isnan(cases["age"][1])
    assert cases["n_slices"].dtype == np.int64
    assert cases["contrast"].dtype == bool
    for column in ("original_shape", "intensity", "source_digests"):
        assert cases[column].tolist() == TABLE[column].tolist()


def test_cases_export_to_parquet(tmp_path):
    cases = open_store(write(tmp_path / "s.zarr")).cases
    cases.to_parquet(tmp_path / "cases.parquet")
    back = pd.read_parquet(tmp_path / "cases.parquet")
    flat = [c for c in cases.columns if c not in ("original_shape", "intensity",
                                                  "source_digests")]
    pd.testing.assert_frame_equal(back[flat], cases[flat])
    digests = [list(v) for v in back["source_digests"]]
    assert digests == cases["source_digests"].tolist()


def test_column_kinds():
    assert encode_column([1, 2])[1] == "int"
    assert encode_column([1, None])[1] == "float"
    assert encode_column([1, 2.5])[1] == "float"
    assert encode_column([True, None])[1] == "json"  # a bool cannot hold a gap
    assert encode_column([None, None])[1] == "float"
    assert encode_column(["x", 1])[1] == "json"


def test_existing_path_needs_overwrite(tmp_path):
    path = write(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="--overwrite"):
        create_store(path, "stack", n_cases=1)
    writer = create_store(path, "volumes", n_cases=1, overwrite=True)
    writer.write_case(0, small_case("z"))
    writer.close(pd.DataFrame({"case_id": ["z"]}))
    assert open_store(path).layout == "volumes"


def test_overwrite_refuses_a_folder_that_is_not_a_store(tmp_path):
    folder = tmp_path / "my_thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    with pytest.raises(StoreError, match="not a Zarr store"):
        create_store(folder, "stack", n_cases=1, overwrite=True)
    assert (folder / "chapter1.tex").exists()


@pytest.mark.parametrize("bad_id", ["", "a/b", "a\\b", "..", "x..y", ".hidden", "__z", 7])
def test_bad_case_ids_are_refused(tmp_path, bad_id):
    writer = create_store(tmp_path / "s.zarr", "volumes", n_cases=1)
    with pytest.raises(StoreError, match="case id"):
        writer.write_case(0, small_case(bad_id))


def test_index_and_id_errors(tmp_path):
    writer = create_store(tmp_path / "s.zarr", "stack", n_cases=2)
    with pytest.raises(StoreError, match="outside 0..1"):
        writer.write_case(2, small_case("a"))
    writer.write_case(0, small_case("a"))
    with pytest.raises(StoreError, match="already written"):
        writer.write_case(0, small_case("b"))
    with pytest.raises(StoreError, match="twice"):
        writer.write_case(1, small_case("A"))  # one folder on macOS and Windows
    clashing = small_case("b")
    clashing.row = {"case_id": "b", "spacing": [0.5, 0.25]}
    with pytest.raises(StoreError, match="spacing clash"):  # at once, not after the build
        writer.write_case(1, clashing)
    with pytest.raises(StoreError, match="'case_id'"):
        writer.close(pd.DataFrame({"id": ["a", "b"]}))
    with pytest.raises(StoreError, match="row 0"):
        writer.close(pd.DataFrame({"case_id": ["b", "a"]}))
    with pytest.raises(StoreError, match="clashes"):
        writer.close(pd.DataFrame({"case_id": ["a", "b"], "image": [1, 2]}))
    writer.close(pd.DataFrame({"case_id": ["a", "b"]}))
    with pytest.raises(StoreError, match="closed"):
        writer.write_case(1, small_case("b"))


def test_open_errors(tmp_path):
    with pytest.raises(StoreError, match="no store at this path"):
        open_store(tmp_path / "missing.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a Zarr v3 group"):
        open_store(tmp_path / "empty")
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(StoreError, match="not a medimg store"):
        open_store(tmp_path / "plain.zarr")
    writer = create_store(tmp_path / "unfinished.zarr", "stack", n_cases=1)
    writer.write_case(0, small_case("a"))  # and then the build dies
    with pytest.raises(StoreError, match="did not finish"):
        open_store(tmp_path / "unfinished.zarr")


def test_open_by_url_and_zip(tmp_path):
    path = write(tmp_path / "s.zarr")
    by_url = open_store(path.resolve().as_uri())
    np.testing.assert_array_equal(by_url.read_image("b").array, small_case("b", 1).image.array)
    archive = shutil.make_archive(str(tmp_path / "s"), "zip", root_dir=path)
    zipped = open_store(archive)
    assert zipped.cases["case_id"].tolist() == ["a", "b", "c"]
    assert int(zipped.dataset().image.sel(case="c").max()) == 2


def test_volumes_root_has_room_for_geometry_columns(tmp_path):
    table = pd.DataFrame({"case_id": ["a"], "spacing": [[0.5, 0.25]], "affine": [None]})
    store = open_store(write(tmp_path / "v.zarr", table, layout="volumes"))
    assert store.cases["spacing"].tolist() == [[0.5, 0.25]]
