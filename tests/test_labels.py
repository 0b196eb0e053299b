"""Classification encoding, and deterministic patient-level splits."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_build.errors import LabelError
from medimg_build.labels.classification import MISSING, encode
from medimg_build.labels.splits import assign_split

FINDINGS = {"name": "finding", "column": "Finding Labels", "kind": "multilabel",
            "separator": "|", "none": ["No Finding"], "missing": [""],
            "classes": ["Atelectasis", "Cardiomegaly", "Effusion"]}
GRADE = {"name": "grade", "column": "level", "kind": "ordinal",
         "classes": ["none", "mild", "moderate", "severe", "proliferative"]}


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
