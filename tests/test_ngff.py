"""OME-NGFF 0.5: a volumes case is a multiscales image that ngff-zarr's validator accepts
and ome-zarr-py reads, its mask an NGFF label image; the optional pyramid keeps every
voxel centre where level 0 has it and never invents a label value."""

from __future__ import annotations

import json
import posixpath
import shutil
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from ngff_zarr import from_ngff_zarr
from ngff_zarr import validate as ngff_validate
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader

from medimg_build.case import Case
from medimg_build.cli import PYRAMID_LEVELS, main
from medimg_build.errors import StoreError
from medimg_build.image import MedicalImage
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store import create_store, open_store
from medimg_build.store.pyramid import image_levels, mask_levels, plan_levels
from medimg_build.store.validate import validate_store
from test_resume import _args, _volume_source

CASE = "ct"


@pytest.fixture(scope="module")
def real(shared_data, tmp_path_factory) -> dict:
    """The real TotalSegmentator CT with its 42-class segmentation, on its own 3 mm grid,
    built without a pyramid (1 level) and with one (3 levels)."""
    base = shared_data / "totalsegmentator"
    root = tmp_path_factory.mktemp("ngff")
    (root / "src" / "images").mkdir(parents=True)
    (root / "src" / "labels").mkdir()
    (root / "src" / "images" / f"{CASE}.nii.gz").symlink_to(base / "example_ct_sm.nii.gz")
    (root / "src" / "labels" / f"{CASE}.nii.gz").symlink_to(base / "example_seg.nii.gz")
    seg = np.asanyarray(nib.load(base / "example_seg.nii.gz").dataobj)
    classes = {str(int(v)): f"structure {int(v)}" for v in np.unique(seg)}
    classes["0"] = "background"
    recipe = load_recipe("volume-folder").with_overrides(
        {"harmonize": {"spacing": None}, "labels": {"segmentation": {"classes": classes}}})
    stores = {}
    for levels in (1, 3):
        stores[levels] = root / f"levels{levels}.zarr"
        report = build_store(recipe, root / "src", stores[levels], progress=False,
                             pyramid_levels=levels)
        assert report.ok, report.failed
    return {"stores": stores, "classes": {int(k): v for k, v in classes.items()}}


def _case_group(store: Path) -> zarr.Group:
    return zarr.open_group(store / "cases" / CASE, mode="r")


def _datasets(group: zarr.Group) -> list[dict]:
    return group.attrs["ome"]["multiscales"][0]["datasets"]


def _assert_valid_multiscales(group: zarr.Group, model: str) -> None:
    """ngff-zarr's validator (the strict schema: name, type and metadata too), plus what
    a JSON schema cannot see: each level's array has the axes as dimension_names."""
    attrs = group.attrs.asdict()
    ngff_validate(attrs, version="0.5", model=model, strict=True)
    names = [axis["name"] for axis in attrs["ome"]["multiscales"][0]["axes"]]
    for dataset in _datasets(group):
        assert list(group[dataset["path"]].metadata.dimension_names) == names


@pytest.mark.parametrize("levels", [1, 3])
def test_case_group_is_a_valid_ngff_image(real, levels):
    group = _case_group(real["stores"][levels])
    _assert_valid_multiscales(group, "image")
    assert [d["path"] for d in _datasets(group)] == [f"scale{n}/image" for n in range(levels)]
    axes = group.attrs["ome"]["multiscales"][0]["axes"]
    assert axes[0] == {"name": "channel", "type": "channel"}
    assert all(a["type"] == "space" and a["unit"] == "millimeter" for a in axes[1:])


@pytest.mark.parametrize("levels", [1, 3])
def test_labels_group_holds_a_valid_label_image(real, levels):
    case = _case_group(real["stores"][levels])
    labels = case["labels"]
    assert labels.attrs["ome"] == {"version": "0.5", "labels": ["mask"]}
    mask = labels["mask"]
    _assert_valid_multiscales(mask, "label")
    ngff_validate(mask.attrs.asdict(), version="0.5", model="image", strict=True)
    assert len(_datasets(mask)) == len(_datasets(case)) == levels
    label = mask.attrs["ome"]["image-label"]
    assert posixpath.normpath(posixpath.join("cases/ct/labels/mask",
                                             label["source"]["image"])) == "cases/ct"
    classes = real["classes"]
    assert {c["label-value"]: c["rgba"][3] for c in label["colors"]} == {
        value: (0 if value == 0 else 255) for value in classes}  # background transparent
    assert {p["label-value"]: p["name"] for p in label["properties"]} == classes


