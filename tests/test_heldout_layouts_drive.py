"""DRIVE as today's grand-challenge download unpacks: the test set without its manual
tracings. https://drive.grand-challenge.org/ withholds test/1st_manual and test/2nd_manual
("20 test images (no annotations available)": the DRIVE Dataset class quoted by the
search corpus; the recipe's own comment says so too); training/ is as in DRIVE.zip
(tests/fixtures/drive.py). A stack store has one mask array, so such a download cannot
be built whole: it must be refused up front with the way out, not build whichever half
the writer happened to see first and fail the other half with a message about dtypes."""

from __future__ import annotations

import shutil

import pytest

from medimg_build.errors import RecipeError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

from fixtures import drive


def _grand_challenge(root):
    drive.make(root)
    for withheld in ("1st_manual", "2nd_manual"):
        shutil.rmtree(root / "test" / withheld)


def test_drive_without_test_tracings_is_refused_before_building(tmp_path):
    _grand_challenge(tmp_path)
    with pytest.raises(RecipeError) as refused:
        build_store(load_recipe("drive"), tmp_path, tmp_path / "drive.zarr", progress=False)
    message = str(refused.value)
    assert "2 of 5 cases have no mask" in message and "test/images/01_test.tif" in message
    assert "source.images" in message
    assert not (tmp_path / "drive.zarr").exists()


def test_drive_training_images_of_that_download_build(tmp_path):
    _grand_challenge(tmp_path)
    recipe = load_recipe("drive").with_overrides({"source": {"images": "training/images/*.tif"}})
    report = build_store(recipe, tmp_path, tmp_path / "drive.zarr", progress=False)
    assert report.ok and len(report.built) == 3
