"""The bundled deeplesion recipe builds DeepLesion's layout (16-bit PNG slice folders +
DL_info.csv) recreated from the real TotalSegmentator CT (tests/fixtures/deeplesion.py)."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.parsers import load
from medimg_build.store.validate import validate_store
from fixtures.deeplesion import make_deeplesion


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("deeplesion")
    made = make_deeplesion(tmp / "src", shared_data)
    out = tmp / "deeplesion.zarr"
    report = build_store(load_recipe("deeplesion"), made["root"], out, progress=False)
    return made, report, out


def test_key_slices_build_with_their_boxes_and_official_split(built):
    made, report, out = built
    assert report.ok and sorted(report.built) == sorted(made["cases"])
    assert validate_store(out) == []
    store = open_store(out)
    cases = store.cases.set_index("case_id")
    assert dict(cases["split"]) == made["splits"]
    boxes = store.boxes()
    assert len(boxes) == made["n_boxes"]
    assert boxes.groupby("case_id").size().to_dict() == made["cases"]
    assert set(boxes["label"]) == {"unknown", "liver", "lung"}
    reasons = list(report.skipped.values())
    assert sum(r.startswith("row without its slices") for r in reasons) == \
        made["rows_without_slices"]
    assert reasons.count("slice folder without a DL_info.csv row") == made["folders_without_rows"]
    # lesion_type: the known types of a slice's lesions; all untyped -> unknown (-1)
    types = store.labels("lesion_type")
    assert (types.loc["000001_01_01_109"] == -1).all()
    assert types.loc["000002_01_03_106"].to_dict() == {
        name: int(name == "liver") for name in types.columns}
    assert types.loc["000003_02_01_104"]["lung"] == 1 and types.loc["000003_02_01_104"].sum() == 1


def test_volume_is_the_slice_range_in_hu_and_box_on_the_key_slice(built):
    made, report, out = built
    store = open_store(out)
    case = "000002_01_03_106"
    raw = load("deeplesion", made["root"] / "Images_png" / "000002_01_03" / "106.png",
               {"first": 103, "last": 112, "spacing": [0.976562, 0.976562, 2.0]})
    assert raw.meta["intensity"]["unit"] == "HU" and raw.array.shape == (128, 128, 10)
    np.testing.assert_array_equal(raw.array, made["hu"][:, :, 2:12])
    row = store.cases.set_index("case_id").loc[case]
    assert row["original_shape"] == [128, 128, made["depth"][case]]
    # The key slice 106 of Slice_range 103..112 is k = 3 of the volume as read, and
    # stays on that slice's position (2 mm slices: S = 6 mm) after resampling.
    box = store.boxes().set_index("case_id").loc[case]
    assert (box["source_k_min"], box["source_k_max"]) == (2.5, 3.5)
    assert made["key_k"][case] == 3
    assert (box["S_min"] + box["S_max"]) / 2 == pytest.approx(3 * 2.0)
    assert (box["source_i_min"], box["source_j_max"]) == (39.5, 59.5)