def test_ome_zarr_py_reads_image_and_labels(real):
    path = real["stores"][3]
    store = open_store(path)
    spacing = store.case(CASE).attrs["spacing"]
    nodes = list(Reader(parse_url(str(path / "cases" / CASE)))())
    [image] = [n for n in nodes if any(isinstance(s, Multiscales) for s in n.specs)
               and not any(isinstance(s, Label) for s in n.specs)]
    [label] = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    group = _case_group(path)
    assert [d.shape for d in image.data] == [group[f"scale{n}/image"].shape for n in range(3)]
    assert [d.shape for d in label.data] == [
        group[f"labels/mask/scale{n}/mask"].shape for n in range(3)]
    scale, _ = image.metadata["coordinateTransformations"][0]
    assert scale["scale"] == [1.0] + spacing
    np.testing.assert_array_equal(np.asarray(image.data[0]), store.case(CASE)["image"].values)
    np.testing.assert_array_equal(np.asarray(label.data[0]), store.case(CASE)["mask"].values)
    assert label.metadata["properties"][5]["name"] == real["classes"][5]


@pytest.mark.parametrize("group", ["", "/labels/mask"])
def test_ngff_zarr_reads_image_and_labels(real, group):
    path = real["stores"][3] / "cases" / CASE
    levels = from_ngff_zarr(str(path) + group).images
    level_0 = open_store(real["stores"][3]).case(CASE)
    dims = ("z", "y", "x") if group else ("channel", "z", "y", "x")
    assert [image.dims for image in levels] == [dims] * 3
    assert [image.scale["x"] for image in levels] == [3.0, 6.0, 12.0]
    assert [image.translation["x"] for image in levels] == pytest.approx(
        level_0.x.values[0] + np.array([0.0, 1.5, 4.5]), abs=1e-9)
    array = level_0["mask" if group else "image"].values
    np.testing.assert_array_equal(np.asarray(levels[0].data), array)


def test_readers_read_level_0_of_a_pyramid(real):
    flat, pyramid = (open_store(real["stores"][n]) for n in (1, 3))
    for read in ("read_image", "read_mask"):
        one, other = getattr(flat, read)(CASE), getattr(pyramid, read)(CASE)
        np.testing.assert_array_equal(other.array, one.array)
        np.testing.assert_array_equal(other.affine, one.affine)
    xr.testing.assert_identical(pyramid.case(CASE).load(), flat.case(CASE).load())
    assert validate_store(real["stores"][3]) == []
    tree = xr.open_datatree(real["stores"][3], engine="zarr")  # levels side by side
    assert tree["cases/ct/scale2"]["image"].shape == _case_group(
        real["stores"][3])["scale2/image"].shape


def test_real_mask_levels_hold_only_level_0_values(real):
    group = _case_group(real["stores"][3])
    level_0 = set(np.unique(group["labels/mask/scale0/mask"][...]).tolist())
    assert len(level_0) > 20
    for n in (1, 2):
        assert set(np.unique(group[f"labels/mask/scale{n}/mask"][...]).tolist()) <= level_0


# -- the pyramid on generated images, where the geometry is controlled -------------------
ANISOTROPIC = np.array([[0.7, 0, 0, -120.35], [0, 0.8, 0, 33.3], [0, 0, 2.5, -401.25],
                        [0, 0, 0, 1]])


