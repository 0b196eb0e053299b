"""The bundled Intel/MobileODT cervical screening recipe builds its miniature download."""

from __future__ import annotations

from collections import Counter

import numpy as np
import xarray as xr

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store

from fixtures import cervical_screening


def test_cervical_screening_recipe_builds_its_fixture(tmp_path):
    made = cervical_screening.make(tmp_path)
    out = tmp_path / "cervix.zarr"
    recipe = load_recipe("cervical-screening").with_overrides({"harmonize": {"shape": [64, 64]}})
    report = build_store(recipe, tmp_path, out, progress=False)
    assert report.ok and len(report.built) == made["cases"]
    # The unlabelled test images are found by the glob and reported, not built.
    assert sorted(report.skipped) == ["test/0.jpg", "test/1.jpg"]
    assert validate_store(out) == []

    store = open_store(out)
    classes = store.attrs["labels"]["classification"]["cervix_type"]["classes"]
    labels = {case: classes[int(v)] for case, v in store.labels("cervix_type").items()}
    assert labels == made["labels"]
    assert Counter(labels.values()) == made["per_class"]
    # RGB kept; a portrait photo is scaled to fit and padded left and right.
    ds = xr.open_zarr(out)
    image = ds["image"].sel(case="train_Type_1_10").values.astype(float)
    assert image.shape == (3, 64, 64)
    assert np.allclose(image[:, :, :4], 0)  # padding beside the portrait picture
    centre = image[:, 32, 32]
    assert centre[0] > centre[2] > centre[1]  # pink: red > blue > green
