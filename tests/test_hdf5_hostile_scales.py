"""Hostile netCDF dimension scales in an HDF5 store (issue 17 red team).

The dimension-only datasets that make xarray's h5netcdf engine open a store
(``formats/hdf5_dimensions.py``) are left out of the listing, the manifest and
validate. A dataset that only claims to be one -- the netCDF NAME attribute on a
dataset that holds values -- must not be hidden by the claim; one that is one must not
be read as a store array; and the scales attached to an axis, which the content hash
leaves out, must still name that axis and have its length, or h5netcdf reads the store
with other axes than ours.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.errors import StoreError
from medimg_build.store.formats.hdf5_dimensions import NOT_A_VARIABLE
from medimg_build.store.opening import verify_store
from medimg_build.store.validate import validate_store

import test_store_stack as stack_tests  # noqa: E402  (tests/ is on sys.path)
import test_store_volumes as volumes_tests  # noqa: E402


def stack_without_mask(path: Path) -> Path:
    return stack_tests.build(path, [stack_tests.rgb_case(i) for i in range(3)])


def claim_dimension_only(dataset: h5py.Dataset) -> None:
    """The NAME a dimension-only scale has, on any dataset (HDF5 lets anyone write it)."""
    name = f"{NOT_A_VARIABLE}{dataset.shape[0]:10d}"
    dataset.attrs["NAME"] = np.bytes_(name.encode())


def dimension_only(group: h5py.Group, name: str, length: int) -> h5py.Dataset:
    """A dimension-only scale exactly as the writer makes one (no values)."""
    scale = group.create_dataset(name, shape=(length,), dtype=">f4", track_times=False)
    scale.make_scale(f"{NOT_A_VARIABLE}{length:10d}")
    return scale


def test_a_mask_with_values_is_not_hidden_by_a_dimension_name(tmp_path):
    """Added to a store without masks, a mask carrying the NAME of a dimension-only
    scale was invisible to verify and validate, while read_mask returned it."""
    path = stack_without_mask(tmp_path / "s.h5")
    with h5py.File(path, "r+") as handle:
        n_cases, _, height, width = handle["image"].shape
        mask = handle.create_dataset("mask", data=np.ones((n_cases, height, width), "u1"))
        claim_dimension_only(mask)
    # its values and metadata not in the manifest, and its NAME hiding it from h5netcdf
    assert [m.where for m in verify_store(path)] == ["mask", "mask", "mask"]
    assert any(v.where == "mask" for v in validate_store(path))


def test_data_under_any_name_is_not_hidden_by_a_dimension_name(tmp_path):
    path = stack_without_mask(tmp_path / "s.h5")
    with h5py.File(path, "r+") as handle:
        claim_dimension_only(handle.create_dataset("notes", data=np.arange(64, dtype=">f4")))
    assert {m.where for m in verify_store(path)} == {"notes"}  # extra, and named to hide


def test_an_array_with_a_dimension_name_is_read_as_itself(tmp_path):
    """The NAME on the image (its values unchanged) is not in the content hash, but
    h5netcdf hides a dataset so named: verify says so, and our readers still see the
    image, not a dimension."""
    path = stack_without_mask(tmp_path / "s.h5")
    before, violations = open_store(path).dataset().load(), validate_store(path)
    with h5py.File(path, "r+") as handle:
        claim_dimension_only(handle["image"])
    assert [str(m) for m in verify_store(path)] == [
        "image: is named a netCDF dimension without values (HDF5 attribute NAME), which "
        "xarray's h5netcdf engine hides"]
    assert validate_store(path) == violations  # the toy attrs' only, none about the image
    after = open_store(path).dataset().load()
    np.testing.assert_array_equal(after["image"].values, before["image"].values)


def test_a_dimension_only_scale_is_never_read_as_an_array(tmp_path):
    """A real dimension-only scale (no values) named ``mask``: reading it as the mask
    is refused with the store's error, not a ValueError from deep in the reader."""
    path = stack_without_mask(tmp_path / "s.h5")
    with h5py.File(path, "r+") as handle:
        dimension_only(handle, "mask", handle["image"].shape[0])
    store = open_store(path)
    with pytest.raises(StoreError, match="mask is a netCDF dimension"):
        store.read_mask(store.cases["case_id"][0])


def test_a_case_scale_of_the_wrong_length_is_reported(tmp_path):
    """h5netcdf sizes a dimension by its scale: a case's image would read with 2
    channels in xarray while it has 1, and verify said the store was intact. (The
    image's ``channel`` has a dimension-only scale; the spatial axes of image and mask
    have their coordinates as scales, which the manifest hashes.)"""
    cases = [volumes_tests.ct_case(i) for i in range(2)]
    path = volumes_tests.build(tmp_path / "ct.h5", cases)
    level = "cases/liver_00/scale0"
    with h5py.File(path, "r+") as handle:
        image = handle[f"{level}/image"]
        [scale] = image.dims[0].values()
        image.dims[0].detach_scale(scale)
        if scale.name == f"/{level}/channel":
            del handle[scale.name]
        image.dims[0].attach_scale(dimension_only(handle[level], "channel", image.shape[0] + 1))
    problems = [str(m) for m in verify_store(path)]
    assert problems == [f"{level}/image: axis 0 (channel) has the dimension scale "
                        f"/{level}/channel of length 2, not 1"]


