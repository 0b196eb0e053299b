"""xarray opens a volumes store as a user expects (issue 19): the snapshot zip with the
calls the README documents, every DataTree node without the manifest, and the mask
with the z/y/x coordinates its image has, at every level."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from medimg_build.case import Case
from medimg_build.errors import StoreError
from medimg_build.image import MedicalImage
from medimg_build.store import create_store, open_store
from medimg_build.store.opening import snapshot_store
from medimg_build.store.validate import validate_store

README = Path(__file__).resolve().parents[1] / "README.md"
AFFINE = np.array([[0.8, 0, 0, -100.4], [0, 0.9, 0, 20.0], [0, 0, 2.0, -300.0],
                   [0, 0, 0, 1]])


def _store(path: Path, pyramid_levels: int = 1) -> Path:
    """Two CT cases on grids of their own, one with a mask."""
    rng = np.random.default_rng(7)
    cases = []
    for i, shape in enumerate([(16, 12, 6), (20, 14, 9)]):
        image = MedicalImage(rng.integers(-1024, 2000, shape, dtype=np.int16), AFFINE,
                             meta={"modality": "CT"})
        image = image.recorded("normalize_ct", method="ct", window=[-1024, 3071],
                               dtype="int16")
        mask = MedicalImage(rng.integers(0, 3, shape, dtype=np.uint8), AFFINE) if i else None
        cases.append(Case(f"case{i}", image, mask))
    writer = create_store(path, "volumes", n_cases=2, pyramid_levels=pyramid_levels,
                          attrs={"modality": "CT", "labels": {"segmentation": {"classes": {
                              "0": "background", "1": "liver", "2": "tumour"}}}})
    for i, case in enumerate(cases):
        writer.write_case(i, case)
    writer.close(pd.DataFrame({"case_id": [c.case_id for c in cases]}))
    return path


@pytest.fixture
def store(tmp_path) -> Path:
    return _store(tmp_path / "ds.zarr")


# -- snapshots ---------------------------------------------------------------------------
def _readme_snapshot_calls() -> list[str]:
    """The xarray calls on a snapshot that the README's "Snapshots and verification"
    section shows, one per line (a trailing comment removed)."""
    section = README.read_text().split("## Snapshots and verification", 1)[1]
    section = section.split("\n## ", 1)[0]
    return [line.split("  #")[0].strip() for line in section.splitlines()
            if line.startswith("tree = xr.open_datatree(") and ".zip" in line]


def test_the_readme_shows_how_xarray_opens_a_snapshot_and_it_does(store, tmp_path,
                                                                   monkeypatch):
    """``xr.open_datatree("ds.zarr.zip", engine="zarr")`` cannot work: zarr-python
    3.1 makes a path without "://" or "::" a LocalStore, a directory
    (zarr/storage/_common.py, make_store), so a zip file is "no group". The README's
    calls, run as written from the snapshot's folder, give the directory's tree."""
    calls = _readme_snapshot_calls()
    assert calls, "the README shows no xarray call on a snapshot"
    snapshot_store(store, tmp_path / "ds.zarr.zip")
    shutil.move(store, tmp_path / "elsewhere.zarr")  # the zip alone
    expected = xr.open_datatree(tmp_path / "elsewhere.zarr", engine="zarr").load()
    monkeypatch.chdir(tmp_path)
    for call in calls:
        namespace = {"xr": xr, "zarr": zarr}
        exec(call, namespace)  # the line as the README prints it
        tree = namespace["tree"].load()
        xr.testing.assert_identical(tree, expected)
        assert tree["cases/case1/scale0/image"].shape == (1, 9, 14, 20)


def test_a_snapshot_served_over_http_opens_with_the_documented_url(store, tmp_path, http):
    """The README's form for a snapshot on a web server: ``zip::`` + its URL."""
    snapshot_store(store, http.root / "ds.zarr.zip")
    assert any("zip::https://" in line for line in README.read_text().splitlines()
               if "open_datatree" in line)
    tree = xr.open_datatree(f"zip::{http.url}/ds.zarr.zip", engine="zarr")
    expected = xr.open_datatree(store, engine="zarr")
    xr.testing.assert_identical(tree.load(), expected.load())


