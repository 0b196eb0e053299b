"""The bundled ChestX-ray14 recipe builds its miniature download: findings, boxes,
the official test list and patient-level splits -- from either release of the image
table (Data_Entry_2017_v2020.csv with Patient Sex, NIH's current download; or
Data_Entry_2017.csv with Patient Gender, the 2017 release Kaggle ships). Headers as
published: see the citations in tests/fixtures/nih_chestxray14.py."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.errors import RecipeError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store

from fixtures import nih_chestxray14

V2020, V2017 = "Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv"


def test_chestxray14_recipe_builds_its_fixture(shared_data, tmp_path):
    made = nih_chestxray14.make(tmp_path / "nih", shared_data)
    out = tmp_path / "nih.zarr"
    report = build_store(load_recipe("nih-chestxray14"), tmp_path / "nih", out, progress=False)
    assert report.ok and len(report.built) == made["cases"] and not report.skipped
    assert validate_store(out) == []

    store = open_store(out)
    findings = store.labels("finding")
    assert Counter({c: int(findings[c].sum()) for c in findings.columns if findings[c].sum()}) \
        == made["per_class"]
    cases = store.cases.set_index("case_id")
    for name in made["test"]:
        assert cases.loc[name.removesuffix(".png"), "split"] == "test"
    by_patient = cases.groupby(cases.index.map(lambda c: made["patients"][f"{c}.png"]))["split"]
    assert (by_patient.nunique() == 1).all()  # no patient in two splits

    # Each box covers its bright block in the 512x512 harmonized image.
    boxes = store.boxes().set_index("case_id")
    assert sorted(boxes.index) == sorted(n.removesuffix(".png") for n in made["boxes"])
    for name, (label, x, y, w, h) in made["boxes"].items():
        box = boxes.loc[name.removesuffix(".png")]
        assert box["label"] == label
        image = store.read_image(name.removesuffix(".png")).array
        inside = image[int(np.ceil(box.x_min)):int(box.x_max), int(np.ceil(box.y_min)):int(box.y_max)]
        assert inside.mean() > 0.9  # 250/255, the block's grey


@pytest.mark.parametrize("tables", [(V2020,), (V2017,), (V2020, V2017)],
                         ids=["v2020", "2017", "both"])
def test_either_release_fills_patient_sex(tables, tmp_path):
    """The 2020 table says Patient Sex where the 2017 one says Patient Gender: each
    fills patient_sex (it was silently empty for the 2020 table). With both present the
    2020 one is read, and the report says the 2017 one was not."""
    made = nih_chestxray14.make(tmp_path / "nih", tables=tables)
    recipe = load_recipe("nih-chestxray14").with_overrides({"harmonize": {"shape": [32, 32]}})
    report = build_store(recipe, tmp_path / "nih", tmp_path / "nih.zarr", progress=False)
    assert report.ok and len(report.built) == made["cases"]
    assert report.skipped == ({V2017: f"label table not read: {V2020} is preferred "
                                      "(source.table lists it first)"}
                              if len(tables) == 2 else {})
    cases = open_store(tmp_path / "nih.zarr").cases.set_index("case_id")
    assert cases["patient_sex"].to_dict() == made["sex"]
    assert set(cases["patient_age"]) == {"58"}


def test_a_column_the_table_lacks_is_an_error_naming_it(tmp_path):
    """A recipe column absent from the table stops the build with one line naming the
    table, the column (with the other names looked for) and the columns it has."""
    nih_chestxray14.make(tmp_path / "nih", tables=(V2020,))
    table = tmp_path / "nih" / V2020
    table.write_text(table.read_text().replace("Patient Sex,", "Sex,", 1))
    with pytest.raises(RecipeError) as error:
        build_store(load_recipe("nih-chestxray14"), tmp_path / "nih", tmp_path / "a.zarr",
                    progress=False)
    message = str(error.value)
    assert "\n" not in message and V2020 in message
    assert "missing column 'Patient Sex' or 'Patient Gender'" in message
    assert "'Sex'" in message and "'Unnamed: 11'" in message  # the columns it has

    # Without the alias, the 2017 name is just as missing from the 2020 table.
    recipe = load_recipe("nih-chestxray14").with_overrides({"source": {
        "column_aliases": None, "columns": {"Patient Sex": None, "Patient Gender": "sex"}}})
    nih_chestxray14.make(tmp_path / "nih2", tables=(V2020,))
    with pytest.raises(RecipeError, match="missing column 'Patient Gender' \\(named"):
        build_store(recipe, tmp_path / "nih2", tmp_path / "b.zarr", progress=False)


def test_a_label_column_the_table_lacks_fails_its_cases(tmp_path):
    """A classification column missing from the row fails the case by name; it was
    read as an empty cell, i.e. "unknown" (-1) for every case, without a word."""
    made = nih_chestxray14.make(tmp_path / "nih", tables=(V2017,))
    recipe = load_recipe("nih-chestxray14")
    finding = dict(recipe.data["labels"]["classification"][0], column="Findings")
    recipe = recipe.with_overrides({"labels": {"classification": [finding]},
                                    "harmonize": {"shape": [32, 32]}})
    report = build_store(recipe, tmp_path / "nih", tmp_path / "nih.zarr", progress=False,
                         allow_failures=True)
    assert not report.built and len(report.failed) == made["cases"]
    assert all("missing column 'Findings' (named by the recipe's labels.classification)" in why
               and V2017 in why for why in report.failed.values())