def _pyramid_store(path: Path, levels: int) -> Path:
    rng = np.random.default_rng(3)
    shape = (23, 18, 9)  # odd sizes: remainders are dropped
    image = MedicalImage(rng.integers(-1024, 2000, shape + (2,), dtype=np.int16), ANISOTROPIC)
    mask = MedicalImage(rng.integers(0, 4, shape, dtype=np.uint8), ANISOTROPIC)
    writer = create_store(path, "volumes", n_cases=1, pyramid_levels=levels,
                          attrs={"labels": {"segmentation": {"classes": {
                              "0": "background", "1": "a", "2": "b", "3": "c"}}}})
    writer.write_case(0, Case(CASE, image, mask))
    writer.close(pd.DataFrame({"case_id": [CASE]}))
    return path


def test_level_voxel_centres_are_where_the_affine_puts_level_0_blocks(tmp_path):
    """World position of every level-n voxel centre from its NGFF scale and translation
    (and from its coordinate arrays) = the affine applied to the centre of the level-0
    block it averages."""
    group = _case_group(_pyramid_store(tmp_path / "p.zarr", levels=4))
    datasets = _datasets(group)
    assert len(datasets) == 4
    for n, dataset in enumerate(datasets):
        scale, translation = (t[t["type"]][1:] for t in dataset["coordinateTransformations"])
        shape = group[f"scale{n}/image"].shape[1:]  # (z, y, x)
        factors = np.asarray(scale) / np.asarray(datasets[0]["coordinateTransformations"][0]
                                                 ["scale"][1:])
        index = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
        ngff_world = np.asarray(translation) + index * np.asarray(scale)
        level_0_index = index * factors + (factors - 1) / 2  # block centre, (z, y, x)
        ijk = level_0_index[..., ::-1]  # the affine's index order (x, y, z)
        affine_world = (ijk @ ANISOTROPIC[:3, :3].T + ANISOTROPIC[:3, 3])[..., ::-1]
        np.testing.assert_allclose(ngff_world, affine_world, rtol=0, atol=1e-9)
        for p, axis in enumerate("zyx"):
            along = translation[p] + np.arange(shape[p]) * scale[p]
            np.testing.assert_allclose(group[f"scale{n}/{axis}"][...], along, rtol=0, atol=1e-9)
            f = round(factors[p])  # the same centres, as means of level-0 centres
            level_0 = group[f"scale0/{axis}"][: shape[p] * f].reshape(shape[p], f).mean(1)
            np.testing.assert_allclose(along, level_0, rtol=0, atol=1e-9)


def test_levels_are_chunked_and_sharded_like_level_0(tmp_path):
    group = _case_group(_pyramid_store(tmp_path / "p.zarr", levels=4))
    for n in range(4):
        for path in (f"scale{n}/image", f"labels/mask/scale{n}/mask"):
            array = group[path]
            assert array.chunks == (1,) * (array.ndim - 2) + array.shape[-2:]  # a slice
            assert array.shards == array.shape  # one file per array
            assert array.compressors == group[path.replace(f"scale{n}", "scale0")].compressors


