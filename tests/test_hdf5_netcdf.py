"""xarray's h5netcdf engine opens our HDF5 stores (issue 17): ``open_datatree`` a
volumes store, ``open_dataset`` a stack store, and finds what ``open_store`` finds --
the same nodes, variables, dims, coordinates and values; attributes are the JSON text
of the HDF5 mapping (store/formats/hdf5_backend.py). Stores are built by the real pipeline, and
every labelled axis of every dataset carries a dimension scale
(store/formats/hdf5_dimensions.py)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import xarray as xr

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.formats.hdf5_backend import dims_of
from medimg_build.store.opening import verify_store
from medimg_build.store.validate import validate_store

from fixtures import nih_chestxray14, scr

NOT_DATA = "manifest"  # a 0-d root variable (HDF5 and Zarr alike); open_store hides it


def build(recipe: str, source: Path, out: Path, overrides: dict) -> Path:
    recipe_ = load_recipe(recipe).with_overrides(overrides)
    assert build_store(recipe_, source, out, progress=False, key="k", format="hdf5").ok
    assert validate_store(out) == [] and verify_store(out) == []
    return out


def volumes_source(root: Path) -> Path:
    """Three CT volumes of three shapes; the last without a mask."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    for index, shape in enumerate([(30, 26, 9), (22, 31, 12), (40, 18, 7)]):
        image = np.random.default_rng(index).integers(-1000, 1500, shape).astype(np.int16)
        nib.save(nib.Nifti1Image(image, affine), root / "images" / f"case{index}.nii.gz")
        if index < 2:
            mask = np.zeros(shape, np.uint8)
            mask[5:15, 8:18, 2:6] = 1
            nib.save(nib.Nifti1Image(mask, affine), root / "labels" / f"case{index}.nii.gz")
    return root


def unlabelled_axes(path: Path) -> list[str]:
    """Every (dataset, axis) with a dimension name and no dimension scale attached."""
    found: list[str] = []

    def visit(name: str, node) -> None:
        if isinstance(node, h5py.Dataset) and not node.is_scale:
            found.extend(f"{name}[{axis}] {dim}" for axis, dim in enumerate(dims_of(node))
                         if len(node.dims[axis]) == 0)

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    return found