def test_swapped_scales_of_equal_length_are_reported(tmp_path):
    """affine_row and affine_col are both 4 long: swapped, h5netcdf reads every affine
    transposed while our readers (dimension_names) do not."""
    path = stack_without_mask(tmp_path / "s.h5")
    with h5py.File(path, "r+") as handle:
        affine, row, col = handle["affine"], handle["affine_row"], handle["affine_col"]
        affine.dims[1].detach_scale(row)
        affine.dims[2].detach_scale(col)
        affine.dims[1].attach_scale(col)
        affine.dims[2].attach_scale(row)
    assert [str(m) for m in verify_store(path)] == [
        "affine: axis 1 (affine_row) has the dimension scale /affine_col",
        "affine: axis 2 (affine_col) has the dimension scale /affine_row"]


@pytest.mark.parametrize("names", [
    "case",  # a str, not a list: its 4 letters named the image's 4 axes
    np.array([1, 2, 3, 4]),
    np.array(["case", "y", "x"], dtype=object),  # one name short
], ids=["str", "numbers", "short"])
def test_dimension_names_that_are_not_one_name_per_axis_are_refused(tmp_path, names):
    """Zarr refuses such metadata when it opens the array; HDF5 read a str as one
    name per letter, or failed in xarray with a ValueError."""
    path = stack_without_mask(tmp_path / "s.h5")
    with h5py.File(path, "r+") as handle:
        handle["image"].attrs["dimension_names"] = names
    store = open_store(path)
    with pytest.raises(StoreError, match="image: dimension_names .* is not one name per axis"):
        store.dataset()
    assert "image: metadata sha256 differs" in [str(m) for m in verify_store(path)]


@pytest.mark.parametrize("medimg", ["not JSON {", 42, '["a list"]'])
def test_verify_refuses_a_root_attribute_that_is_not_a_medimg_object(tmp_path, medimg):
    """verify raised a JSONDecodeError or TypeError traceback; open_store says it in
    one line, and so does verify now."""
    path = stack_without_mask(tmp_path / "s.h5")
    with h5py.File(path, "r+") as handle:
        handle.attrs["medimg"] = medimg
    with pytest.raises(StoreError, match="not a medimg store"):
        verify_store(path)


def test_an_hdf5_store_with_a_user_block_opens_by_url(tmp_path, http):
    """HDF5 allows a user block before the signature (at 512, 1024, ...): a local
    file was recognized (h5py.is_hdf5 looks there), the same file by URL was not."""
    store = stack_without_mask(tmp_path / "s.h5")
    (http.root / "s.h5").write_bytes(bytes(512) + store.read_bytes())
    url = f"{http.url}/s.h5"
    assert open_store(url).cases.shape == open_store(store).cases.shape
    assert verify_store(url) == []


@pytest.mark.parametrize("again", [{}, {"overwrite": True}, {"resume": True}],
                         ids=["plain", "overwrite", "resume"])
def test_a_zarr_build_onto_an_hdf5_file_named_zarr_is_refused_in_one_line(tmp_path, again):
    """``--out x.zarr`` where x.zarr is an HDF5 file (built with --format hdf5): the
    Zarr build looked for its lock inside the file and died with NotADirectoryError."""
    from medimg_build.recipe.build import build_store
    from medimg_build.recipe.model import load_recipe

    from fixtures import scr

    scr.make(tmp_path / "scr")
    recipe = load_recipe("scr").with_overrides({"harmonize": {"shape": [24, 20]}})
    out = tmp_path / "x.zarr"
    assert build_store(recipe, tmp_path / "scr", out, progress=False, format="hdf5").ok
    before = out.read_bytes()
    with pytest.raises(StoreError, match="x.zarr"):
        build_store(recipe, tmp_path / "scr", out, progress=False, **again)
    assert out.read_bytes() == before


def test_a_store_with_scales_on_some_axes_only_verifies(tmp_path):
    """HDF5 stores written before the netCDF dimensions carry scales on some axes (the
    coordinates') and not on others: they verify as they did (h5netcdf refuses them
    loudly, "mixing of labeled and unlabeled dimensions", not silently)."""
    path = stack_without_mask(tmp_path / "s.h5")
    with h5py.File(path, "r+") as handle:
        image = handle["image"]
        image.dims[3].detach_scale(handle["x"])
    assert verify_store(path) == []
