"""Classification encoding, and deterministic patient-level splits."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_build.errors import LabelError
from medimg_build.labels.classification import MISSING, encode
from medimg_build.labels.splits import assign_split
from medimg_build.recipe.sections import Classification, Split, parse

FINDINGS = parse(Classification, {
    "name": "finding", "column": "Finding Labels", "kind": "multilabel", "separator": "|",
    "none": ["No Finding"], "missing": [""],
    "classes": ["Atelectasis", "Cardiomegaly", "Effusion"]})
GRADE = parse(Classification, {"name": "grade", "column": "level", "kind": "ordinal",
                               "classes": ["none", "mild", "moderate", "severe", "proliferative"]})


def test_multilabel_none_missing_and_classes():
    assert encode(FINDINGS, "Cardiomegaly|Effusion", "t").tolist() == [0, 1, 1]
    assert encode(FINDINGS, "No Finding", "t").tolist() == [0, 0, 0]
    assert encode(FINDINGS, "", "t").tolist() == [MISSING] * 3
    assert encode(FINDINGS, " Atelectasis ", "t").dtype == np.int8


def test_ordinal_from_names_or_indices():
    assert encode(GRADE, "moderate", "t") == 2
    assert encode(GRADE, "4", "t") == 4
    assert encode(GRADE, "", "t") == MISSING


def test_unknown_class_names_the_row():
    with pytest.raises(LabelError, match=r"labels.csv row 7: finding: 'Hernia' is not a class"):
        encode(FINDINGS, "Hernia", "labels.csv row 7")


def test_split_is_deterministic_and_by_patient():
    fractions = {"train": 0.7, "val": 0.1, "test": 0.2}
    # Many images per patient: every image of a patient gets the patient's split.
    images = [(f"p{p:03d}", i) for p in range(300) for i in range(5)]
    split_of = {}
    for patient, _ in images:
        split = assign_split(patient, 0, fractions)
        assert split_of.setdefault(patient, split) == split
    counts = {s: list(split_of.values()).count(s) for s in fractions}
    assert 0.6 < counts["train"] / 300 < 0.8 and counts["val"] > 10 and counts["test"] > 30
    other_seed = {p: assign_split(p, 1, fractions) for p in split_of}
    assert other_seed != split_of


# -- split plans: official lists, stratification ---------------------------------------

from medimg_build.errors import RecipeError  # noqa: E402
from medimg_build.labels.classification import strata  # noqa: E402
from medimg_build.labels.splits import plan_splits  # noqa: E402


def _images(n_patients=400, per_patient=4, seed=0):
    """(case, patient, file, stratum) for patients with several images each; a rare
    class (1) held by 5% of patients."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        stratum = 1 if rng.random() < 0.05 else 0
        for i in range(per_patient):
            rows.append((f"{p:05d}_{i:03d}", f"patient{p}", f"{p:05d}_{i:03d}.png", stratum))
    return rows


def test_stratified_plan_keeps_patients_whole_and_classes_balanced(tmp_path):
    rows = _images()
    spec = {"seed": 3, "fractions": {"train": 0.7, "val": 0.1, "test": 0.2}, "stratify": "x"}
    plan = plan_splits(parse(Split, spec), rows, tmp_path)
    split_of = {patient: plan.split_of(patient) for _, patient, _, _ in rows}
    rare = [p for _, p, _, s in rows if s == 1]
    rare_patients = sorted(set(rare))
    counts = {s: sum(split_of[p] == s for p in rare_patients) for s in spec["fractions"]}
    # Each split gets its share of the rare class, to within one patient.
    for name, fraction in spec["fractions"].items():
        assert abs(counts[name] - fraction * len(rare_patients)) <= 1, counts
    assert plan_splits(parse(Split, spec), rows, tmp_path).by_patient == plan.by_patient


def test_official_lists_win_and_pull_the_whole_patient(tmp_path):
    rows = _images(n_patients=50)
    (tmp_path / "test_list.txt").write_text("00003_000.png\n00007_002.png\n")
    spec = {"seed": 0, "fractions": {"train": 0.8, "val": 0.2}, "lists": {"test": "test_list.txt"}}
    plan = plan_splits(parse(Split, spec), rows, tmp_path)
    assert plan.split_of("patient3") == plan.split_of("patient7") == "test"
    assert {plan.split_of(f"patient{p}") for p in range(50) if p not in (3, 7)} <= {"train", "val"}


def test_lists_that_split_a_patient_are_refused(tmp_path):
    rows = _images(n_patients=10)
    (tmp_path / "a.txt").write_text("00001_000.png\n")
    (tmp_path / "b.txt").write_text("00001_001.png\n")
    with pytest.raises(RecipeError, match="patient1 has images in both"):
        plan_splits(parse(Split, {"lists": {"train": "a.txt", "test": "b.txt"}}), rows, tmp_path)


def test_multilabel_stratum_is_the_rarest_positive_class():
    spec = parse(Classification, {"name": "x", "column": "x", "kind": "multilabel",
                                  "classes": ["common", "rare"]})
    values = [np.array([1, 0]), np.array([1, 1]), np.array([1, 0]), np.array([0, 0]),
              np.array([-1, -1])]
    assert strata(spec, values) == [0, 1, 0, -2, -1]
