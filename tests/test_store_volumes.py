"""Volumes layout: round trip, DataTree, NGFF metadata, chunking, file count, completeness."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from medimg_build.case import Case
from medimg_build.errors import StoreError
from medimg_build.image import MedicalImage
from medimg_build.store import create_store, open_store
from medimg_build.store import volumes as volumes_module

ATTRS = {"dataset": "toy-ct", "modality": "CT", "organ": "liver",
         "labels": {"tumour": {"kind": "binary", "classes": ["no", "yes"]}}}


def ras_affine(i: int) -> np.ndarray:
    affine = np.diag([0.78125, 0.8, 2.5 + i, 1.0])
    affine[:3, 3] = [-199.6, -180.2 + i, 12.5 * i - 300]
    return affine


def oblique_affine() -> np.ndarray:
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.diag([0.9, 0.9, 3.0])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    return affine


def ct_case(i: int, slices: int = 0, affine: np.ndarray | None = None) -> Case:
    rng = np.random.default_rng(i)
    shape = (11 + i, 7, slices or 4 + i)  # every case its own grid
    affine = ras_affine(i) if affine is None else affine
    image = MedicalImage(rng.integers(-1024, 3000, shape, dtype=np.int16), affine)
    mask = MedicalImage(rng.integers(0, 3, shape, dtype=np.uint8), affine)
    return Case(f"liver_{i:02d}", image, mask, labels={"tumour": i % 2})


def build(path: Path, cases: list[Case], **kwargs) -> Path:
    writer = create_store(path, "volumes", n_cases=len(cases), attrs=ATTRS, **kwargs)
    for i, case in enumerate(cases):
        writer.write_case(i, case)
    writer.close(pd.DataFrame({"case_id": [c.case_id for c in cases],
                               "split": ["train"] * len(cases)}))
    return path


@pytest.fixture
def cases() -> list[Case]:
    return [ct_case(0), ct_case(1), ct_case(2, affine=oblique_affine())]


def test_round_trip_3d_with_mask(tmp_path, cases):
    store = open_store(build(tmp_path / "v.zarr", cases))
    assert store.layout == "volumes"
    for case in cases:
        image, mask = store.read_image(case.case_id), store.read_mask(case.case_id)
        assert image.array.dtype == np.int16 and image.spatial_ndim == 3
        np.testing.assert_array_equal(image.array, case.image.array)
        np.testing.assert_array_equal(image.affine, case.image.affine)  # exact
        np.testing.assert_array_equal(mask.array, case.mask.array)
        np.testing.assert_array_equal(mask.affine, case.image.affine)
    assert store.labels("tumour").tolist() == [0, 1, 0]
    assert store.dataset()["label_tumour"].attrs["classes"] == ["no", "yes"]


def test_opens_with_xarray_open_datatree(tmp_path, cases):
    path = build(tmp_path / "v.zarr", cases)
    tree = xr.open_datatree(path, engine="zarr")
    assert tree["case"].values.tolist() == [c.case_id for c in cases]
    node = tree["cases/liver_01"]
    level_0 = node["scale0"]  # the layout moved: levels and the mask are subgroups (NGFF)
    assert level_0["image"].dims == ("channel", "z", "y", "x")
    assert node["labels/mask"]["mask"].dims == ("z", "y", "x")  # no pyramid: no scale0/
    np.testing.assert_array_equal(level_0["image"].values[0],
                                  cases[1].image.array.transpose(2, 1, 0))
    affine = ras_affine(1)
    np.testing.assert_allclose(level_0["z"].values, affine[2, 3] + np.arange(5) * affine[2, 2])
    np.testing.assert_allclose(level_0["x"].values, affine[0, 3] + np.arange(12) * affine[0, 0])
    case_attrs = node.attrs["medimg_case"]
    assert case_attrs["complete"] is True and case_attrs["axis_aligned"] is True
    assert tree["cases/liver_02"].attrs["medimg_case"]["axis_aligned"] is False
    assert case_attrs["affine"] == affine.tolist()


def test_ngff_metadata(tmp_path, cases):
    path = build(tmp_path / "v.zarr", cases)
    ome = zarr.open_group(path / "cases" / "liver_01", mode="r").attrs["ome"]
    assert ome["version"] == "0.5"
    multiscale = ome["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["channel", "z", "y", "x"]
    assert multiscale["axes"][1] == {"name": "z", "type": "space", "unit": "millimeter"}
    assert multiscale["datasets"][0]["path"] == "scale0/image"
    scale, translation = multiscale["datasets"][0]["coordinateTransformations"]
    affine = ras_affine(1)
    assert scale["scale"] == [1.0, affine[2, 2], affine[1, 1], affine[0, 0]]
    assert translation["translation"] == [0.0, affine[2, 3], affine[1, 3], affine[0, 3]]
    image = zarr.open_array(path / "cases" / "liver_01" / "scale0" / "image", mode="r")
    assert list(image.metadata.dimension_names) == [a["name"] for a in multiscale["axes"]]


def test_a_slice_is_one_chunk_and_a_case_one_shard(tmp_path, cases):
    path = build(tmp_path / "v.zarr", cases)
    image = zarr.open_array(path / "cases" / "liver_00" / "scale0" / "image", mode="r")
    assert image.shape == (1, 4, 7, 11)
    assert image.chunks == (1, 1, 7, 11)
    assert image.shards == image.shape
    pattern = open_store(path).attrs["arrays"]["cases/*/scale0/image"]
    assert pattern["chunks"] == [1, 1, None, None] and pattern["dtype"] == "int16"


def _file_count(path: Path) -> int:
    return sum(1 for f in path.rglob("*") if f.is_file())


def test_file_count_grows_with_cases_not_slices(tmp_path):
    thin = build(tmp_path / "thin.zarr", [ct_case(i, slices=2) for i in range(4)])
    thick = build(tmp_path / "thick.zarr", [ct_case(i, slices=60) for i in range(4)])
    assert _file_count(thin) == _file_count(thick)
    more = build(tmp_path / "more.zarr", [ct_case(i, slices=2) for i in range(8)])
    per_case = (_file_count(more) - _file_count(thin)) / 4
    # groups: case, scale0, labels, labels/mask; arrays (metadata and data): image, mask,
    # and the 3 coordinates of each
    assert per_case <= 20


def test_case_is_lazy_with_geometry(tmp_path, cases):
    store = open_store(build(tmp_path / "v.zarr", cases))
    ds = store.case("liver_02")
    assert not ds.image.variable._in_memory
    assert isinstance(store.case("liver_02", chunks={}).image.data, da.Array)
    assert ds.attrs["affine"] == oblique_affine().tolist()
    assert ds.attrs["spacing"] == pytest.approx([3.0, 0.9, 0.9])
    tree = store.dataset()
    assert isinstance(tree, xr.DataTree)
    assert isinstance(tree["cases/liver_00/scale0"]["image"].data, da.Array)


def test_interrupted_case_is_hidden(tmp_path, cases, monkeypatch):
    writer = create_store(tmp_path / "v.zarr", "volumes", n_cases=3, attrs=ATTRS)
    writer.write_case(0, cases[0])

    def crash(_):
        raise OSError("disk full")

    with monkeypatch.context() as patch:  # the image is written, then the mask fails
        patch.setattr(volumes_module, "mask_to_stored", crash)
        with pytest.raises(OSError):
            writer.write_case(1, cases[1])
    writer.write_case(2, cases[2])
    writer.close(pd.DataFrame({"case_id": [c.case_id for c in cases]}))

    store = open_store(tmp_path / "v.zarr")
    assert (tmp_path / "v.zarr" / "cases" / "liver_01" / "scale0" / "image").exists()
    assert store.cases["case_id"].tolist() == ["liver_00", "liver_02"]
    assert store.labels("tumour").index.tolist() == ["liver_00", "liver_02"]
    assert "liver_01" not in store.dataset()["cases"].children
    with pytest.raises(StoreError, match="not complete"):
        store.read_image("liver_01")


def test_2d_volumes_case(tmp_path):
    affine = np.diag([0.2, 0.3, 1.0, 1.0])
    image = MedicalImage(np.arange(35, dtype=np.float32).reshape(5, 7), affine, spatial_ndim=2)
    store = open_store(build(tmp_path / "v.zarr", [Case("fundus", image)]))
    back = store.read_image("fundus")
    assert back.spatial_ndim == 2
    np.testing.assert_array_equal(back.array, image.array)
    assert store.case("fundus").image.dims == ("channel", "y", "x")


def test_a_volumes_case_may_lack_a_mask(tmp_path):
    bare = ct_case(0)
    bare.mask = None
    store = open_store(build(tmp_path / "v.zarr", [bare, ct_case(1)]))
    assert store.read_mask("liver_00") is None
    assert "mask" not in store.case("liver_00")
    np.testing.assert_array_equal(store.read_mask("liver_01").array, ct_case(1).mask.array)


def test_volumes_cases_may_differ_in_channels(tmp_path):
    affine = ras_affine(0)
    series = MedicalImage(np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5), affine)
    store = open_store(build(tmp_path / "v.zarr", [ct_case(0), Case("fmri", series)]))
    np.testing.assert_array_equal(store.read_image("fmri").array, series.array)
    assert store.read_image("liver_00").array.ndim == 3
    assert store.case("fmri").image.shape == (5, 4, 3, 2)
