"""``validate_store``: check a store against ``schema/store.schema.json`` and the array
and label invariants of the layout (see the package docstring), and list every
violation rather than stopping at the first.

The store is read as it is on disk, not through its consolidated metadata (which a
broken or hand-edited store may contradict), and pixel data one shard (stack) or one
case (volumes) at a time, so a large store is checked in bounded memory. Zarr stores and
HDF5 stores (same layout in one file) get the same checks and the same messages: the
checks read both through the views of ``tree.py``. What differs by layout is the
layout's ``check`` (``layouts.py``, written in ``layout_checks.py``).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema
import numpy as np
from referencing import Registry, Resource

from ..resources import schema_dir
from .classification import vocabulary_entry
from .schema import CASE, LABEL_PREFIX, LAYOUTS, MISSING_LABEL, class_coord_name
from .table import CASE_ID
from .base import BESIDE_HIERARCHY
from .formats.zarr_format import can_list
from .layouts import layout_named
from .opening import open_store, open_tree
from .tree import ArrayView, GroupView

ANNOTATION_GROUPS = ("boxes", "landmarks")


@dataclass(frozen=True)
class Violation:
    where: str  # a JSON path into the root attrs, or an array/group path in the store
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@cache
def store_schema_validator() -> jsonschema.Draft202012Validator:
    """The store schema, with recipe.schema.json registered under its $id so that the
    shared enums (modality, organ, layout, label kinds) are defined once."""
    store = json.loads((schema_dir() / "store.schema.json").read_text())
    recipe = json.loads((schema_dir() / "recipe.schema.json").read_text())
    registry = Registry().with_resource(recipe["$id"], Resource.from_contents(recipe))
    return jsonschema.Draft202012Validator(
        store, registry=registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def validate_store(path_or_url: str | os.PathLike,
                   storage_options: dict | None = None) -> list[Violation]:
    """Every violation found in the store (Zarr or HDF5); [] for a valid store. A path
    that is neither a Zarr group nor an HDF5 file raises StoreError (there is nothing to
    validate)."""
    with open_tree(path_or_url, storage_options) as root, warnings.catch_warnings():
        # The resume journal of a store with failed cases (store/journal.py) and the
        # case table's Parquet file (table_arrow.py) sit beside the arrays on purpose:
        # not stray objects to warn about.
        warnings.filterwarnings("ignore", message=BESIDE_HIERARCHY)
        return _validate_root(root) + _consolidated_violations(root)


def _consolidated_violations(root: GroupView) -> list[Violation]:
    """Nodes whose copy in the consolidated metadata (what ``open_store`` reads) is not
    the zarr.json checked here. HDF5 keeps one copy of each node's attributes."""
    from .manifest import consolidated_problems

    store = root.zarr_store
    if store is None:
        return []
    # Over plain HTTP, which cannot list, the nodes are those the copy lists.
    nodes = None if can_list(store) else set()
    return [Violation(m.where or "/", m.problem)
            for m in consolidated_problems(store, nodes)]


def _validate_root(root: GroupView) -> list[Violation]:
    medimg = root.attrs.get("medimg")
    if not isinstance(medimg, dict):
        return [Violation("attrs", "no 'medimg' root attribute: not a medimg store")]
    found = [Violation("attrs medimg" + error.json_path[1:], error.message)
             for error in sorted(store_schema_validator().iter_errors(medimg),
                                 key=lambda e: e.json_path)]
    layout, n = medimg.get("layout"), medimg.get("n_cases")
    if layout not in LAYOUTS or not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return found  # the schema errors say why; nothing below can be checked without
    checker = _Checker(root, medimg, layout, n)
    checker.run()
    return found + checker.found


