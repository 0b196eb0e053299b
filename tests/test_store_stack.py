"""Stack layout: round trip, xarray access, chunking, write order, completeness."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
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
from medimg_build.store.stack_shards import default_cases_per_shard

FINDINGS = ["effusion", "nodule", "mass"]
ATTRS = {"dataset": "toy-cxr", "modality": "XR", "organ": "chest",
         "labels": {"classification": {  # the shape the build writes
             "findings": {"kind": "multilabel", "classes": FINDINGS},
             "view": {"kind": "multiclass", "classes": ["PA", "AP", "LAT"]}}}}


def oblique_affine(i: int, spatial_ndim: int) -> np.ndarray:
    """Anisotropic, rotated, translated: any axis mix-up changes it."""
    angle = 0.1 + 0.05 * i
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0],
                         [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.9, 2.5])
    affine[:3, 3] = [-101.3 + i, 17.25, 3.5 * i]
    if spatial_ndim == 2:
        affine[:3, 2], affine[2, 2] = 0, 1
    return affine


def rgb_case(i: int, shape=(12, 9)) -> Case:
    rng = np.random.default_rng(i)
    image = MedicalImage(rng.integers(0, 256, shape + (3,), dtype=np.uint8),
                         oblique_affine(i, 2), spatial_ndim=2)
    findings = np.array([i % 2, (i // 2) % 2, -1 if i == 3 else 0], dtype=np.int8)
    return Case(f"img{i:03d}", image, labels={"findings": findings, "view": i % 3})


def table_of(cases: list[Case]) -> pd.DataFrame:
    return pd.DataFrame({"case_id": [c.case_id for c in cases],
                         "split": ["train" if i % 4 else "test" for i in range(len(cases))],
                         "age": [30 + i for i in range(len(cases))]})


def build(path: Path, cases: list[Case], order=None, skip=(), k=2, **kwargs) -> Path:
    attrs = dict(ATTRS)
    writer = create_store(path, "stack", n_cases=len(cases), attrs=attrs,
                          cases_per_shard=k, **kwargs)
    for i in order if order is not None else range(len(cases)):
        if i not in skip:
            writer.write_case(i, cases[i])
    attrs["build_report"] = {"built": len(cases) - len(skip)}  # the final attrs: at close
    writer.close(table_of(cases), attrs)
    return path


@pytest.fixture
def cases() -> list[Case]:
    return [rgb_case(i) for i in range(7)]


def test_round_trip_2d_rgb_with_labels(tmp_path, cases):
    store = open_store(build(tmp_path / "s.zarr", cases))
    assert store.layout == "stack" and store.attrs["dataset"] == "toy-cxr"
    assert store.attrs["build_report"] == {"built": 7}
    assert store.cases["case_id"].tolist() == [c.case_id for c in cases]
    for case in cases:
        image = store.read_image(case.case_id)
        assert image.array.dtype == np.uint8 and image.spatial_ndim == 2
        np.testing.assert_array_equal(image.array, case.image.array)
        np.testing.assert_array_equal(image.affine, case.image.affine)  # exact
    assert store.read_mask(cases[0].case_id) is None
    findings = store.labels("findings")
    assert list(findings.columns) == FINDINGS
    assert findings.loc["img003"].tolist() == [1, 1, -1]
    assert store.labels("view").loc["img005"] == 2
    with pytest.raises(StoreError, match="findings, view"):
        store.labels("nope")


def test_opens_with_xarray_open_zarr(tmp_path, cases):
    path = build(tmp_path / "s.zarr", cases)
    ds = xr.open_zarr(path)
    assert ds.image.dims == ("case", "channel", "y", "x")
    assert isinstance(ds.image.data, da.Array)
    one = ds.sel(case="img004")
    # Stored (c, y, x) is the in-memory (x, y, c) reversed.
    np.testing.assert_array_equal(one.image.values, cases[4].image.array.transpose(2, 1, 0))
    np.testing.assert_array_equal(one.affine.values, cases[4].image.affine)
    assert ds.label_findings.dims == ("case", "findings_class")
    assert ds.findings_class.values.tolist() == FINDINGS
    assert ds.label_view.attrs["classes"] == ["PA", "AP", "LAT"]
    assert ds.split.sel(case="img000").values.item() == "test"
    np.testing.assert_allclose(one.spacing.values, cases[4].image.spacing[::-1])
    assert ds.spatial.values.tolist() == ["y", "x"]


def test_case_is_lazy_with_geometry(tmp_path, cases):
    store = open_store(build(tmp_path / "s.zarr", cases))
    ds = store.case("img002")
    assert not ds.image.variable._in_memory and ds.image.dims == ("channel", "y", "x")
    assert isinstance(store.case("img002", chunks={}).image.data, da.Array)
    np.testing.assert_array_equal(ds.image.values,
                                  store.case("img002", chunks={}).image.values)
    assert ds.attrs["affine"] == cases[2].image.affine.tolist()
    assert ds.attrs["origin"] == cases[2].image.affine[:3, 3][::-1].tolist()
    assert ds.x.size == 12 and ds.y.size == 9


def test_one_image_slice_per_chunk_and_few_files(tmp_path):
    cases = [rgb_case(i) for i in range(10)]
    path = build(tmp_path / "s.zarr", cases, k=4)
    image = zarr.open_array(path / "image", mode="r")
    assert image.chunks == (1, 1, 9, 12)
    assert image.shards == (4, 3, 9, 12)
    shard_files = list((path / "image").rglob("c/**/*"))
    assert len([f for f in shard_files if f.is_file()]) == 3  # ceil(10 / 4)


def test_3d_stack_with_mask(tmp_path):
    rng = np.random.default_rng(0)
    cases = []
    for i in range(3):
        affine = oblique_affine(i, 3)
        image = MedicalImage(rng.normal(size=(6, 5, 4)).astype(np.float32), affine)
        mask = MedicalImage(rng.integers(0, 3, (6, 5, 4), dtype=np.uint8), affine)
        cases.append(Case(f"vol{i}", image, mask))
    path = build(tmp_path / "s.zarr", cases, k=None)
    ds = xr.open_zarr(path)
    assert ds.image.dims == ("case", "channel", "z", "y", "x")
    assert ds.image.encoding["chunks"] == (1, 1, 1, 5, 6)
    assert ds.mask.dims == ("case", "z", "y", "x")
    store = open_store(path)
    assert store.attrs["arrays"]["image"]["cases_per_shard"] == 3  # default, clamped to N
    for case in cases:
        np.testing.assert_array_equal(store.read_image(case.case_id).array, case.image.array)
        mask = store.read_mask(case.case_id)
        np.testing.assert_array_equal(mask.array, case.mask.array)
        np.testing.assert_array_equal(mask.affine, case.image.affine)


def _contents(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in path.rglob("*") if f.is_file()}


def test_out_of_order_and_threaded_writes_give_identical_bytes(tmp_path, cases):
    in_order = build(tmp_path / "a.zarr", cases)
    shuffled = build(tmp_path / "b.zarr", cases, order=[5, 0, 6, 3, 1, 4, 2])
    assert _contents(in_order) == _contents(shuffled)

    attrs = dict(ATTRS, build_report={"built": 7})
    writer = create_store(tmp_path / "c.zarr", "stack", n_cases=len(cases), attrs=attrs,
                          cases_per_shard=2)
    order = [6, 2, 4, 0, 1, 5, 3]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(writer.write_case, order, [cases[i] for i in order]))
    writer.close(table_of(cases))
    assert _contents(in_order) == _contents(tmp_path / "c.zarr")


def test_incomplete_case_is_hidden(tmp_path, cases):
    store = open_store(build(tmp_path / "s.zarr", cases, skip={2}))
    assert "img002" not in store.cases["case_id"].tolist()
    assert len(store.cases) == 6
    assert "img002" not in store.labels("view").index
    assert "img002" not in store.dataset().case.values.tolist()
    with pytest.raises(StoreError, match="img002.*not complete"):
        store.read_image("img002")
    with pytest.raises(StoreError, match="not in the store"):
        store.case("img999")


def test_case_of_another_shape_is_refused(tmp_path, cases):
    writer = create_store(tmp_path / "s.zarr", "stack", n_cases=3, attrs=ATTRS)
    writer.write_case(0, cases[0])
    with pytest.raises(StoreError, match="'odd'.*shape"):
        writer.write_case(1, Case("odd", rgb_case(1, shape=(8, 8)).image))
    writer.write_case(1, cases[1])  # the failed index can still be written
    with_mask = rgb_case(2)
    with_mask.mask = MedicalImage(np.ones((12, 9), np.uint8), with_mask.image.affine,
                                  spatial_ndim=2)
    with pytest.raises(StoreError, match="'img002'.*mask dtype"):  # one mask array for all
        writer.write_case(2, with_mask)


def test_a_stack_mask_needing_uint16_after_uint8_ones_names_the_fix(tmp_path):
    """One mask array: a mask with a label above 255 cannot join uint8 masks. The hint
    says how (declared classes set the dtype of all), not 'harmonize the grid'."""
    writer = create_store(tmp_path / "s.zarr", "stack", n_cases=2, attrs=ATTRS)
    for index, dtype in enumerate((np.uint8, np.uint16)):
        case = rgb_case(index)
        case.mask = MedicalImage(np.ones((12, 9), dtype), case.image.affine, spatial_ndim=2)
        if index == 0:
            writer.write_case(index, case)
            continue
        with pytest.raises(StoreError, match="mask dtype uint16.*labels.segmentation.classes"):
            writer.write_case(index, case)


def test_default_cases_per_shard():
    assert default_cases_per_shard(case_bytes=1 << 20, n_cases=1000) == 64
    assert default_cases_per_shard(case_bytes=1 << 30, n_cases=1000) == 1
    assert default_cases_per_shard(case_bytes=100, n_cases=10) == 10
