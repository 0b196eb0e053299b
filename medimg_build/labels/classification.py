"""Classification labels from a table cell into the store's integer encoding.

binary / multiclass / ordinal -> one int (the class index); multilabel -> an int8
vector over the classes. -1 always means missing/unknown and is never a class."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import LabelError
from ..recipe.sections import Classification

MISSING = -1


def encode(spec: Classification, raw: Any, where: str) -> int | np.ndarray:
    """Encode one raw cell of ``spec.column``; ``where`` names the file and row."""
    text = "" if raw is None else str(raw).strip()
    classes = spec.classes
    if text in spec.missing:
        return np.full(len(classes), MISSING, np.int8) if spec.kind == "multilabel" else MISSING
    if spec.kind == "multilabel":
        vector = np.zeros(len(classes), np.int8)
        if text in spec.none:
            return vector
        for name in (t.strip() for t in text.split(spec.separator)):
            vector[_index(spec, name, where)] = 1
        return vector
    if text in spec.none:
        return 0
    return _index(spec, text, where)


def vocabulary(spec: Classification) -> dict[str, Any]:
    """What the store records about a classification label. (Not "missing_value":
    xarray would read that CF attribute as a mask and turn the labels into floats.)"""
    return {"kind": spec.kind, "classes": list(spec.classes),
            "column": spec.column, "unknown_value": MISSING}


def _index(spec: Classification, name: str, where: str) -> int:
    classes = spec.classes
    if name in classes:
        return classes.index(name)
    if name.lstrip("-").isdigit() and 0 <= int(name) < len(classes):
        return int(name)  # sources that store class indices (e.g. DR grades 0-4)
    raise LabelError(where, f"{spec.name}: {name!r} is not a class of the vocabulary "
                     f"{list(classes)}", hint="add it to the recipe's classes or to 'missing'")


def strata(spec: Classification, values: list[int | np.ndarray]) -> list[int]:
    """One stratum per case for stratified splits: the class for single-label kinds;
    for multi-label, the case's rarest positive class in this dataset (rare findings
    are what a split must not lose), -2 when none is present and -1 when unknown."""
    if spec.kind != "multilabel":
        return [int(v) for v in values]
    stacked = np.array(values, dtype=np.int64).reshape(len(values), len(spec.classes))
    frequency = np.where(stacked == 1, 1, 0).sum(axis=0)
    result = []
    for row in stacked:
        if (row == MISSING).all():
            result.append(MISSING)
        elif not (row == 1).any():
            result.append(-2)
        else:
            positives = np.flatnonzero(row == 1)
            result.append(int(positives[np.argmin(frequency[positives])]))
    return result