class _Checker:
    def __init__(self, root: GroupView, medimg: dict[str, Any], layout: str, n: int):
        self.root, self.medimg, self.layout, self.n = root, medimg, layout, n
        self.found: list[Violation] = []
        image = medimg.get("image") if isinstance(medimg.get("image"), dict) else {}
        self.spatial_ndim = image.get("spatial_ndim") if image.get("spatial_ndim") in (2, 3) \
            else None
        self.arrays = dict(root.arrays())
        labels = medimg.get("labels") if isinstance(medimg.get("labels"), dict) else {}
        segmentation = labels.get("segmentation") or {}
        classes = segmentation.get("classes") if isinstance(segmentation, dict) else None
        self.mask_values = ({int(k) for k in classes if str(k).isdigit()}
                            if isinstance(classes, dict) else None)
        self.labels = labels
        self.image_shapes: dict[int, tuple[int, ...]] = {}  # case index -> spatial shape

    def add(self, where: str, problem: str) -> None:
        self.found.append(Violation(where, problem))

    def run(self) -> None:
        self.check_dimension_names()
        self.check_case_axis()
        ids = self.case_ids()
        complete = layout_named(self.layout).check(self, ids)
        self.check_table(ids, complete)
        self.check_labels()
        _check_annotations(self, ids)

    # -- every array ---------------------------------------------------------------------
    def check_dimension_names(self) -> None:
        for path, array in self.root.all_arrays():
            names = array.dimension_names
            if names is None and array.ndim == 0:
                continue  # nothing to name (the 0-d manifest): zarr stores no empty list
            if names is None or len(names) != array.ndim or any(n is None for n in names):
                self.add(path, f"dimension_names {names!r} do not name all {array.ndim} "
                         "dimensions")

    def check_case_axis(self) -> None:
        for name, array in sorted(self.arrays.items()):
            dims = array.dimension_names or ()
            if CASE in dims[:1] and array.shape[0] != self.n:
                self.add(name, f"has {array.shape[0]} entries on the case axis, the store "
                         f"has n_cases={self.n}")
            elif CASE in dims[1:]:
                self.add(name, f"dims {list(dims)}: 'case' must be the first dimension")

    def case_ids(self) -> list[str]:
        if CASE not in self.arrays:
            self.add(CASE, "missing: the array of case ids")
            return [""] * self.n
        ids = [str(v) for v in self.arrays[CASE][:].tolist()]
        return ids + [""] * (self.n - len(ids))

    # -- shared --------------------------------------------------------------------------
    def expect_dims(self, where: str, array: ArrayView, dims: tuple[str, ...]) -> None:
        got = tuple(array.dimension_names or ())
        if got != dims:
            self.add(where, f"dims {list(got)}, expected {list(dims)}")

    def check_mask_values(self, where: str, mask: ArrayView, complete: np.ndarray | None
                          ) -> None:
        """Integer dtype, values in the segmentation vocabulary; read one shard at a time
        along the first axis (stack) or the whole case (volumes: one shard per array)."""
        if mask.dtype.kind not in "iu":
            self.add(where, f"dtype {mask.dtype} is not an integer type")
            return
        if self.mask_values is None:
            self.add(where, "a mask but no labels.segmentation.classes vocabulary")
            return
        step = mask.chunks[0] if complete is not None else mask.shape[0]
        seen: set[int] = set()
        for start in range(0, mask.shape[0], max(1, step)):
            block = mask[start:start + step]
            if complete is not None:  # incomplete stack cases hold fill values only
                block = block[complete[start:start + step]]
            seen.update(int(v) for v in np.unique(block))
        unknown = sorted(seen - self.mask_values)
        if unknown:
            self.add(where, f"values {unknown} are not in the segmentation vocabulary "
                     f"{sorted(self.mask_values)}")

    def check_table(self, ids: list[str], complete: np.ndarray) -> None:
        table = self.medimg.get("table")
        if not isinstance(table, dict) or not isinstance(table.get("columns"), list):
            return  # the schema check names it
        columns = [c for c in table["columns"] if isinstance(c, str)]
        for name in table.get("json_columns") or []:
            if name not in columns:
                self.add("attrs medimg.table.json_columns", f"{name!r} is not a table column")
        for name in columns:
            array_name = CASE if name == CASE_ID else name
            array = self.arrays.get(array_name)
            if array is None:
                self.add(array_name, f"table column {name!r} is listed in the root attrs but "
                         "the array is missing")
                continue
            if array.ndim != 1 or array.shape[0] != self.n:
                self.add(array_name, f"table column of shape {list(array.shape)}, expected "
                         f"[{self.n}]")
                continue
            if name in (table.get("json_columns") or []):
                self.check_json_column(array_name, array, ids, complete)
        for i in np.flatnonzero(complete):
            if not ids[i]:
                self.add(f"{CASE}[{i}]", "a complete case without a table row (empty case id)")

    def check_json_column(self, name: str, array: ArrayView, ids: list[str],
                          complete: np.ndarray) -> None:
        for i, text in enumerate(array[:].tolist()):
            try:
                json.loads(text)
            except (TypeError, ValueError):
                if complete[i]:
                    self.add(f"{name}[{i}]", f"case {ids[i]!r}: not JSON: {str(text)[:40]!r}")
                    return  # one row says it; a column of garbage would say it N times

    def check_labels(self) -> None:
        for name, array in sorted(self.arrays.items()):
            if not name.startswith(LABEL_PREFIX):
                continue
            label = name[len(LABEL_PREFIX):]
            entry = vocabulary_entry(self.labels, label)
            classes = entry.get("classes")
            if not entry or not isinstance(classes, list):
                self.add(name, f"label {label!r} has no classes in labels.classification")
                continue
            if array.dtype.kind not in "iu":
                self.add(name, f"dtype {array.dtype} is not an integer type")
                continue
            values = np.unique(array[:])
            if array.ndim == 2:  # multi-label: one 0/1 per class, -1 unknown
                allowed, what = {MISSING_LABEL, 0, 1}, "{-1, 0, 1}"
                self.check_class_coord(label, array, classes)
            else:
                allowed = {MISSING_LABEL, *range(len(classes))}
                what = f"{{-1}} or [0, {len(classes)})"
            bad = sorted(int(v) for v in values if int(v) not in allowed)
            if bad:
                self.add(name, f"values {bad} are not in {what} ({len(classes)} classes)")

    def check_class_coord(self, label: str, array: ArrayView, classes: list[str]) -> None:
        coord_name = class_coord_name(label)
        if array.shape[1] != len(classes):
            self.add(LABEL_PREFIX + label, f"{array.shape[1]} class columns for "
                     f"{len(classes)} classes in the vocabulary")
        coord = self.arrays.get(coord_name)
        if coord is None:
            self.add(coord_name, f"missing: the class names of label {label!r}")
        elif [str(c) for c in coord[:].tolist()] != [str(c) for c in classes]:
            self.add(coord_name, "class names differ from the vocabulary's")