def strict(open_, *args, **kwargs):
    """``open_(...)`` loaded, with any warning an error: h5netcdf warns when it has to
    invent dimension names (phony_dim_<n>) for axes without a scale."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_(*args, engine="h5netcdf", **kwargs) as opened:
            return opened.load()


def decoded(attrs: dict) -> dict:
    return {key: json.loads(value) for key, value in attrs.items()}


def assert_same_dataset(netcdf: xr.Dataset, ours: xr.Dataset, where: str) -> None:
    """Same variables, dims, coordinates, dtypes and values; attributes are our
    attributes as JSON text."""
    netcdf = netcdf.drop_vars(NOT_DATA, errors="ignore")
    assert sorted(netcdf.variables) == sorted(ours.variables), where
    assert sorted(netcdf.xindexes) == sorted(ours.xindexes), where
    assert dict(netcdf.sizes) == dict(ours.sizes), where
    for name, variable in ours.variables.items():
        theirs = netcdf.variables[name]
        assert theirs.dims == variable.dims, f"{where}/{name}"
        if variable.dtype.kind == "T":  # open_store's strings; h5netcdf gives <U
            assert theirs.values.tolist() == variable.values.tolist(), f"{where}/{name}"
        else:
            assert theirs.dtype == variable.dtype, f"{where}/{name}"
            np.testing.assert_array_equal(theirs.values, variable.values, err_msg=name)
        attrs = dict(theirs.attrs)
        # The one attribute that is not JSON: the dims, as our readers take them.
        assert np.atleast_1d(attrs.pop("dimension_names")).tolist() == list(variable.dims)
        assert decoded(attrs) == variable.attrs, f"{where}/{name}"
    # xarray's CF decoding drops a group attribute named "coordinates" (the boxes and
    # landmarks tables have one), as its Zarr backend does: decode_coords=False keeps it.
    kept = {k: v for k, v in ours.attrs.items() if k != "coordinates"}
    assert decoded(netcdf.attrs) == kept, where


def test_open_datatree_reads_a_volumes_store(tmp_path):
    """Cases of different shapes, a mask on two, two pyramid levels: every node."""
    out = build("volume-folder", volumes_source(tmp_path / "source"), tmp_path / "ct.h5",
                {"harmonize": {"spacing": [1.5, 1.5, 2.0]}, "store": {"pyramid_levels": 2},
                 "labels": {"segmentation": {"classes": {"0": "background", "1": "liver"}}}})
    tree = strict(xr.open_datatree, out)
    store = open_store(out)
    ours = store.dataset().load()
    assert sorted(node.path for node in tree.subtree) == sorted(n.path for n in ours.subtree)
    for node in ours.subtree:
        assert_same_dataset(tree[node.path].to_dataset(inherit=False),
                            node.to_dataset(inherit=False), node.path)
    assert unlabelled_axes(out) == []

    shapes = {c: tuple(tree[f"cases/{c}/scale0/image"].shape) for c in store.cases["case_id"]}
    assert len(set(shapes.values())) == 3  # each case its own z/y/x
    for case_id in store.cases["case_id"]:
        level0 = tree[f"cases/{case_id}/scale0"]
        image = store.read_image(case_id)  # nibabel order (x, y, z); stored (channel, z, y, x)
        np.testing.assert_array_equal(level0["image"].values[0].T, image.array)
        assert level0["image"].dims == ("channel", "z", "y", "x")
        mask = store.read_mask(case_id)
        labels = tree[f"cases/{case_id}"].children.get("labels")
        assert (labels is None) == (mask is None)
        if mask is not None:
            np.testing.assert_array_equal(labels["mask/scale0/mask"].values.T, mask.array)
        one = tree[f"cases/{case_id}/scale1"]  # halved in-plane: its own y and x
        assert one.sizes["y"] < level0.sizes["y"] and one.sizes["x"] < level0.sizes["x"]
    assert tree["case"].values.tolist() == store.cases["case_id"].tolist()
    assert tree["split"].values.tolist() == store.cases["split"].tolist()
    assert_manifest_is_a_root_variable(tree)


def assert_manifest_is_a_root_variable(tree: xr.DataTree) -> None:
    """The manifest is one 0-d variable of the root (issue 19): before, a 1-element
    dataset with its own dimension, which h5netcdf made an indexed coordinate that
    every DataTree node inherited, as the Zarr store's was before schema 3.0."""
    assert tree[NOT_DATA].dims == ()
    assert "objects" in json.loads(str(tree[NOT_DATA].values))
    for node in tree.subtree:
        assert NOT_DATA not in node.coords and NOT_DATA not in node.dims, node.path


def test_open_dataset_reads_a_stack_store_with_a_mask(tmp_path):
    """SCR: a stack with a mask and a classification label."""
    scr.make(tmp_path / "scr")
    out = build("scr", tmp_path / "scr", tmp_path / "scr.h5", {"harmonize": {"shape": [48, 40]}})
    netcdf = strict(xr.open_dataset, out)
    store = open_store(out)
    assert_same_dataset(netcdf, store.dataset().load(), "/")
    assert unlabelled_axes(out) == []
    assert netcdf["image"].dims == ("case", "channel", "y", "x")
    assert netcdf["mask"].dims == ("case", "y", "x")
    assert netcdf["spacing"].dims == ("case", "spatial")
    assert netcdf["affine"].dims == ("case", "affine_row", "affine_col")
    for i, case_id in enumerate(store.cases["case_id"]):
        np.testing.assert_array_equal(netcdf["image"].values[i, 0].T,
                                      store.read_image(case_id).array)
        np.testing.assert_array_equal(netcdf["mask"].values[i].T, store.read_mask(case_id).array)
    labels = store.labels("nodule")
    np.testing.assert_array_equal(netcdf["label_nodule"].sel(case=labels.index).values,
                                  labels.to_numpy())
    assert NOT_DATA not in netcdf.coords and NOT_DATA not in netcdf.dims
    assert netcdf[NOT_DATA].dims == ()


