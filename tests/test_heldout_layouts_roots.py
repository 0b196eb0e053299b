"""Real downloads passed from one folder too high: the Kaggle cervical competition folder
kept inside the folder the user downloads into (kaggle competitions download then unzip
gives intel-mobileodt-cervical-cancer-screening/train/train/Type_1/...; layout cited in
tests/fixtures/cervical_screening.py), and DRIVE.zip's own DRIVE/ folder
(DRIVE/training/images/21_training.tif, tests/fixtures/drive.py). Nothing is built, and
the one-line error must say why the files found are not cases -- not only how many were
skipped."""

from __future__ import annotations

import pytest

from medimg_build.errors import RecipeError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

from fixtures import cervical_screening, drive


def test_cervical_download_one_level_down_says_why_nothing_is_a_case(tmp_path):
    cervical_screening.make(tmp_path / "intel-mobileodt-cervical-cancer-screening")
    with pytest.raises(RecipeError, match=r"files skipped; e\.g\. intel-mobileodt-cervical-"
                       r"cancer-screening/.*\.jpg: not in the Kaggle layout"):
        build_store(load_recipe("cervical-screening"), tmp_path, tmp_path / "o.zarr",
                    progress=False)


def test_drive_folder_one_level_down_is_refused_in_one_line(tmp_path):
    drive.make(tmp_path / "DRIVE")
    with pytest.raises(RecipeError, match=r"no cases found with image_folder pattern"):
        build_store(load_recipe("drive"), tmp_path, tmp_path / "o.zarr", progress=False)
