"""The bundled deeplesion recipe builds DeepLesion's layout (16-bit PNG slice folders +
DL_info.csv) recreated from the real TotalSegmentator CT (tests/fixtures/deeplesion.py).
The table's format and the direction of its slice numbers (towards the feet) are those
of the real DL_info.csv (public copy: GitHub donghwanseo/joint_conference, DL_info.csv,
commit e83fd969542e0d6fd43626ce012733e3000ba3ed; see the fixture)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

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
    assert (types.loc["000001_01_01_104"] == -1).all()
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
    np.testing.assert_array_equal(raw.array, made["slices"]["000002_01_03"][:, :, 2:12])
    row = store.cases.set_index("case_id").loc[case]
    assert row["original_shape"] == [128, 128, made["depth"][case]]
    # The key slice 106 of Slice_range 103..112 is k = 3 of the volume as read, and
    # stays on that slice's position after resampling: slice n of a series is at
    # S = -(n - 1) x 2 mm (slice numbers run towards the feet).
    box = store.boxes().set_index("case_id").loc[case]
    assert (box["source_k_min"], box["source_k_max"]) == (2.5, 3.5)
    assert made["key_k"][case] == 3
    assert (box["S_min"] + box["S_max"]) / 2 == pytest.approx(-105 * 2.0)
    assert (box["source_i_min"], box["source_j_max"]) == (39.5, 59.5)


def test_slice_numbers_run_towards_the_feet(built):
    """DL_info.csv's z grows with the slice number and towards the feet: a higher slice
    number is stored lower (smaller S), and the volume is the CT the right way up."""
    made, report, out = built
    store = open_store(out)
    boxes = store.boxes().set_index("case_id")
    table = pd.read_csv(made["root"] / "DL_info.csv").set_index("File_name")
    z = {name.removesuffix(".png"): float(v.split(",")[2])
         for name, v in table["Normalized_lesion_location"].items()}
    above, below = "000001_01_01_104", "000001_01_01_109"  # one series, one Slice_range
    assert z[above] < z[below]
    centre = (boxes["S_min"] + boxes["S_max"]) / 2
    assert centre[above].max() - centre[below].max() == pytest.approx(5 * 2.0)
    # Stored RAS: the z index grows towards the head, so slice 104 has the larger one.
    assert boxes.loc[above, "key_slice"] > boxes.loc[below, "key_slice"].max()
    # The stored volume is the real CT head up (it was read head up, then numbered
    # head first in the fixture): the slice-by-slice median follows the CT's.
    image = store.read_image(above)
    stored = np.median(image.array.reshape(-1, image.array.shape[2]), axis=0)
    original = np.median(made["hu"].reshape(-1, made["hu"].shape[2]), axis=0)
    assert len(stored) == len(original)
    assert np.corrcoef(stored, original)[0, 1] > 0.9


def test_each_lesion_is_found_on_its_stored_key_slice(built):
    """The lesion drawn on a key slice is, in the store, on the box's key_slice and
    inside its rows and columns: boxes and key slices stay on their anatomy."""
    made, report, out = built
    store = open_store(out)
    for _, box in store.boxes().iterrows():
        array = store.read_image(box["case_id"]).array
        inner = array[int(np.ceil(box["x_min"])) + 6:int(box["x_max"]) - 5,
                      int(np.ceil(box["y_min"])) + 6:int(box["y_max"]) - 5, :]
        by_slice = inner.reshape(-1, inner.shape[2]).mean(axis=0)
        # Resampled (5 mm slices to 2 mm: the lesion spreads over 2-3), the brightest
        # slice lies within the box's slab, and the key slice holds the lesion.
        peak, floor = by_slice.max(), np.median(by_slice)
        assert box["z_min"] <= int(np.argmax(by_slice)) <= box["z_max"], box["case_id"]
        assert by_slice[box["key_slice"]] > (peak + floor) / 2, box["case_id"]



def test_boxes_left_out_by_the_recipe_are_not_kept(built, tmp_path):
    """The parser gives every case its DL_info.csv boxes; a recipe without ``labels.boxes``
    (``--set labels.boxes=null``) builds the volumes without them, rather than failing
    every case on boxes it did not ask for."""
    made, report, _ = built
    recipe = load_recipe("deeplesion").with_overrides({"labels": {"boxes": None}})
    out = tmp_path / "no_boxes.zarr"
    without = build_store(recipe, made["root"], out, progress=False)
    assert without.failed == {} and without.built == report.built
    assert "boxes" not in zarr.open_group(out, mode="r")
