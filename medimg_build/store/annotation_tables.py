"""Bounding boxes and landmarks as tables: one Zarr group of 1-D column arrays each.

``boxes/`` (dimension ``box``) and ``landmarks/`` (dimension ``landmark``), one row per
box or point, rows sorted by case index (then as the case listed them), so the same
inputs give the same bytes whatever order the workers finished in. Columns:

* ``case_index`` (int64, position along the root ``case`` axis -- not named ``case``,
  which would shadow the root's ``case`` coordinate in a DataTree), ``case_id`` (str),
  ``label`` (str), ``label_index`` (int32, into the group's ``classes`` attribute).
* Harmonized voxel coordinates, stored axis names (``x`` = index axis i, ``y`` = j,
  ``z`` = k): boxes ``[z_min, z_max,] y_min, y_max, x_min, x_max``, landmarks
  ``[z,] y, x`` (float64). Voxel centres are at integers; box min/max are the box's
  EDGES, so a box covering voxels 10..19 is 9.5 .. 19.5.
* RAS+ mm: boxes ``R_min, R_max, A_min, A_max, S_min, S_max`` (the axis-aligned hull
  of the box's corners: its extent, edge to edge), landmarks ``R, A, S``. A picture
  (``MedicalImage.is_picture``: a PNG, JPEG or radiograph without a patient frame) has
  no R, A, S: its boxes have ``row_min, row_max, column_min, column_max`` and its
  landmarks ``row, column`` instead: the position on the film (down, across) from the
  centre of its first source pixel, in mm where the pixel size is known and in source
  pixels where not (the case's ``spacing_unit``). A table holding both kinds has both
  sets of columns, NaN where a row's kind has none.
* 3D boxes: ``key_slice`` (int32): for a box drawn on one slice (DeepLesion), the
  harmonized ``z`` index of that slice, else -1.
* The original coordinates, on the source image and in its own index order
  ``(i, j[, k])`` (which need not be RAS): boxes ``source_i_min, source_i_max, ...``,
  landmarks ``source_i, source_j[, source_k]``; boxes also ``source_key_slice``.
  NaN where a case's source image had fewer axes than another's.

Like classification labels, they are buffered in memory and written once at close:
no two workers ever write one chunk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import LabelError, StoreError, shown_items
from ..image import PICTURE_AXES
from ..labels.boxes_landmarks import Boxes, Landmarks
from .axes import spatial_dims
from .classification import vocabulary_entry
from .schema import COLUMN_CHUNK

BOXES, LANDMARKS = "boxes", "landmarks"
GROUP_NAMES = frozenset({BOXES, LANDMARKS})
DIMS = {BOXES: "box", LANDMARKS: "landmark"}
_SOURCE_AXES = ("i", "j", "k")
_WORLD = ("R", "A", "S")


def check_types(case_id: str, found: dict[str, Any], where: str) -> None:
    """Refuse annotations (kind -> value) that are not Boxes or Landmarks: before a
    case's journal record is made of them, and again with the labels."""
    for kind, kind_type in ((BOXES, Boxes), (LANDMARKS, Landmarks)):
        value = found.get(kind)
        if value is not None and not isinstance(value, kind_type):
            raise StoreError(where, f"case {case_id!r}: {kind} must be "
                             f"{kind_type.__name__}, got {type(value).__name__}")


def check_on_grid(case, where: str) -> None:
    """Refuse a case's boxes or landmarks that are not on its image's grid."""
    check_types(case.case_id, {kind: getattr(case, kind) for kind in (BOXES, LANDMARKS)},
                where)
    for kind in (BOXES, LANDMARKS):
        value = getattr(case, kind)
        if value is None:
            continue
        image = case.image
        same_grid = value.shape == image.spatial_shape and np.allclose(
            value.affine, image.affine, atol=1e-4)
        if not same_grid:
            raise StoreError(where, f"case {case.case_id!r}: {kind} are not on the "
                             "image's grid", hint=f"move them with {kind}.onto(image)")


