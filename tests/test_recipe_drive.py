"""The bundled DRIVE recipe builds its miniature download: vessels on vessel pixels,
inside the field of view."""

from __future__ import annotations

import numpy as np
import xarray as xr

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store

from fixtures import drive


def test_drive_recipe_builds_its_fixture(tmp_path):
    made = drive.make(tmp_path)
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
        assert set(np.unique(mask)) == {0, 1, 2}  # outside FOV, retina, vessel
        assert int((mask == 2).sum()) == made["vessel_pixels"][stem]
        # The map lands on the vessel pixels (dark ones of the image) and the FOV.
        np.testing.assert_array_equal(mask == 2, truth["vessels"])
        np.testing.assert_array_equal(mask > 0, truth["fov"] | truth["vessels"])
        red = ds["image"].sel(case=stem).values[0].astype(float)
        assert red[truth["vessels"]].max() < red[truth["fov"] & ~truth["vessels"]].min()
