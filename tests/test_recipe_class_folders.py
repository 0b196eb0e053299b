"""The bundled generic class-folders recipe builds a folder of class folders."""

from __future__ import annotations

from collections import Counter

import xarray as xr

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store

from fixtures import class_folders


def _recipe(classes):
    return load_recipe("class-folders").with_overrides({
        "harmonize": {"shape": [32, 32]},
        "labels": {"classification": [{"name": "class", "column": "class",
                                       "kind": "multiclass", "classes": classes}]}})


def test_class_folders_recipe_builds_its_fixture(tmp_path):
    made = class_folders.make(tmp_path)
    out = tmp_path / "classes.zarr"
    report = build_store(_recipe(made["classes"]), tmp_path, out, progress=False)
    assert report.ok and len(report.built) == made["cases"]
    assert sorted(report.skipped) == made["skipped"]
    assert validate_store(out) == []

    store = open_store(out)
    labels = {case: made["classes"][int(v)] for case, v in store.labels("class").items()}
    assert labels == made["labels"]
    assert Counter(labels.values()) == made["per_class"]
    # img_001.png in two class folders: two cases, each with its own folder's picture.
    ds = xr.open_zarr(out)
    benign = float(ds["image"].sel(case="benign_img_001").values[0, 16, 16])
    malignant = float(ds["image"].sel(case="malignant_img_001").values[0, 16, 16])
    assert benign < malignant


def test_a_class_folder_missing_from_the_vocabulary_fails_its_images_by_name(tmp_path):
    class_folders.make(tmp_path)
    report = build_store(_recipe(["benign", "malignant"]), tmp_path, tmp_path / "o.zarr",
                         progress=False)
    assert sorted(report.failed) == ["normal_n1", "normal_n2", "normal_n3"]
    assert all("'normal' is not a class" in error for error in report.failed.values())


def test_without_a_vocabulary_the_classes_are_the_folders_found(tmp_path):
    made = class_folders.make(tmp_path)
    recipe = load_recipe("class-folders").with_overrides({"harmonize": {"shape": [16, 16]}})
    out = tmp_path / "found.zarr"
    assert build_store(recipe, tmp_path, out, progress=False).ok
    assert validate_store(out) == []
    store = open_store(out)
    classes = store.attrs["labels"]["classification"]["class"]["classes"]
    assert classes == sorted(made["per_class"])
    labels = {case: classes[int(v)] for case, v in store.labels("class").items()}
    assert labels == made["labels"]
    assert store.attrs["recipe"]["content"]["labels"]["classification"][0]["classes"] == "from_data"