# -- noise ---------------------------------------------------------------------------------
def test_the_manifest_is_a_root_variable_not_a_coordinate_of_every_node(store):
    tree = xr.open_datatree(store, engine="zarr")
    for node in tree.subtree:
        assert "manifest" not in node.coords, node.path
        assert "manifest" not in node.dims, node.path
    assert tree["manifest"].dims == ()
    assert "objects" in str(tree["manifest"].values)
    assert open_store(store).attrs["manifest"]["n_objects"] > 0  # still read and verified
    stack_root = xr.open_zarr(store, consolidated=True)  # one Dataset: no manifest dim
    assert "manifest" not in stack_root.dims


@pytest.mark.parametrize("levels", [1, 3])
def test_mask_levels_have_the_coordinates_of_the_image_levels(tmp_path, levels):
    path = _store(tmp_path / "p.zarr", pyramid_levels=levels)
    tree = xr.open_datatree(path, engine="zarr")
    case = tree["cases/case1"]
    mask_levels = ([case["labels/mask"]] if levels == 1 else
                   [case[f"labels/mask/scale{n}"] for n in range(levels)])
    for n, mask_level in enumerate(mask_levels):
        image_level = case[f"scale{n}"]
        assert mask_level["mask"].dims == ("z", "y", "x")
        for axis in "zyx":
            assert axis in mask_level["mask"].indexes
            xr.testing.assert_identical(mask_level[axis], image_level[axis])
        aligned = xr.merge([image_level.to_dataset()["image"], mask_level["mask"]],
                           join="exact")  # label and image, voxel for voxel
        assert aligned["mask"].shape == aligned["image"].shape[1:]
    assert [v for v in validate_store(path) if v.where.startswith("cases/")] == []


def test_validate_names_mask_coordinates_that_disagree_with_the_affine(store):
    coords = zarr.open_array(store / "cases" / "case1" / "labels" / "mask" / "y", mode="r+")
    coords[0] = coords[0] + 5.0
    problems = [str(p) for p in validate_store(store)]
    assert any(p.startswith("cases/case1/labels/mask/y") and "disagree with the case's "
               "affine" in p for p in problems), problems


def test_readers_read_the_mask_where_the_layout_puts_it(store):
    """One level: the label image group holds the mask (not scale0/)."""
    assert os.path.isdir(store / "cases" / "case1" / "labels" / "mask" / "mask")
    assert not os.path.exists(store / "cases" / "case1" / "labels" / "mask" / "scale0")
    opened = open_store(store)
    mask = opened.read_mask("case1")
    stored = zarr.open_array(store / "cases/case1/labels/mask/mask", mode="r")[...]
    np.testing.assert_array_equal(mask.array.transpose(2, 1, 0), stored)
    assert set(opened.case("case0").data_vars) == {"image"}


def _set_schema_version(path: Path, version: str) -> None:
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["medimg"]["schema_version"] = version
    (path / "zarr.json").write_text(json.dumps(meta))


def test_schema_2_stores_are_read_and_a_later_major_refused(tmp_path):
    """A 2.x store keeps its mask in labels/mask/scale0/ (as a pyramid does now): read.
    A 2.x reader would miss the mask of a 3.0 store, hence the new major."""
    path = _store(tmp_path / "p.zarr", pyramid_levels=2)
    expected = open_store(path).read_mask("case1").array
    _set_schema_version(path, "2.0")
    np.testing.assert_array_equal(open_store(path).read_mask("case1").array, expected)
    _set_schema_version(path, "4.0")
    with pytest.raises(StoreError, match=r"schema '4\.0' is not readable .*upgrade"):
        open_store(path)
