"""The bundled adni recipe builds a miniature ADNI IDA download (tests/fixtures/adni.py):
NIfTI images joined to the collection CSV by their image ID, Group as diagnosis, the
visits of one subject in one split. The CSV's Image Data ID comes in both forms seen in
real IDA exports, ``"I45108"`` and ``"45108"`` (sources in the fixture's docstring)."""

from __future__ import annotations

import csv
import shutil

import pytest

from fixtures.adni import make_adni
from medimg_build import open_store
from medimg_build.cli import _overrides
from medimg_build.errors import RecipeError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.sources import list_sources
from medimg_build.store.validate import validate_store

CLASSES = ["CN", "SMC", "EMCI", "MCI", "LMCI", "AD"]
TABLE = "ADNI1_Complete_1Yr_1.5T_10_13_2019.csv"


@pytest.mark.parametrize("image_ids", ["prefixed", "digits"])
def test_adni_builds_images_with_their_collection_diagnosis(tmp_path, image_ids):
    made = make_adni(tmp_path / "src", image_ids)
    out = tmp_path / "adni.zarr"
    report = build_store(load_recipe("adni"), tmp_path / "src", out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert list(report.skipped.values()) == ["row without an image file"] * \
        made["not_downloaded"]
    assert validate_store(out) == []

    store = open_store(out)
    cases = store.cases.set_index("case_id")
    assert sorted(cases.index) == made["cases"]
    diagnosis = store.labels("diagnosis")
    for case_id, group in made["group"].items():
        assert diagnosis[case_id] == CLASSES.index(group)
    assert cases["patient_id"].nunique() == len(made["patients"])
    # Subject 002_S_0295's screening and month-12 scans: one patient, one split.
    pair = cases.loc[["I45108", "I64025"]]
    assert pair["patient_id"].nunique() == 1 and pair["split"].nunique() == 1
    assert set(pair["visit"]) == {"sc", "m12"}
    # The sagittal 1.25 x 0.94 x 0.94 mm volumes come out RAS at 1 mm.
    image = store.read_image("I45108")
    assert image.orientation == "RAS" and image.spacing == (1.0, 1.0, 1.0)


def test_bare_digit_ids_still_report_what_does_not_join(tmp_path):
    """With the table's ids as bare digits, an image no row names and a row without its
    image are still reported, each under its own name; a row repeating an image's id in
    the other spelling, and a row without an id, are reported, not joined."""
    made = make_adni(tmp_path / "src", "digits")
    source = tmp_path / "src"
    stray = next(source.glob("ADNI/023_S_0030/**/*.nii"))
    shutil.copy(stray, stray.with_name(stray.name.replace("_I79122.nii", "_I99999.nii")))
    with open(source / TABLE, "a", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(["I45108", "002_S_0295", "CN", "M", "85", "sc", "MRI", "MPR",
                         "Processed", "4/18/2006", "NiFTI", ""])
        writer.writerow(["", "002_S_0295", "CN", "M", "85", "sc", "MRI", "MPR",
                         "Processed", "4/18/2006", "NiFTI", ""])
    listing = list_sources(load_recipe("adni"), source)
    assert sorted(c.case_id for c in listing.cases) == made["cases"]
    skipped = listing.skipped
    assert [k for k, v in skipped.items() if v == f"image without a row in {TABLE}"] == \
        [stray.with_name(stray.name.replace("_I79122", "_I99999")).relative_to(source)
         .as_posix()]
    assert skipped[f"{TABLE}: 88888"] == "row without an image file"
    assert skipped[f"{TABLE}: I45108 (row 7)"] == \
        "second row for Image Data ID 'I45108' (the first is '45108')"
    assert skipped[f"{TABLE}: row 8"] == "row without a value in Image Data ID"
    assert len(skipped) == 4


def test_adni3_group_patient_is_an_unknown_diagnosis_not_a_failed_case(tmp_path):
    """Red-team: ADNI3 collection exports give Group "Patient" to participants without an
    enrolment group (real row "957990","116_S_6119","Patient","F","67","1","fMRI",...,
    find_string id 15741718581, cited in tests/fixtures/adni.py). Every such case failed
    ("'Patient' is not a class"); it builds with the diagnosis unknown (-1)."""
    made = make_adni(tmp_path / "src", "digits")
    table = tmp_path / "src" / TABLE
    with open(table, newline="") as handle:
        rows = list(csv.reader(handle))
    rows[1][2] = "Patient"
    with open(table, "w", newline="") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(rows)
    out = tmp_path / "adni.zarr"
    report = build_store(load_recipe("adni"), tmp_path / "src", out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    diagnosis = open_store(out).labels("diagnosis")
    assert diagnosis["I" + rows[1][0]] == -1
    assert all(diagnosis[c] == CLASSES.index(g) for c, g in made["group"].items()
               if c != "I" + rows[1][0])


def test_a_collection_csv_of_another_name_is_named_in_the_refusal(tmp_path):
    """Red-team: an IDA collection CSV is named after the user's collection and its date
    (ADNI_tots_fMRI_tots_2_13_2018.csv, PPMI_3T_sdMRI_3_07_2022.csv: find_string ids
    15741718581, 3576931116), never the recipe's example name. The refusal's hint said
    "check the recipe's source.table", a key the adni recipe does not have; it now gives
    the --set that names the CSV found, which then builds."""
    made = make_adni(tmp_path / "src")
    (tmp_path / "src" / TABLE).rename(tmp_path / "src" / "ADNI3_T1_2_01_2024.csv")
    with pytest.raises(RecipeError) as refused:
        list_sources(load_recipe("adni"), tmp_path / "src")
    assert refused.value.hint == "name it: --set source.options.table=ADNI3_T1_2_01_2024.csv"
    override = _overrides([refused.value.hint.split("--set ")[1]], None)
    listing = list_sources(load_recipe("adni").with_overrides(override), tmp_path / "src")
    assert sorted(c.case_id for c in listing.cases) == made["cases"]
