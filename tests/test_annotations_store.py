"""Boxes and landmarks tables in stack and volumes stores: round trip and completeness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from medimg_build.case import Case
from medimg_build.errors import LabelError, StoreError
from medimg_build.harmonize import resample_to_spacing, resize_with_pad, to_ras
from medimg_build.image import MedicalImage
from medimg_build.labels.boxes_landmarks import Boxes, Landmarks
from medimg_build.store import create_store, open_store
from medimg_build.store import volumes as volumes_module

VOCABULARY = {"boxes": {"classes": ["Mass", "Nodule"]}}


def xray_case(i: int) -> Case:
    """A 2D picture (300 columns x 200 rows) resized to 64 x 64, as a stack holds it."""
    source = MedicalImage(np.zeros((300, 200), np.uint8), np.eye(4), spatial_ndim=2)
    image = resize_with_pad(to_ras(source), (64, 64), "nearest", pad_value=0)
    boxes = Boxes.from_xywh(source, ["Nodule", "Mass"][: 1 + i % 2],
                            [[10 * i, 20, 40, 30], [100, 50, 20, 20]][: 1 + i % 2])
    points = Landmarks.from_pixels(source, ["apex"], [[150, 10 + i]])
    return Case(f"xr{i}", image, boxes=boxes.onto(image), landmarks=points.onto(image))


def ct_case(i: int) -> Case:
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])  # LPS
    source = MedicalImage(np.zeros((20 + i, 16, 8), np.int16), affine)
    image = resample_to_spacing(to_ras(source), (1.0, 1.0, 2.0), "nearest")
    boxes = Boxes.from_key_slice(source, ["Mass"], [[2, 3, 9, 8]], [4])
    points = Landmarks.from_voxels(source, ["a", "b"], [[1, 2, 3], [5, 6, 7]])
    return Case(f"ct{i}", image, boxes=boxes.onto(image), landmarks=points.onto(image))


def build(path, layout: str, cases: list[Case], attrs=None, crash=None):
    writer = create_store(path, layout, n_cases=len(cases), attrs=attrs or {"labels": VOCABULARY})
    for i, case in enumerate(cases):
        if i == crash:
            continue
        writer.write_case(i, case)
    writer.close(pd.DataFrame({"case_id": [c.case_id for c in cases]}))
    return path


def test_stack_round_trip_2d(tmp_path):
    cases = [xray_case(i) for i in range(3)]
    store = open_store(build(tmp_path / "s.zarr", "stack", cases))
    boxes = store.boxes()
    assert boxes["case_id"].tolist() == ["xr0", "xr1", "xr1", "xr2"]
    assert boxes["case_index"].tolist() == [0, 1, 1, 2]
    assert boxes["label"].tolist() == ["Nodule", "Nodule", "Mass", "Nodule"]
    assert boxes["label_index"].tolist() == [1, 1, 0, 1]  # vocabulary order
    # Stored names: x = index axis i (column), y = j (row); edges in voxels.
    want = cases[1].boxes
    np.testing.assert_allclose(boxes.loc[2, ["x_min", "y_min"]], want.lo[1])
    np.testing.assert_allclose(boxes.loc[2, ["x_max", "y_max"]], want.hi[1])
    lo_mm, hi_mm = want.to_world()
    np.testing.assert_allclose(boxes.loc[2, ["R_min", "A_min", "S_min"]], lo_mm[1])
    np.testing.assert_allclose(boxes.loc[2, ["R_max", "A_max", "S_max"]], hi_mm[1])
    # The original pixel box: x = 100, w = 20 -> source i edges 99.5 .. 119.5.
    assert boxes.loc[2, ["source_i_min", "source_i_max"]].tolist() == [99.5, 119.5]
    assert "z_min" not in boxes and "key_slice" not in boxes
    points = store.landmarks()
    assert points["case_id"].tolist() == ["xr0", "xr1", "xr2"]
    assert points["source_i"].tolist() == [150.0] * 3
    np.testing.assert_allclose(points[["x", "y"]].to_numpy(),
                               [c.landmarks.points[0] for c in cases])
    medimg = store.attrs["annotations"]
    assert medimg["boxes"]["rows"] == 4 and medimg["boxes"]["classes"] == ["Mass", "Nodule"]
    assert medimg["landmarks"]["classes"] == ["apex"]
    xr.open_zarr(tmp_path / "s.zarr")  # the tables are groups: the Dataset still opens


def test_incomplete_stack_case_is_excluded(tmp_path):
    path = build(tmp_path / "s.zarr", "stack", [xray_case(i) for i in range(3)])
    zarr.open_group(path, mode="r+")["complete"][1] = False  # as if never finished
    store = open_store(path)
    assert "xr1" not in store.boxes()["case_id"].tolist()
    assert store.landmarks()["case_id"].tolist() == ["xr0", "xr2"]


def test_volumes_round_trip_3d_and_failed_case(tmp_path, monkeypatch):
    cases = [ct_case(i) for i in range(3)]
    writer = create_store(tmp_path / "v.zarr", "volumes", n_cases=3,
                          attrs={"labels": VOCABULARY})
    writer.write_case(0, cases[0])
    with monkeypatch.context() as patch:
        patch.setattr(volumes_module, "mask_to_stored", None)  # crash in the write
        with pytest.raises(TypeError):
            writer.write_case(1, Case("ct1", cases[1].image, mask=cases[1].image,
                                      boxes=cases[1].boxes))
    writer.write_case(2, cases[2])
    writer.close(pd.DataFrame({"case_id": [c.case_id for c in cases]}))
    store = open_store(tmp_path / "v.zarr")
    boxes = store.boxes()
    assert boxes["case_id"].tolist() == ["ct0", "ct2"]
    # Slice 4 of 2.5 mm spans 8.75 .. 11.25 mm: harmonized (2 mm) z edges 4.375 .. 5.625.
    np.testing.assert_allclose(boxes[["z_min", "z_max"]].to_numpy(), [[4.375, 5.625]] * 2)
    assert boxes["key_slice"].tolist() == [5, 5]
    assert boxes["source_key_slice"].tolist() == [4, 4]
    assert boxes["source_k_min"].tolist() == [3.5, 3.5]
    points = store.landmarks()
    np.testing.assert_allclose(points[["R", "A", "S"]].to_numpy(),
                               np.r_[cases[0].landmarks.to_world(),
                                     cases[2].landmarks.to_world()])
    np.testing.assert_allclose(points[["x", "y", "z"]].to_numpy()[:2],
                               cases[0].landmarks.points)
    tree = xr.open_datatree(tmp_path / "v.zarr", engine="zarr")
    assert tree["boxes"].dataset.sizes["box"] == 2


def test_store_refusals(tmp_path):
    case = xray_case(0)
    writer = create_store(tmp_path / "a.zarr", "stack", n_cases=2,
                          attrs={"labels": {"boxes": ["Mass"]}})
    with pytest.raises(LabelError, match="'xr0'.*'Nodule'.*not in the vocabulary"):
        writer.write_case(0, case)
    source = MedicalImage(np.zeros((64, 64), np.uint8), np.eye(4), spatial_ndim=2)
    off_grid = Case("xr9", case.image, boxes=Boxes.from_xywh(source, "Mass", [[1, 1, 2, 2]]))
    with pytest.raises(StoreError, match="'xr9'.*not on the image's grid.*onto"):
        writer.write_case(0, off_grid)


@pytest.mark.parametrize("layout, make_case", [("stack", xray_case), ("volumes", ct_case)])
def test_a_store_without_annotations_gives_empty_tables(tmp_path, layout, make_case):
    """Issue 19: the README's ``store.boxes(), store.landmarks()`` on a store whose
    recipe has no such labels is an empty table, not a StoreError; its columns and
    dtypes are those of a store with rows (2D: no z, 3D: key_slice), so code written
    for the rows runs on none."""
    with_rows = open_store(build(tmp_path / "rows.zarr", layout, [make_case(0)]))
    bare = make_case(1)
    path = build(tmp_path / "none.zarr", layout, [Case(bare.case_id, bare.image)],
                 attrs={"labels": {}})
    store = open_store(path)
    assert store.attrs["annotations"] == {}
    for kind in ("boxes", "landmarks"):
        empty, full = getattr(store, kind)(), getattr(with_rows, kind)()
        assert len(empty) == 0 and len(full) > 0
        assert list(empty.columns) == list(full.columns), kind
        assert empty.dtypes.to_dict() == full.dtypes.to_dict(), kind
        assert empty[empty["case_id"] == bare.case_id].empty  # filters work on it


def test_declared_kind_without_rows_is_an_empty_table(tmp_path):
    """ChestX-ray14 declares boxes, yet most subsets have none: an empty table."""
    path = build(tmp_path / "e.zarr", "stack", [Case("a", xray_case(0).image)])
    assert len(open_store(path).boxes()) == 0
    assert list(open_store(path).boxes().columns)[:2] == ["case_index", "case_id"]
    assert "x_min" in open_store(path).boxes() and "x" in open_store(path).landmarks()
