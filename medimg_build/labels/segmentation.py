"""Segmentation classes: the label values a recipe declares, or -- with ``classes:
from_data`` -- the values the source's masks hold, found while the cases are built.

With ``from_data`` no value is refused. Each case's row records the values of its
harmonized mask (``MASK_VALUES``: also what a user filters on, "cases with label 3");
the store's ``labels.segmentation.classes`` is their union, written when the store is
closed, so it is the same whatever the order workers finish in, and a resumed build
finds the values of the cases it recovered in their journaled rows."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LabelError, shown_items
from ..recipe.sections import Segmentation

FROM_DATA = "from_data"
MASK_VALUES = "mask_values"  # case table column: the label values of the case's mask
BACKGROUND = {"0": "background"}


LARGEST_LABEL = np.iinfo(np.uint16).max  # masks are stored as uint8 or uint16


def label_values(array: np.ndarray, where: Path | None = None) -> list[int]:
    """The distinct values of a label map, ascending (counted, not sorted, for the
    usual 8- and 16-bit masks). Values a stored label map cannot hold are refused: below
    0, above 65535, or between two whole numbers, the uint8/uint16 cast would make them
    another class (-1 as 255, 1.5 as 1), silently."""
    if array.dtype.kind == "u" and array.dtype.itemsize <= 2:
        return np.flatnonzero(np.bincount(array.ravel())).tolist()
    distinct = np.unique(array)
    if distinct.size:
        _check_storable(distinct, where)
    return [int(v) for v in distinct]


def _check_storable(distinct: np.ndarray, where: Path | None) -> None:
    """``distinct``: a mask's values, ascending (``label_values``)."""
    low, high = distinct[0], distinct[-1]
    fractional = distinct.dtype.kind == "f" and not np.array_equal(distinct, np.rint(distinct))
    if low >= 0 and high <= LARGEST_LABEL and not fractional:
        return
    problem = ("values that are not whole numbers" if fractional else
               f"values from {low:g} to {high:g}")
    raise LabelError(where, f"mask holds {problem}, which a label map (classes 0.."
                     f"{LARGEST_LABEL}) cannot store as they are",
                     hint="map each such value to a label with labels.segmentation.map "
                     "(e.g. {'-1': 0}), or check that this file is a label map")


def label_dtype(values: list[int], spec: Segmentation | None) -> np.dtype:
    """uint8, or uint16 where a label is above 255: by the recipe's declared classes
    when it has them, so that every mask of a stack (one array) shares the dtype, else
    by the values this mask holds (a volumes case has its own arrays)."""
    classes = spec.classes if spec is not None else FROM_DATA
    # Declared, they hold every value of the mask (check_declared refused others).
    largest = max(values, default=0) if classes == FROM_DATA else \
        max((int(v) for v in classes), default=0)
    return np.dtype(np.uint8 if largest < 256 else np.uint16)


def declared_classes(classes: dict[str, str] | str) -> dict[str, str] | str:
    """A recipe's segmentation classes with 0 as background unless it names 0 itself:
    0 is what a mask holds where it marks nothing (nnU-Net: "The background must be 0"),
    so ``--set labels.segmentation.classes.1=liver`` over ``from_data`` means
    {0: background, 1: liver}, not a vocabulary refusing every mask's zeros."""
    if classes == FROM_DATA:
        return classes
    return {**BACKGROUND, **classes}


def check_declared(values: list[int], spec: Segmentation | None, where: Path | None) -> None:
    """Refuse mask values the recipe's ``labels.segmentation.classes`` does not list
    (any value is a class with ``from_data``; without the section, only background)."""
    classes = declared_classes(spec.classes if spec is not None else BACKGROUND)
    if classes == FROM_DATA:
        return
    known = {int(v) for v in classes}
    unknown = [v for v in values if v not in known]
    if unknown:
        raise LabelError(where, f"mask values [{shown_items(unknown)}] are not in the "
                         f"segmentation classes {sorted(known)}",
                         hint="list every label value in the recipe's "
                         "labels.segmentation.classes, or set it to from_data")


def classes_found(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The store's classes for ``from_data``: 0 as background (what a mask is where it
    marks nothing) and every value the built cases' masks hold, named ``label_<value>``
    (a source without names for its values has nothing better to say)."""
    values = {int(v) for row in rows for v in (row.get(MASK_VALUES) or [])}
    return {**BACKGROUND, **{str(v): f"label_{v}" for v in sorted(values - {0})}}


def with_found_classes(labels: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A store's ``labels`` attribute with ``from_data`` segmentation classes replaced
    by ``classes_found`` (other labels as they are)."""
    segmentation = labels.get("segmentation")
    if not isinstance(segmentation, dict) or segmentation.get("classes") != FROM_DATA:
        return labels
    return {**labels, "segmentation": {**segmentation, "classes": classes_found(rows)}}
