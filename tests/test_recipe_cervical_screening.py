"""The bundled Intel/MobileODT cervical screening recipe builds its miniature download in
the layout Kaggle's archives unpack to (train/train/Type_k, additional_Type_k_v2/Type_k,
test/test, test_stg2), with Kaggle's fixed_labels_v2.csv and removed_files.csv applied
and reported. Layout and table rows: see the citations in tests/fixtures/cervical_screening.py
(real tables: surajK610/CervicalCancerClassification@81fc32f7)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import xarray as xr

from medimg_build import open_store
from medimg_build.errors import RecipeError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store

from fixtures import cervical_screening


def _recipe():
    return load_recipe("cervical-screening").with_overrides({"harmonize": {"shape": [64, 64]}})


def _labels(store) -> dict[str, str]:
    classes = store.attrs["labels"]["classification"]["cervix_type"]["classes"]
    return {case: classes[int(v)] for case, v in store.labels("cervix_type").items()}


def test_cervical_screening_recipe_builds_the_kaggle_layout(tmp_path):
    made = cervical_screening.make(tmp_path / "kaggle")
    out = tmp_path / "cervix.zarr"
    report = build_store(_recipe(), tmp_path / "kaggle", out, progress=False)
    assert report.ok and len(report.built) == made["cases"] == 12
    no_image = "row for an image not in this download's additional {} folder"
    assert report.skipped == {
        **{path: "removed by Kaggle (removed_files.csv)" for path in made["removed"]},
        cervical_screening.EMPTY: "empty file (0 bytes)",
        **{f"test/test/{n}.jpg": "stage-1 test image without a label "
           "(solution_stg1_release.csv absent or silent)" for n in cervical_screening.TEST},
        **{f"test_stg2/{name}": "stage-2 test image: unlabelled"
           for name in cervical_screening.STAGE2},
        # Rows whose image is not in the download: 1004 nowhere; 102 and 1021 only in
        # train/train/Type_2, which the additional images' corrections do not touch.
        **{f"fixed_labels_v2.csv: {n}.jpg Type_2": "fixed_labels_v2.csv " + no_image.format(
            "Type_2") for n in (1004, 102, 1021)},
        "removed_files.csv: 1015.jpg Type_3": "removed_files.csv " + no_image.format("Type_3"),
    }
    # What the tables changed, counted in the report (console summary).
    assert report.notes == ["fixed_labels_v2.csv: 4 image(s) relabelled",
                            "removed_files.csv: 3 image(s) of the download removed"]
    assert "note: fixed_labels_v2.csv: 4 image(s) relabelled" in report.summary()
    assert validate_store(out) == []

    store = open_store(out)
    assert _labels(store) == made["labels"]
    assert Counter(_labels(store).values()) == made["per_class"]
    cases = store.cases.set_index("case_id")
    assert cases["type_source"].to_dict() == made["type_source"]
    assert Counter(cases["type_source"]) == {"folder": 8, "fixed_labels_v2.csv": 4}
    assert cases.loc["additional_Type_3_1002", "folder_type"] == "Type_3"
    assert set(cases["source_folder"]) == {"train", "additional"}
    # RGB kept; a portrait photo is scaled to fit and padded left and right.
    ds = xr.open_zarr(out)
    image = ds["image"].sel(case="train_Type_1_10").values.astype(float)
    assert image.shape == (3, 64, 64)
    assert np.allclose(image[:, :, :4], 0)  # padding beside the portrait picture
    centre = image[:, 32, 32]
    assert centre[0] > centre[2] > centre[1]  # pink: red > blue > green


def test_stage1_solution_labels_the_test_images(tmp_path):
    """With solution_stg1_release.csv the 512 stage-1 test images are labelled cases too;
    a flattened train/Type_k/ (some users move it up) is read alike."""
    made = cervical_screening.make(tmp_path / "kaggle", solution=True, flat_train=True)
    report = build_store(_recipe(), tmp_path / "kaggle", tmp_path / "c.zarr", progress=False)
    assert report.ok and len(report.built) == made["cases"] == 14
    store = open_store(tmp_path / "c.zarr")
    assert _labels(store) == made["labels"]
    assert "solution_stg1_release.csv: 2 stage-1 test image(s) labelled" in report.notes
    cases = store.cases.set_index("case_id")
    assert cases.loc["test_1", "type_source"] == "solution_stg1_release.csv"
    assert cases.loc["test_1", "source_folder"] == "test"


def test_a_correction_table_that_is_not_kaggles_is_refused(tmp_path):
    cervical_screening.make(tmp_path / "kaggle")
    (tmp_path / "kaggle" / "fixed_labels_v2.csv").write_text(
        "filename,old_label,new_label\n10.jpg,2,1\n")  # class numbers, not Type_k
    with pytest.raises(RecipeError, match=r"fixed_labels_v2.csv: line 2: '2' -> '1' is not"):
        build_store(_recipe(), tmp_path / "kaggle", tmp_path / "c.zarr", progress=False)