def _check_annotations(checker: _Checker, ids: list[str]) -> None:
    """Box and landmark tables (store/annotation_tables.py: groups ``boxes``/``landmarks`` of
    1-D columns): each row names a case on the case axis and a class of the group's
    ``classes``, and lies inside that case's image. Voxel centres are at integers and
    box coordinates are edges, so the image spans -0.5 .. size-0.5 on every axis."""
    for group_name in ANNOTATION_GROUPS:
        if group_name not in checker.root:
            continue
        group = checker.root[group_name]
        columns = group.arrays()
        if "case_index" not in columns:
            checker.add(group_name, "no case_index column")
            continue
        cases = np.asarray(columns["case_index"][:], dtype=np.int64)
        outside = np.flatnonzero((cases < 0) | (cases >= checker.n))
        if outside.size:
            checker.add(f"{group_name}/case_index[{outside[0]}]",
                        f"{cases[outside[0]]} is not a case index (n_cases={checker.n})")
            continue
        classes = group.attrs.get("classes")
        if "label_index" in columns and isinstance(classes, list):
            labels = np.asarray(columns["label_index"][:])
            bad = np.flatnonzero((labels < 0) | (labels >= len(classes)))
            if bad.size:
                checker.add(f"{group_name}/label_index[{bad[0]}]", f"{labels[bad[0]]} is "
                            f"not an index into the {len(classes)} classes")
        for axis_pos, axis in enumerate(("z", "y", "x")):
            names = [axis + s for s in ("_min", "_max", "") if axis + s in columns]
            values = {name: np.asarray(columns[name][:], dtype=float) for name in names}
            if f"{axis}_min" in values and f"{axis}_max" in values:
                flipped = np.flatnonzero(values[f"{axis}_min"] > values[f"{axis}_max"])
                if flipped.size:
                    checker.add(f"{group_name}/{axis}_min[{flipped[0]}]",
                                f"greater than {axis}_max")
            for name, column in values.items():
                _check_inside(checker, f"{group_name}/{name}", cases, column, axis_pos, ids)


def _check_inside(checker: _Checker, where: str, cases: np.ndarray, values: np.ndarray,
                  axis_pos: int, ids: list[str]) -> None:
    """The first row of a complete case outside its image along stored axis
    ``axis_pos`` (0=z, 1=y, 2=x); one line per column is enough to find the bug."""
    for row, (case, value) in enumerate(zip(cases.tolist(), values.tolist())):
        shape = checker.image_shapes.get(case)
        if shape is None or np.isnan(value) or len(shape) < 3 - axis_pos:
            continue  # an incomplete case, a padded 2D row, or no such axis
        extent = shape[axis_pos - 3]
        if not -0.5 - 1e-6 <= value <= extent - 0.5 + 1e-6:
            checker.add(f"{where}[{row}]", f"case {ids[case]!r}: {value:g} is outside the "
                        f"image (-0.5 .. {extent - 0.5:g} along {where.rsplit('/')[-1][0]})")
            return


def store_summary(path_or_url: str | os.PathLike, storage_options: dict | None = None) -> str:
    """"N cases, layout" of a valid store, N = complete cases (what readers see)."""
    store = open_store(path_or_url, storage_options)
    return f"{len(store.cases)} cases, {store.layout}"