class AnnotationBuffer:
    def __init__(self) -> None:
        # kind -> case index -> (case_id, Boxes | Landmarks)
        self._rows: dict[str, dict[int, tuple[str, Any]]] = {BOXES: {}, LANDMARKS: {}}

    def check(self, case_id: str, found: dict[str, Any], vocabulary: Any, where: str) -> None:
        """Refuse annotations (kind -> Boxes, Landmarks or None) whose type is wrong or
        whose labels the recipe's vocabulary does not list (call under the writer's
        lock). Their grid is checked with the pixels (``check_on_grid``)."""
        check_types(case_id, found, where)
        for kind in (BOXES, LANDMARKS):
            value = found.get(kind)
            if value is None:
                continue
            classes = _vocabulary_classes(vocabulary, kind)
            unknown = sorted(set(value.labels) - set(classes or value.labels))
            if unknown:
                raise LabelError(where, f"case {case_id!r}: {kind} label(s) "
                                 f"[{shown_items(map(repr, unknown), 5)}] are not in the vocabulary {classes}",
                                 hint=f"list them under the recipe's labels.{kind}")

    def add(self, index: int, case_id: str, found: dict[str, Any]) -> None:
        for kind in (BOXES, LANDMARKS):
            if found.get(kind) is not None:
                self._rows[kind][index] = (case_id, found[kind])

    def discard(self, index: int) -> None:
        for rows in self._rows.values():
            rows.pop(index, None)

    def write(self, root, vocabulary: Any, spatial_ndim: int | None) -> dict[str, Any]:
        """Write the tables that any case has; returns the root attrs' ``annotations``."""
        info = {}
        for kind, rows in self._rows.items():
            if not rows:
                continue
            ndim = spatial_ndim or next(iter(rows.values()))[1].ndim
            columns, classes = _columns(kind, rows, ndim, _vocabulary_classes(vocabulary, kind))
            group = root.create_group(kind, attributes={
                "dimension": DIMS[kind], "classes": classes, "spatial_ndim": ndim,
                "columns": list(columns),
                "coordinates": "voxel centres at integer indices; box min/max are edges",
            })
            n = len(columns["label"])
            for name, values in columns.items():
                array = group.create_array(
                    name, shape=(n,), chunks=(max(1, min(n, COLUMN_CHUNK)),),
                    dtype=str if values.dtype == object else values.dtype,
                    dimension_names=(DIMS[kind],))
                if n:
                    array[:] = values
            info[kind] = {"rows": n, "classes": classes, "columns": list(columns)}
        return info


def _vocabulary_classes(vocabulary: Any, kind: str) -> list[str] | None:
    entry = vocabulary.get(kind) if isinstance(vocabulary, dict) else None
    if isinstance(entry, list):  # a bare list of class names
        return [str(c) for c in entry]
    classes = vocabulary_entry(vocabulary, kind).get("classes")
    if isinstance(classes, dict):  # {"0": "nodule", ...} as segmentation classes are
        classes = [classes[k] for k in sorted(classes, key=int)]
    return None if classes is None else [str(c) for c in classes]


