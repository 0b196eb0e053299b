"""HDF5 beside Zarr: the same cases written to both read back identical through
open_store; h5py alone reads the file; a build writes either; incomplete cases hide."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from medimg_build.case import Case
from medimg_build.errors import StoreError
from medimg_build.image import MedicalImage
from medimg_build.recipe.build import build_store
from medimg_build.store import create_store, open_store
from medimg_build.store import volumes as volumes_module
from medimg_build.store.validate import validate_store

import test_store_stack as stack_tests  # noqa: E402  (tests/ is on sys.path)
import test_store_volumes as volumes_tests  # noqa: E402
from test_store_formats import (  # noqa: E402
    stack_cases, volume_cases, volume_recipe, write_volume_source,
)


def write_stack(path: Path, cases: list[Case], skip=()) -> Path:
    return stack_tests.build(path, cases, order=[6, 0, 3, 1, 5, 2, 4], skip=skip, k=3)


def write_volumes(path: Path, cases: list[Case]) -> Path:
    return volumes_tests.build(path, cases)


def without_arrays(attrs: dict) -> dict:
    """Root attrs minus ``arrays`` (whose codecs and shards name the format) and the
    content ``manifest`` (Zarr stores only: checksums of Zarr objects)."""
    return {k: v for k, v in attrs.items() if k not in ("arrays", "manifest")}


def assert_same_store(zarr_store, h5_store) -> None:
    assert h5_store.layout == zarr_store.layout
    assert without_arrays(h5_store.attrs) == without_arrays(zarr_store.attrs)
    pd.testing.assert_frame_equal(h5_store.cases, zarr_store.cases)
    ids = zarr_store.cases["case_id"].tolist()
    for case_id in ids:
        for read in ("read_image", "read_mask"):
            one, two = getattr(zarr_store, read)(case_id), getattr(h5_store, read)(case_id)
            if one is None:
                assert two is None
                continue
            assert two.array.dtype == one.array.dtype
            np.testing.assert_array_equal(two.array, one.array)
            np.testing.assert_array_equal(two.affine, one.affine)
            assert two.spatial_ndim == one.spatial_ndim
        lazy = h5_store.case(case_id)
        assert isinstance(lazy["image"].data, da.Array)
        xr.testing.assert_identical(lazy.load(), zarr_store.case(case_id).load())


def test_stack_zarr_and_hdf5_read_back_identical(tmp_path):
    cases = stack_cases()
    one = open_store(write_stack(tmp_path / "s.zarr", cases, skip=(4,)))
    two = open_store(write_stack(tmp_path / "s.h5", cases, skip=(4,)))
    assert_same_store(one, two)
    for label in ("findings", "view"):
        pd.testing.assert_frame_equal(two.labels(label).to_frame() if label == "view"
                                      else two.labels(label),
                                      one.labels(label).to_frame() if label == "view"
                                      else one.labels(label))
    ds_one, ds_two = one.dataset(), two.dataset()
    assert isinstance(ds_two["image"].data, da.Array)
    ds_two.attrs = ds_one.attrs = {}
    xr.testing.assert_identical(ds_two.load(), ds_one.load())
    assert "img004" not in two.cases["case_id"].tolist()  # never written: hidden
    with pytest.raises(StoreError, match="not complete"):
        two.read_image("img004")


def test_volumes_zarr_and_hdf5_read_back_identical(tmp_path):
    cases = volume_cases()
    one = open_store(write_volumes(tmp_path / "v.zarr", cases))
    two = open_store(write_volumes(tmp_path / "v.hdf5", cases))
    assert_same_store(one, two)
    pd.testing.assert_series_equal(two.labels("tumour"), one.labels("tumour"))
    tree_one, tree_two = one.dataset(), two.dataset()
    assert isinstance(tree_two, xr.DataTree)
    assert set(tree_two["cases"].children) == set(tree_one["cases"].children)
    for case_id in tree_one["cases"].children:
        nodes_one = {n.path: n for n in tree_one[f"cases/{case_id}"].subtree}
        nodes_two = {n.path: n for n in tree_two[f"cases/{case_id}"].subtree}
        assert set(nodes_two) == set(nodes_one)  # levels, labels/mask and its levels
        for path, node in nodes_one.items():
            xr.testing.assert_identical(nodes_two[path].to_dataset().load(),
                                        node.to_dataset().load())
    root_one, root_two = tree_one.to_dataset(), tree_two.to_dataset()
    root_one.attrs = root_two.attrs = {}
    xr.testing.assert_identical(root_two.load(), root_one.load())


def test_h5py_alone_reads_slices_table_and_attrs(tmp_path):
    cases = volume_cases()
    path = write_volumes(tmp_path / "v.h5", cases)
    with h5py.File(path, "r") as f:
        medimg = json.loads(f.attrs["medimg"])
        assert medimg["layout"] == "volumes" and medimg["finished"] is True
        image = f["cases/liver_02/scale0/image"]
        assert list(image.attrs["dimension_names"]) == ["channel", "z", "y", "x"]
        assert image.chunks == (1, 1) + image.shape[2:]  # one 2D slice per chunk
        assert image.compression == "gzip" and image.shuffle  # no plugin needed
        assert [c["name"] for c in medimg["arrays"]["cases/*/scale0/image"]["codecs"]] \
            == ["shuffle", "gzip", "fletcher32"]  # each chunk checked on every read
        expected = np.asarray(cases[2].image.array).T  # (x, y, z) -> (z, y, x)
        np.testing.assert_array_equal(image[0, 3], expected[3])
        assert f["case"].asstr()[:].tolist() == [c.case_id for c in cases]
        assert f["split"].asstr()[:].tolist() == ["train"] * 3
        assert f["label_tumour"][:].tolist() == [0, 1, 0]
        case_attrs = json.loads(f["cases/liver_02"].attrs["medimg_case"])
        np.testing.assert_allclose(case_attrs["affine"], cases[2].image.affine)
        assert case_attrs["complete"] is True
        # netCDF-style dimension scales where a coordinate of the dim's name exists
        assert image.dims[1][0].name == "/cases/liver_02/scale0/z"
        assert f["label_tumour"].dims[0][0].name == "/case"


def test_explicit_format_and_existing_files(tmp_path):
    path = tmp_path / "plain"
    writer = create_store(path, "stack", n_cases=1, format="hdf5")
    writer.write_case(0, stack_cases()[0])
    writer.close(pd.DataFrame({"case_id": ["img000"]}))
    assert h5py.is_hdf5(path)
    with pytest.raises(StoreError, match="already exists"):
        create_store(path, "stack", n_cases=1, format="hdf5")
    create_store(path, "stack", n_cases=1, format="hdf5", overwrite=True)
    other = tmp_path / "notes.h5"
    other.write_text("not hdf5")
    with pytest.raises(StoreError, match="not an HDF5 file"):
        create_store(other, "stack", n_cases=1, overwrite=True)
    with pytest.raises(StoreError, match="unknown store format"):
        create_store(tmp_path / "x", "stack", n_cases=1, format="netcdf")


def test_interrupted_volumes_case_is_hidden(tmp_path, monkeypatch):
    cases = volume_cases()
    path = tmp_path / "v.h5"
    writer = create_store(path, "volumes", n_cases=3, attrs=volumes_tests.ATTRS)
    writer.write_case(0, cases[0])

    def crash(_):
        raise OSError("disk full")

    with monkeypatch.context() as patch:  # the image is written, then the mask fails
        patch.setattr(volumes_module, "mask_to_stored", crash)
        with pytest.raises(OSError):
            writer.write_case(1, cases[1])
    with pytest.raises(StoreError, match="did not finish") as refused:
        open_store(path)  # readable mid-build (flushed), but refused as unfinished
    assert "--resume" not in str(refused.value)  # HDF5 builds do not resume
    writer.write_case(2, cases[2])
    writer.close(pd.DataFrame({"case_id": [c.case_id for c in cases]}))

    store = open_store(path)
    with h5py.File(path, "r") as f:
        assert "cases/liver_01/scale0/image" in f  # written, but its case is not complete
    assert store.cases["case_id"].tolist() == ["liver_00", "liver_02"]
    assert store.labels("tumour").index.tolist() == ["liver_00", "liver_02"]
    assert "liver_01" not in store.dataset()["cases"].children
    with pytest.raises(StoreError, match="not complete"):
        store.read_image("liver_01")


def test_same_inputs_same_bytes(tmp_path):
    cases = volume_cases()
    one = write_volumes(tmp_path / "a.h5", cases).read_bytes()
    two = write_volumes(tmp_path / "b.h5", cases).read_bytes()
    assert one == two


def test_build_hdf5_equals_build_zarr(tmp_path):
    source = write_volume_source(tmp_path / "source")
    recipe = volume_recipe()
    zarr_out, h5_out = tmp_path / "ct.zarr", tmp_path / "ct.out"
    assert build_store(recipe, source, zarr_out, progress=False, key="k").ok
    assert build_store(recipe, source, h5_out, progress=False, key="k", format="hdf5").ok
    one, two = open_store(zarr_out), open_store(h5_out)
    assert h5py.is_hdf5(h5_out)
    for key in ("provenance", "build_report", "arrays"):  # times differ, codecs name formats
        one.attrs.pop(key), two.attrs.pop(key)
    assert_same_store(one, two)


def test_boxes_and_landmarks_read_back_identical(tmp_path):
    annotations = pytest.importorskip("test_annotations_store")  # needs Case.boxes
    for layout, make in (("stack", annotations.xray_case), ("volumes", annotations.ct_case)):
        cases = [make(i) for i in range(3)]
        one = open_store(annotations.build(tmp_path / f"{layout}.zarr", layout, cases, crash=1))
        two = open_store(annotations.build(tmp_path / f"{layout}.h5", layout, cases, crash=1))
        for kind in ("boxes", "landmarks"):
            pd.testing.assert_frame_equal(getattr(two, kind)(), getattr(one, kind)())
    tree_one, tree_two = one.dataset(), two.dataset()
    for kind in ("boxes", "landmarks"):
        node = tree_two[kind].to_dataset().load()
        # xarray's Zarr backend takes a group attribute named "coordinates" for CF
        # metadata and moves it out of attrs; HDF5 keeps it as written.
        assert node.attrs.pop("coordinates").startswith("voxel centres")
        xr.testing.assert_identical(node, tree_one[kind].to_dataset().load())


def test_validate_reads_a_mask_level_whose_z_y_x_are_netcdf_dimensions(tmp_path):
    """Schema 2.x HDF5 stores have no coordinates beside a mask: its z/y/x are
    netCDF dimension-only datasets. validate's coordinate check asked ``"z" in group``
    (yes), then read it, which the HDF5 reader refuses as altered: every such 2.x store
    with a mask was called damaged (found reading a store built by 7e3c269)."""
    from medimg_build.store.formats.hdf5_dimensions import _dimension_only, is_dimension_only

    out = tmp_path / "ct.h5"
    writer = create_store(out, "volumes", n_cases=1, format="hdf5")
    rng = np.random.default_rng(3)
    image = MedicalImage(rng.integers(-1000, 1000, (12, 10, 6)).astype(np.int16), np.eye(4))
    mask = MedicalImage(rng.integers(0, 3, (12, 10, 6)).astype(np.uint8), np.eye(4))
    writer.write_case(0, Case("c0", image, mask))
    writer.close(pd.DataFrame({"case_id": ["c0"]}))
    label_image = "cases/c0/labels/mask"
    with h5py.File(out, "a") as handle:  # the mask's coordinates as 2.x had them: none
        mask_data = handle[f"{label_image}/mask"]
        for axis, name in enumerate(("z", "y", "x")):
            mask_data.dims[axis].detach_scale(handle[f"{label_image}/{name}"])
            del handle[f"{label_image}/{name}"]
            dimension = _dimension_only(handle[label_image], name, mask_data.shape[axis])
            mask_data.dims[axis].attach_scale(dimension)
        assert is_dimension_only(handle[f"{label_image}/z"])
    # Raised "... is a netCDF dimension (no values) ... the file was altered" before.
    # (This store has no recipe attributes, which validate names at the root.)
    problems = validate_store(out)
    assert [(p.where, p.problem) for p in problems if p.where.startswith("cases")] == [
        (f"{label_image}/mask", "a mask but no labels.segmentation.classes vocabulary")]
