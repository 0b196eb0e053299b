"""Boxes and landmarks of a recipe: rows of the source's annotation tables turned into
``labels.boxes_landmarks`` values on the image as read, then moved onto the harmonized
grid through the world position (see labels/boxes_landmarks.py)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LabelError
from ..image import MedicalImage
from ..labels.boxes_landmarks import Boxes, Landmarks
from .paths import inside
from .label_tables import read_label_table
from .sections import BoxLabels, Labels, LandmarkLabels
from .sources import CaseSource


def annotation_rows(labels: Labels, root: Path) -> dict[str, dict[str, list[dict]]]:
    """kind -> image name (or case id) -> its rows, for the tables a recipe names."""
    found: dict[str, dict[str, list[dict]]] = {}
    for kind, spec in labels.annotations().items():
        if not spec.table:  # no table: the source's parser gives the rows
            continue
        path = inside(root, spec.table, f"labels.{kind}.table")
        table = read_label_table(path)
        wanted = [spec.image_column, spec.label_column, *spec.columns]
        wanted += [spec.slice_column] if spec.slice_column else []
        missing = [c for c in wanted if c not in table.columns]
        if missing:
            raise LabelError(path, f"missing column(s) {missing}; it has {list(table.columns)}",
                             hint=f"fix the recipe's labels.{kind} column names")
        rows: dict[str, list[dict]] = defaultdict(list)
        for row in table.to_dict(orient="records"):
            rows[str(row[spec.image_column]).strip()].append(row)
        found[kind] = dict(rows)
    return found


def with_annotations(cases: list[CaseSource], labels: Labels,
                     root: Path) -> list[CaseSource]:
    """``cases`` with their rows of the recipe's box and landmark tables, matched by
    image file name or case id. Rows a parser already gave a case (``CaseSource.
    annotations``: DeepLesion's boxes on its stacked volume, LIDC's nodules) are kept."""
    tables = annotation_rows(labels, root)
    if not tables:
        return cases
    return [dataclasses.replace(case, annotations={**{
        kind: rows.get(case.image_path.name) or rows.get(case.case_id) or []
        for kind, rows in tables.items()}, **case.annotations}) for case in cases]


def vocabulary(labels: Labels) -> dict[str, Any]:
    """The store's vocabulary entries of the annotation kinds the recipe names."""
    return {kind: {"classes": list(spec.classes)}
            for kind, spec in labels.annotations().items() if spec.classes}


def case_annotations(labels: Labels, rows: dict[str, list[dict]], raw: MedicalImage,
                     image: MedicalImage, where: str) -> dict[str, Boxes | Landmarks]:
    """The case's boxes and landmarks on the harmonized ``image`` (None when none).
    Rows of a kind the recipe does not declare are left out: a parser gives DeepLesion's
    boxes whatever the recipe says, and ``--set labels.boxes=null`` means none kept."""
    result: dict[str, Any] = {}
    if rows.get("boxes") and labels.boxes is not None:
        result["boxes"] = _boxes(labels.boxes, rows["boxes"], raw, where).onto(image, where)
    if rows.get("landmarks") and labels.landmarks is not None:
        spec = labels.landmarks
        points = _numbers(rows["landmarks"], spec.columns, where)
        result["landmarks"] = Landmarks.from_pixels(
            raw, _names(rows["landmarks"], spec), points,
            convention=spec.convention, where=where).onto(image, where)
    return result


def _boxes(spec: BoxLabels, rows: list[dict], raw: MedicalImage, where: str) -> Boxes:
    values = _numbers(rows, spec.columns, where)
    names = _names(rows, spec)
    convention = spec.convention
    kind = spec.format
    if kind == "xywh":
        return Boxes.from_xywh(raw, names, values, where=where)
    if kind == "corners":
        return Boxes.from_corners(raw, names, values, convention=convention, where=where)
    if kind == "key_slice_corners":
        slices = _numbers(rows, [spec.slice_column], where)[:, 0] - spec.slice_base
        return Boxes.from_key_slice(raw, names, values, slices, convention=convention,
                                    where=where)
    half = values.shape[1] // 2
    return Boxes.from_voxel_ranges(raw, names, values[:, :half], values[:, half:], where=where)


def _numbers(rows: list[dict], columns: Sequence[str], where: str) -> np.ndarray:
    try:
        return np.array([[float(row[c]) for c in columns] for row in rows], dtype=np.float64)
    except ValueError as error:
        raise LabelError(where, f"annotation coordinates are not numbers ({error})",
                         hint="check the recipe's annotation columns") from error


def _names(rows: list[dict], spec: BoxLabels | LandmarkLabels) -> list[str]:
    return [str(row[spec.label_column]).strip() for row in rows]
