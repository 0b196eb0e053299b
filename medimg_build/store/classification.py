"""Classification labels: collected per case while writing, stored as arrays at close.

A label whose value is a vector is multi-label: ``label_<name>`` (case, <name>_class)
int8, with the coordinate ``<name>_class`` holding the class names. A scalar label is
``label_<name>`` (case,) int16. -1 means missing/unknown, also for cases never written.

Labels are tiny, so they are kept in memory and written once at close: no two workers
ever write the same chunk (concurrent writes to one chunk lose data).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import StoreError
from ..provenance import to_jsonable
from .schema import (
    CASE, COLUMN_CHUNK, MISSING_LABEL, check_node_name, class_coord_name, is_integer,
    label_array_name,
)


class ClassificationBuffer:
    def __init__(self, n_cases: int) -> None:
        self._n = n_cases
        self._widths: dict[str, int | None] = {}  # None = scalar, else number of classes
        self._values: dict[int, dict[str, int | np.ndarray]] = {}

    def check(self, case_id: str, labels: dict[str, Any], where: str) -> dict[str, Any]:
        """Validate one case's labels against the kinds seen so far (call under the
        writer's lock); returns them normalized (ints, int8 vectors)."""
        clean = {}
        for name, value in labels.items():
            check_node_name(name, "label name", where)
            vector = np.asarray(value)
            width = None if vector.ndim == 0 else int(vector.size)
            if width is None:
                not_int = not is_integer(vector.item())
            else:
                not_int = vector.dtype.kind not in "iu"
            if vector.ndim > 1 or not_int:
                raise StoreError(where, f"case {case_id!r}: label {name!r} = {value!r} is "
                                 "neither an int nor a 1-D int vector")
            known = self._widths.get(name, width)
            if known != width:
                raise StoreError(where, f"case {case_id!r}: label {name!r} has "
                                 f"{_describe(width)} but earlier cases have {_describe(known)}")
            clean[name] = int(vector) if width is None else vector.astype(np.int8)
        for name, value in clean.items():  # the first case to use a label fixes its kind
            self._widths.setdefault(name, None if np.ndim(value) == 0 else len(value))
        return clean

    def add(self, index: int, clean: dict[str, Any]) -> None:
        self._values[index] = clean

    def discard(self, index: int) -> None:
        self._values.pop(index, None)

    def names(self) -> list[str]:
        out = [label_array_name(n) for n in self._widths]
        out += [class_coord_name(n) for n, w in self._widths.items() if w is not None]
        return out

    def write(self, root, vocabulary: Any, where: str) -> None:
        """All label arrays, -1 where a case has no value; ``vocabulary`` (the root
        attrs' ``labels``) names the classes."""
        for name, width in self._widths.items():
            spec = to_jsonable(vocabulary_entry(vocabulary, name))
            if width is None:
                self._write_scalar(root, name, spec)
            else:
                self._write_vector(root, name, width, spec, where)

    def _write_scalar(self, root, name: str, spec: dict[str, Any]) -> None:
        data = np.full(self._n, MISSING_LABEL, dtype=np.int16)
        for index, labels in self._values.items():
            if name in labels:
                data[index] = labels[name]
        array = root.create_array(label_array_name(name), shape=data.shape, dtype=data.dtype,
                                  chunks=(min(self._n, COLUMN_CHUNK),),
                                  fill_value=MISSING_LABEL, dimension_names=(CASE,),
                                  attributes=spec)
        array[:] = data

    def _write_vector(self, root, name: str, width: int, spec: dict[str, Any],
                      where: str) -> None:
        classes = [str(c) for c in spec.get("classes", range(width))]
        if len(classes) != width:
            raise StoreError(where, f"label {name!r} vectors have {width} entries but its "
                             f"vocabulary has {len(classes)} classes")
        data = np.full((self._n, width), MISSING_LABEL, dtype=np.int8)
        for index, labels in self._values.items():
            if name in labels:
                data[index] = labels[name]
        class_dim = class_coord_name(name)
        coord = root.create_array(class_dim, shape=(width,), dtype=str,
                                  dimension_names=(class_dim,))
        coord[:] = np.array(classes, dtype=object)
        array = root.create_array(label_array_name(name), shape=data.shape, dtype=data.dtype,
                                  chunks=(min(self._n, COLUMN_CHUNK), width),
                                  fill_value=MISSING_LABEL, dimension_names=(CASE, class_dim),
                                  attributes=spec)
        array[:] = data


def written_labels(medimg: dict[str, Any]) -> list[str]:
    """The classification labels the store has arrays of (a label of the vocabulary no
    case had is never written), in vocabulary order."""
    vocabulary = (medimg.get("labels") or {}).get("classification") or {}
    arrays = medimg.get("arrays") or {}
    return [name for name in vocabulary if label_array_name(name) in arrays]


def segmentation_classes(vocabulary: Any) -> dict[int, str]:
    """Mask value -> class name, from the vocabulary's ``segmentation.classes`` ({} if
    it has none)."""
    classes = vocabulary_entry(vocabulary, "segmentation").get("classes")
    if not isinstance(classes, dict):
        return {}
    return {int(value): str(name) for value, name in classes.items() if str(value).isdigit()}


def vocabulary_entry(vocabulary: Any, name: str) -> dict[str, Any]:
    """The recipe's description of label ``name`` (kind, classes...), or {}.

    Accepts ``{name: {...}}``, ``{"classification": {name: {...}}}`` (what the build
    writes) or ``[{"name": name, ...}, ...]``: the store only needs the class names and
    should not break if the recipe reshapes its vocabulary."""
    if isinstance(vocabulary, dict):
        entry = vocabulary.get(name)
        if entry is None and isinstance(vocabulary.get("classification"), (dict, list)):
            return vocabulary_entry(vocabulary["classification"], name)
    elif isinstance(vocabulary, list):
        entry = next((e for e in vocabulary if isinstance(e, dict) and e.get("name") == name),
                     None)
    else:
        entry = None
    return dict(entry) if isinstance(entry, dict) else {}


def read_label(root, name: str, ids: np.ndarray, keep: np.ndarray) -> pd.Series | pd.DataFrame:
    values = root[label_array_name(name)][:][keep]
    index = pd.Index(pd.Series(ids[keep].tolist(), dtype="str"), name="case_id")
    if values.ndim == 1:
        return pd.Series(values, index=index, name=name)
    classes = [str(c) for c in root[class_coord_name(name)][:].tolist()]
    return pd.DataFrame(values, index=index, columns=classes)


def _describe(width: int | None) -> str:
    return "one value" if width is None else f"a vector of {width}"
