"""The bundled DRIVE recipe builds its miniature download, keeping both annotations
whole: the field of view and the first observer's vessels, including the vessel pixels
real tracings put outside the FOV mask (counts from mlscorecheck; see the fixture's
docstring for the layout and the counts' sources)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from medimg_build import open_store
from medimg_build.errors import RecipeError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store

from fixtures import drive


def test_drive_recipe_builds_its_fixture(tmp_path):
    made = drive.make(tmp_path)
    # The fixture is real-DRIVE-like: vessels cross the FOV border in most images.
    assert made["outside_fov"] == {"21_training": 8, "22_training": 9, "34_training": 0,
                                   "01_test": 28, "02_test": 67}
    out = tmp_path / "drive.zarr"
    report = build_store(load_recipe("drive"), tmp_path, out, progress=False)
    assert report.ok and len(report.built) == made["cases"]
    assert validate_store(out) == []

    store = open_store(out)
    cases = store.cases.set_index("case_id")
    assert sorted(cases.index) == sorted(made["made"])
    ds = xr.open_zarr(out)
    assert ds["image"].shape == (made["cases"], 3, 584, 565)
    assert ds["mask"].shape == (made["cases"], 584, 565)
    for stem, truth in made["made"].items():
        assert cases.loc[stem, "official_split"] == truth["set"]
        assert cases.loc[stem, "split"] == {"training": "train", "test": "test"}[truth["set"]]
        mask = ds["mask"].sel(case=stem).values  # (y, x) = rows, columns of the GIF
        # Lossless whatever the encoding: each value stands for one (FOV, vessel) pair.
        # (A vessel value drawn over the FOV stood for vessels both in and outside it.)
        for value in np.unique(mask):
            pairs = set(zip(truth["fov"][mask == value], truth["vessels"][mask == value]))
            assert len(pairs) == 1, f"{stem}: mask value {value} stands for {pairs}"
        # Both annotations come back whole, bit by bit: FOV = bit 1, vessels = bit 2.
        np.testing.assert_array_equal(mask & 1 != 0, truth["fov"])
        np.testing.assert_array_equal(mask & 2 != 0, truth["vessels"])
        assert int((mask == 2).sum()) == made["outside_fov"][stem]
        assert int((mask >= 2).sum()) == made["vessel_pixels"][stem]
        # The map lands on the vessel pixels (dark ones of the image) and the FOV.
        red = ds["image"].sel(case=stem).values[0].astype(float)
        assert red[truth["vessels"]].max() < red[truth["fov"] & ~truth["vessels"]].min()
    assert store.attrs["labels"]["segmentation"]["classes"] == {
        "0": "outside_fov", "1": "fov", "2": "vessel_outside_fov", "3": "vessel"}


def test_flags_must_be_distinct_powers_of_two(tmp_path):
    """1 + 2 == 3: layers numbered 1 and 3 could not be told apart where they overlap."""
    drive.make(tmp_path)
    recipe = load_recipe("drive")
    masks = recipe.data["source"]["masks"]
    recipe = recipe.with_overrides({"source": {"masks": {"2": None, "3": masks["2"]}}})
    with pytest.raises(RecipeError, match=r"mask layer values \[1, 3\] are not distinct "
                                          "powers of two"):
        build_store(recipe, tmp_path, tmp_path / "drive.zarr", progress=False)