def _columns(kind: str, rows: dict[int, tuple[str, Any]], ndim: int,
             classes: list[str] | None, grids: frozenset[bool] = frozenset({False})
             ) -> tuple[dict[str, np.ndarray], list[str]]:
    """The table's columns and classes. ``grids``: for a table of no rows, the kinds of
    grid (picture or not) of the store's cases, which name its world columns."""
    ordered = [(index, *rows[index]) for index in sorted(rows)]
    labels = [label for _, _, value in ordered for label in value.labels]
    classes = classes if classes is not None else sorted(set(labels))
    lookup = {name: i for i, name in enumerate(classes)}
    count = [len(value) for _, _, value in ordered]
    columns: dict[str, np.ndarray] = {
        "case_index": np.repeat([i for i, _, _ in ordered], count).astype(np.int64),
        "case_id": np.array(np.repeat([c for _, c, _ in ordered], count).tolist(), dtype=object),
        "label": np.array(labels, dtype=object),
        "label_index": np.array([lookup[name] for name in labels], dtype=np.int32),
    }
    values = [value for _, _, value in ordered]
    # No rows (an empty table's columns): the source is taken to have the store's axes.
    source_ndim = max(_source(v).ndim for v in values) if values else ndim
    names = spatial_dims(ndim)  # stored order (z,) y, x = index axes (k,) j, i
    if kind == BOXES:
        lo, hi = _stack([v.lo for v in values], ndim), _stack([v.hi for v in values], ndim)
        world = [v.to_world() for v in values]
        w_lo, w_hi = _stack([w[0] for w in world], 3), _stack([w[1] for w in world], 3)
        for p, name in enumerate(names):
            axis = ndim - 1 - p
            columns[f"{name}_min"], columns[f"{name}_max"] = lo[:, axis], hi[:, axis]
        for name, (axis, has) in _world_axes(values, count, grids).items():
            columns[f"{name}_min"] = np.where(has, w_lo[:, axis], np.nan)
            columns[f"{name}_max"] = np.where(has, w_hi[:, axis], np.nan)
        if ndim == 3:
            columns["key_slice"] = _concat([v.slice_index for v in values], np.int32)
        s_lo = _stack([_source(v).lo for v in values], source_ndim)
        s_hi = _stack([_source(v).hi for v in values], source_ndim)
        for axis in range(source_ndim):
            name = _SOURCE_AXES[axis]
            columns[f"source_{name}_min"] = s_lo[:, axis]
            columns[f"source_{name}_max"] = s_hi[:, axis]
        columns["source_key_slice"] = _concat([_source(v).slice_index for v in values],
                                              np.int32)
    else:
        points = _stack([v.points for v in values], ndim)
        world = _stack([v.to_world() for v in values], 3)
        for p, name in enumerate(names):
            columns[name] = points[:, ndim - 1 - p]
        for name, (axis, has) in _world_axes(values, count, grids).items():
            columns[name] = np.where(has, world[:, axis], np.nan)
        source = _stack([_source(v).points for v in values], source_ndim)
        for axis in range(source_ndim):
            columns[f"source_{_SOURCE_AXES[axis]}"] = source[:, axis]
    return columns, classes


def _world_axes(values: list, count: list[int], grids: frozenset[bool]
                ) -> dict[str, tuple[int, np.ndarray]]:
    """The world columns of a table (name -> (world axis, which rows have it)): R, A, S
    for grids in the patient frame, row and column (axes 1 and 0 of a picture's affine,
    listed in stored order as y, x are) for pictures; both when the table holds both.
    A table of no rows has those of ``grids`` (True: pictures; False: the others)."""
    picture = np.repeat([bool(v.picture) for v in values], count).astype(bool)
    kinds = set(picture.tolist()) if values else set(grids) or {False}
    axes = {}
    if False in kinds:
        axes.update({name: (axis, ~picture) for axis, name in enumerate(_WORLD)})
    if True in kinds:
        axes.update({name: (axis, picture)
                     for axis, name in reversed(list(enumerate(PICTURE_AXES)))})
    return axes


def _source(value):
    return value.source if value.source is not None else value


def _stack(tables: list[np.ndarray], width: int) -> np.ndarray:
    """Row-stack ``(n_b, d_b)`` tables into ``(N, width)``, NaN-padding narrower ones."""
    out = [np.pad(np.asarray(t, float), ((0, 0), (0, width - np.shape(t)[1])),
                  constant_values=np.nan) for t in tables]
    return np.concatenate(out) if out else np.zeros((0, width))


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def read_annotations(root, kind: str, complete: np.ndarray, spatial_ndim: int,
                     pictures: np.ndarray | None = None) -> pd.DataFrame:
    """The ``kind`` table, rows of complete cases only. A store without any (no case
    has one, or the recipe has no such labels) gives an empty table with the columns a
    store of ``spatial_ndim`` axes would have: code written for the rows runs on none.
    Its world columns are those of its complete cases' grids (``pictures``: per case,
    a picture or not): row and column for a store of pictures, else R, A, S."""
    if kind not in root:
        flags = np.zeros(len(complete), bool) if pictures is None else pictures
        grids = frozenset(np.asarray(flags, bool)[complete].tolist())
        return _as_frame(_columns(kind, {}, spatial_ndim, [], grids)[0])
    group = root[kind]
    columns = group.attrs.get("columns")
    table = _as_frame({name: group[name][:] for name in columns})
    keep = complete[table["case_index"].to_numpy()] if len(table) else np.zeros(0, bool)
    return table[keep].reset_index(drop=True)


def _as_frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """Column arrays as a DataFrame; text columns (Zarr's StringDType, or str objects)
    as pandas' str dtype, empty ones too."""
    return pd.DataFrame({name: pd.Series(values.tolist(), dtype="str")
                         if values.dtype.kind in "OTU" else pd.Series(values)
                         for name, values in columns.items()})