def test_a_stack_with_multi_labels_and_boxes(tmp_path):
    """ChestX-ray14: a multi-label (with its class coordinate) and the boxes table."""
    nih_chestxray14.make(tmp_path / "nih")
    out = build("nih-chestxray14", tmp_path / "nih", tmp_path / "nih.h5",
                {"harmonize": {"shape": [32, 32]}})
    netcdf = strict(xr.open_dataset, out)
    store = open_store(out)
    assert_same_dataset(netcdf, store.dataset().load(), "/")
    assert unlabelled_axes(out) == []
    findings = store.labels("finding")
    assert netcdf["label_finding"].dims == ("case", "finding_class")
    assert netcdf["finding_class"].values.tolist() == findings.columns.tolist()
    np.testing.assert_array_equal(netcdf["label_finding"].sel(case=findings.index).values,
                                  findings.to_numpy())

    boxes = strict(xr.open_dataset, out, group="boxes")
    want = store.boxes()
    assert dict(boxes.sizes) == {"box": len(want)}
    for column in want.columns:
        assert boxes[column].values.tolist() == want[column].tolist(), column
    tree = strict(xr.open_datatree, out)
    assert sorted(tree.children) == ["boxes"]


def test_a_column_named_like_a_dimension_leaves_its_dimension_unlabelled(tmp_path):
    """A stack table column may be named ``x``: the dimension-only scale ``x`` cannot go
    beside it, and netCDF's fix (renaming the variable) is not ours to make, so the
    datasets on ``x`` keep no scale on any axis -- h5netcdf calls those axes
    phony_dim_<n> rather than refusing the file ("mixing of labeled and unlabeled")."""
    from medimg_build.store.formats.hdf5_dimensions import attach_netcdf_dimensions
    from medimg_build.store.formats.hdf5_group import Hdf5Group

    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as handle:
        root = Hdf5Group(handle, str(path), "w")
        ids = np.array(["a", "b"], dtype=object)
        root.create_array("case", data=ids, dimension_names=["case"])
        root.create_array("x", data=np.array([1.5, 2.5]), dimension_names=["case"])
        pixels = np.zeros((2, 3), np.uint8)
        root.create_array("image", data=pixels, dimension_names=["case", "x"])
        attach_netcdf_dimensions(handle)
    assert unlabelled_axes(path) == ["image[0] case", "image[1] x"]
    with pytest.warns(UserWarning, match="phony_dims"), \
            xr.open_dataset(path, engine="h5netcdf") as opened:
        netcdf = opened.load()
    assert netcdf["x"].dims == ("case",) and netcdf["x"].values.tolist() == [1.5, 2.5]
    assert netcdf["image"].shape == (2, 3)


def test_boxes_and_landmarks_of_a_volumes_store(tmp_path):
    """The annotation tables beside the cases (landmark columns named z, y, x like the
    case levels' coordinates), built as tests/test_store_hdf5.py builds them."""
    annotations = pytest.importorskip("test_annotations_store")
    cases = [annotations.ct_case(i) for i in range(3)]
    out = annotations.build(tmp_path / "ct.h5", "volumes", cases)
    tree = strict(xr.open_datatree, out)
    store = open_store(out)
    ours = store.dataset().load()
    for node in ours.subtree:
        assert_same_dataset(tree[node.path].to_dataset(inherit=False),
                            node.to_dataset(inherit=False), node.path)
    assert unlabelled_axes(out) == []
    for kind in ("boxes", "landmarks"):
        want = getattr(store, kind)()
        for column in want.columns:
            assert tree[kind][column].values.tolist() == want[column].tolist(), column
        with xr.open_dataset(out, group=kind, engine="h5netcdf", decode_coords=False) as table:
            assert json.loads(table.attrs["coordinates"]).startswith("voxel centres")


def test_a_store_with_the_earlier_one_element_manifest_still_verifies(tmp_path):
    """HDF5 stores written before the manifest became 0-d hold it as a 1-element
    dataset with a ``manifest`` dimension: verify still reads it; a manifest dataset
    of any other size is named as damage, not a traceback."""
    from medimg_build.store.manifest import ManifestError

    out = build("volume-folder", volumes_source(tmp_path / "source"), tmp_path / "ct.h5",
                {"harmonize": {"spacing": [2.0, 2.0, 3.0]}})
    with h5py.File(out, "a") as handle:
        text = handle[NOT_DATA].asstr()[()]
        del handle[NOT_DATA]
        earlier = handle.create_dataset(NOT_DATA, data=[text],
                                        dtype=h5py.string_dtype("utf-8"))
        earlier.attrs["dimension_names"] = [NOT_DATA]
    assert verify_store(out) == []
    with h5py.File(out, "a") as handle:
        del handle[NOT_DATA]
        handle.create_dataset(NOT_DATA, data=[text, text], dtype=h5py.string_dtype("utf-8"))
    with pytest.raises(ManifestError, match="holds 2 values"):
        verify_store(out)