def test_z_halves_only_once_slices_are_at_most_twice_the_pixel():
    ct = plan_levels(np.array([5.0, 0.7, 0.7]), (40, 512, 512), levels=5)
    assert ct == [(1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16)]
    mr = plan_levels(np.array([1.0, 1.0, 1.0]), (64, 64, 64), levels=3)
    assert mr == [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
    thin = plan_levels(np.array([1.0, 1.0, 1.0]), (1, 64, 64), levels=3)
    assert thin == [(1, 1, 1), (1, 2, 2), (1, 4, 4)]  # one slice stays one slice
    small = plan_levels(np.array([1.0, 1.0]), (5, 3), levels=10)
    assert small == [(1, 1), (2, 2)]  # stops when an in-plane axis has one voxel


def test_image_levels_are_block_means():
    rng = np.random.default_rng(0)
    stored = rng.integers(-1024, 3000, (2, 9, 11, 13), dtype=np.int16)  # (c, z, y, x)
    plan = [(1, 1, 1), (2, 2, 2), (2, 4, 4)]
    levels = list(image_levels(stored, plan))
    expected = xr.DataArray(stored.astype(np.float64), dims=("c", "z", "y", "x"))
    for factors, level in zip(plan[1:], levels[1:]):
        windows = dict(zip("zyx", factors))
        mean = expected.coarsen(windows, boundary="trim").mean()
        assert level.dtype == np.int16
        np.testing.assert_array_equal(level, np.rint(mean.values).astype(np.int16))


def test_mask_levels_take_the_block_mode_and_never_new_values():
    rng = np.random.default_rng(1)
    stored = rng.choice(np.array([0, 3, 7, 200], dtype=np.uint8), size=(8, 10, 14))
    stored[:2, :2, :2] = [[[7, 7], [3, 3]], [[3, 3], [7, 200]]]  # a 3:4:1 block
    stored[:2, :2, 2:4] = [[[7, 7], [7, 7]], [[3, 3], [3, 3]]]  # a 4:4 tie
    level_1 = list(mask_levels(stored, [(1, 1, 1), (2, 2, 2)]))[1]
    assert level_1[0, 0, 0] == 3 and level_1[0, 0, 1] == 3  # the tie: the smaller value
    for index in np.ndindex(level_1.shape):
        block = stored[tuple(slice(2 * i, 2 * i + 2) for i in index)].ravel().tolist()
        counts = Counter(block)
        top = max(counts.values())
        assert level_1[index] == min(v for v, c in counts.items() if c == top)
    assert set(np.unique(level_1)) <= set(np.unique(stored))


def test_validate_names_a_missing_level(tmp_path):
    path = _pyramid_store(tmp_path / "p.zarr", levels=3)
    assert [v for v in validate_store(path) if v.where.startswith("cases/")] == []
    shutil.rmtree(path / "cases" / CASE / "labels" / "mask" / "scale2")
    problems = [str(v) for v in validate_store(path)]
    assert "cases/ct/labels/mask/scale2/mask: listed in ome.multiscales but missing" in problems


def test_cli_pyramid_is_recorded_in_the_recipe(tmp_path):
    source = _volume_source(tmp_path / "src")
    for option, levels in ((["--pyramid", "2"], 2), (["--pyramid"], PYRAMID_LEVELS)):
        out = tmp_path / f"p{levels}.zarr"
        assert main(_args("volumes", source, out) + ["--workers", "1"] + option) == 0
        store = open_store(out)
        assert store.attrs["recipe"]["content"]["store"]["pyramid_levels"] == levels
        case_id = store.cases["case_id"].iloc[1]  # a case with a mask
        group = zarr.open_group(out / "cases" / case_id, mode="r")
        case = group.attrs["medimg_case"]  # small images get fewer levels than asked
        made = plan_levels(np.asarray(case["spacing"]), tuple(case["shape"]), levels)
        assert len(made) == (2 if levels == 2 else 3)
        assert len(_datasets(group)) == len(_datasets(group["labels/mask"])) == len(made)
        assert validate_store(out) == []


def test_hdf5_store_with_a_pyramid_reads_level_0(tmp_path):
    zarr_store = open_store(_pyramid_store(tmp_path / "p.zarr", levels=3))
    hdf5_path = _pyramid_store(tmp_path / "p.h5", levels=3)
    hdf5_store = open_store(hdf5_path)
    xr.testing.assert_identical(hdf5_store.case(CASE).load(), zarr_store.case(CASE).load())
    assert hdf5_store.dataset()["cases/ct/labels/mask/scale2"]["mask"].shape == (4, 4, 5)
    assert [v for v in validate_store(hdf5_path) if v.where.startswith("cases/")] == []


def test_a_store_of_the_layout_before_ngff_is_refused_with_the_fix(tmp_path):
    path = _pyramid_store(tmp_path / "p.zarr", levels=1)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["medimg"]["schema_version"] = "1.0"  # mask at cases/<id>/mask
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"schema '1\.0' is not readable .*\(rebuild the store"):
        open_store(path)


def test_a_pyramid_needs_the_volumes_layout(tmp_path):
    with pytest.raises(StoreError, match="needs the volumes layout"):
        create_store(tmp_path / "s.zarr", "stack", n_cases=1, pyramid_levels=2)
    with pytest.raises(StoreError, match="integer >= 1"):
        create_store(tmp_path / "v.zarr", "volumes", n_cases=1, pyramid_levels=0)
