"""The bundled Kaggle diabetic-retinopathy recipe builds its miniature download
(trainLabels.csv header and rows, train/<id>_<eye>.jpeg: verified against the public copy
cited in tests/fixtures/diabetic_retinopathy.py)."""

from __future__ import annotations

from collections import Counter

import xarray as xr

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store

from fixtures import diabetic_retinopathy


def test_diabetic_retinopathy_recipe_builds_its_fixture(tmp_path):
    source = tmp_path / "kaggle-dr"
    made = diabetic_retinopathy.make(source)
    recipe = load_recipe("diabetic-retinopathy")
    out = tmp_path / "dr.zarr"
    report = build_store(recipe, source, out, progress=False)
    assert report.ok and len(report.built) == made["cases"]
    assert validate_store(out) == []

    store = open_store(out)
    labels = store.labels("grade")
    classes = store.attrs["labels"]["classification"]["grade"]["classes"]
    assert classes == diabetic_retinopathy.GRADES
    assert store.attrs["labels"]["classification"]["grade"]["kind"] == "ordinal"
    assert {case: int(v) for case, v in labels.items()} == made["grades"]  # "10_left" -> 10_left.jpeg
    assert Counter(classes[int(v)] for v in labels.tolist()) == made["per_class"]
    # Colour fundus photographs stay RGB, scaled to [0, 1]; the test/ images are not cases.
    ds = xr.open_zarr(out)
    assert ds["image"].shape == (made["cases"], 3, 512, 512)
    centre = ds["image"].sel(case="16_left").values[:, 256, 256].astype(float)
    assert centre[0] > centre[1] > centre[2] > 0.1  # the orange disc: red > green > blue
    assert not any(case.startswith("1_") for case in store.cases["case_id"])
    # Both eyes of a subject share a pseudonymous patient and so a split.
    cases = store.cases.set_index("case_id")
    for left in [c for c in cases.index if c.endswith("_left")]:
        right = left.replace("_left", "_right")
        if right in cases.index:
            assert cases.loc[left, "patient_id"] == cases.loc[right, "patient_id"]
            assert cases.loc[left, "split"] == cases.loc[right, "split"]


def test_diabetic_retinopathy_macos_forks_are_reported_as_system_files(tmp_path):
    """Red-team (issue 16 item 11), on the real Kaggle layout (train/<id>_<eye>.jpeg and
    trainLabels.csv, see tests/fixtures/diabetic_retinopathy.py): a macOS ``._10_left.jpeg``
    fork, which the ``train/*.jpeg`` glob finds, is skipped as a system file, not reported
    as an image that trainLabels.csv forgot."""
    source = tmp_path / "kaggle-dr"
    made = diabetic_retinopathy.make(source)
    first = sorted(made["grades"])[0]
    (source / "train" / f"._{first}.jpeg").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X")
    report = build_store(load_recipe("diabetic-retinopathy"), source, tmp_path / "dr.zarr",
                         progress=False)
    assert report.ok and len(report.built) == made["cases"]
    assert ".DS_Store, ._*" in report.skipped[f"train/._{first}.jpeg"]
