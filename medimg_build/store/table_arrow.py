"""The case table as one Arrow table: what ``export-table`` writes, what a Zarr store
keeps as ``cases.parquet`` beside its column arrays, and what the catalog queries.

Why a Parquet file in the store too: DuckDB (``read_parquet('s3://.../ct.zarr/
cases.parquet')``), Spark, Polars and R read Parquet over S3 without a Zarr library,
and readers such as tensorstore cannot read Zarr's variable-length string arrays,
which hold every text column. The column arrays stay the store's own table (xarray
sees them aligned with ``image``); the Parquet file is written from them at close, so
both say the same, and the content manifest covers it like any other object.

Columns, in the order of ``store.cases``, then one per classification label:

* scalars as Arrow scalars; lists and records as Arrow lists and structs where Arrow
  holds them exactly (the values read back equal the stored ones): ``original_shape``
  is ``list<int64>``, ``intensity`` a ``struct`` (``intensity.method`` in DuckDB);
* ``steps`` is always ``list<struct<name: string, params: json>>``: a list of records,
  as ``AppliedStep`` and TorchIO's ``AppliedTransform`` are (``steps[1].name``,
  ``unnest(steps)``). Its ``params`` are JSON text because each step has its own:
  as a struct they would be the union of every step's keys, null but for one step's,
  and a different type in every store, so that two stores' tables would not line up;
* any other column Arrow cannot hold exactly (a list mixing numbers and text, records
  whose keys differ between rows) is JSON text, also named in the schema metadata
  ``medimg.json_columns``. JSON text is Arrow's ``arrow.json`` extension type, which
  Parquet writes as its JSON logical type: DuckDB reads it as JSON (``->>``);
* ``label_<name>`` per classification label (the store's array names): a single-label
  label's class index as ``int16``, a multi-label label a ``struct`` of one ``int8``
  per class (``label_finding.Effusion``), 1 positive and 0 negative. Unknown (-1 in the
  store's arrays) is null, as SQL and Arrow count missing values. The schema metadata
  ``medimg.labels`` holds the vocabulary (classes in index order, kind).

``read_case_table`` reads such a file back as ``store.cases`` plus the label columns.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..provenance import to_jsonable
from .classification import read_label, written_labels
from .schema import CASE, label_array_name
from .table import read_table

JSON_COLUMNS_KEY = b"medimg.json_columns"
LABELS_KEY = b"medimg.labels"
STEPS = "steps"
JSON = pa.json_(pa.string())
STEP_TYPE = pa.struct([("name", pa.string()), ("params", JSON)])


def case_table(cases: pd.DataFrame, json_columns: list[str],
               labels: dict[str, pd.Series | pd.DataFrame] | None = None,
               vocabulary: dict[str, Any] | None = None) -> pa.Table:
    """The Arrow table of ``cases`` (its JSON columns as the store records them) and of
    ``labels`` (``store.labels(name)`` by name, indexed by case id); ``vocabulary``:
    the store's classification vocabulary, kept in the schema metadata."""
    arrays, as_text = {}, []
    for name in cases.columns:
        values = cases[name]
        if name in json_columns:
            array = _nested_arrow(name, values.tolist())
            if array is None:
                array = json_array(values.tolist())
                as_text.append(name)
            arrays[name] = array
        else:
            arrays[name] = plain_strings(pa.array(values))
    ids = cases["case_id"].tolist() if "case_id" in cases else []
    for name, values in (labels or {}).items():
        arrays[label_array_name(name)] = label_array(values.reindex(ids))
    table = pa.table(arrays)
    metadata = {**(table.schema.metadata or {}), JSON_COLUMNS_KEY: json.dumps(as_text).encode()}
    if labels:
        described = {name: (vocabulary or {}).get(name, {}) for name in labels}
        metadata[LABELS_KEY] = json.dumps(to_jsonable(described), sort_keys=True).encode()
    return table.replace_schema_metadata(metadata)


def table_to_arrow(cases: pd.DataFrame, json_columns: list[str]) -> pa.Table:
    """``case_table`` without labels (the catalog's table, whose rows span stores)."""
    return case_table(cases, json_columns)


def json_array(values: list[Any]) -> pa.Array:
    """Values as JSON text (None as JSON ``null``), typed ``arrow.json``."""
    texts = pa.array([json.dumps(to_jsonable(v)) for v in values], pa.string())
    return pa.ExtensionArray.from_storage(JSON, texts)


def _nested_arrow(name: str, values: list[Any]) -> pa.Array | None:
    """The Arrow array of a JSON column's values, or None for JSON text."""
    if name == STEPS:
        steps = _steps_array(values)
        if steps is not None:
            return steps
    return _exact_arrow(values)


def _steps_array(values: list[Any]) -> pa.Array | None:
    """``list<struct<name, params: json>>`` of per-case step lists (None: no steps);
    None if a value is not a list of {name, params} records."""
    names, params, offsets, valid = [], [], [0], []
    for steps in values:
        if steps is None:
            valid.append(False)
            offsets.append(offsets[-1])
            continue
        if not isinstance(steps, list) or not all(
                isinstance(s, dict) and set(s) == {"name", "params"}
                and isinstance(s["name"], str) for s in steps):
            return None
        names += [s["name"] for s in steps]
        params += [s["params"] for s in steps]
        offsets.append(offsets[-1] + len(steps))
        valid.append(True)
    records = pa.StructArray.from_arrays(
        [pa.array(names, pa.string()), json_array(params)], fields=list(STEP_TYPE))
    mask = pa.array([not v for v in valid], pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), records, mask=mask)


def _exact_arrow(values: list[Any]) -> pa.Array | None:
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return None
    if pa.types.is_null(array.type) and any(v is not None for v in values):
        return None
    if _has_empty_struct(array.type):
        return None  # Parquet has no struct without fields: every {} would stop the close
    return array if array.to_pylist() == values else None


def _has_empty_struct(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind):
        return kind.num_fields == 0 or any(_has_empty_struct(f.type) for f in kind)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_empty_struct(kind.value_type)
    return False


def label_array(values: pd.Series | pd.DataFrame) -> pa.Array:
    """One label's column: class indices (int16), or per-class 0/1 (a struct of int8);
    null where unknown (-1)."""
    if isinstance(values, pd.DataFrame):
        fields = [_known(values[c].to_numpy(), pa.int8()) for c in values.columns]
        return pa.StructArray.from_arrays(fields, names=[str(c) for c in values.columns])
    return _known(values.to_numpy(), pa.int16())


def _known(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    values = np.asarray(values, dtype=np.int64)
    return pa.array(values, type=kind, mask=values < 0)


# -- the store's own copy ---------------------------------------------------------------
def stored_case_table(root, medimg: dict[str, Any], complete: np.ndarray) -> pa.Table:
    """The case table of a store being closed, read back from ``root`` as a reader
    reads it (``store.cases`` and ``store.labels``): rows of the ``complete`` cases."""
    ids = np.asarray(root[CASE][:].tolist(), dtype=object)
    cases = read_table(root, medimg["table"], complete, ids)
    labels = {name: read_label(root, name, ids, complete) for name in written_labels(medimg)}
    return labelled_case_table(medimg, cases, labels)


def labelled_case_table(medimg: dict[str, Any], cases: pd.DataFrame,
                        labels: dict[str, Any]) -> pa.Table:
    """``case_table`` of a store's cases and labels, with its JSON columns and its
    label vocabulary (the root attributes ``medimg``)."""
    return case_table(cases, (medimg.get("table") or {}).get("json_columns", []), labels,
                      (medimg.get("labels") or {}).get("classification") or {})


def plain_strings(array: pa.Array) -> pa.Array:
    """Text as Arrow's ``string``, however pandas held it: pandas 3 keeps text as
    ``large_string`` (pandas 2, or ``future.infer_string`` off: Python objects, which
    Arrow reads as ``string``), and the file's Arrow schema, so its bytes and the store's
    content hash, would follow pandas' setting rather than the data."""
    return array.cast(pa.string()) if pa.types.is_large_string(array.type) else array


# pyarrow.parquet.write_table's options, spelled out so that a pyarrow whose defaults
# change does not silently write another file (the values are pyarrow 26's defaults,
# read in pyarrow/parquet/core.py write_table, so the bytes did not move).
# Nothing in the file depends on the machine or the time: no timestamps are written,
# snappy and the statistics are functions of the values, the Arrow schema it stores
# ("ARROW:schema") is the table's own (built from arrays, never ``from_pandas``: no
# "pandas" metadata with its version). ``created_by`` names the pyarrow version, as
# the store's ``software`` does.
PARQUET_OPTIONS: dict[str, Any] = {
    "version": "2.6", "compression": "snappy", "use_dictionary": True,
    "write_statistics": True, "data_page_version": "1.0", "store_schema": True,
    "use_compliant_nested_type": True, "write_page_index": False,
    "write_page_checksum": False, "row_group_size": None,
}


def parquet_bytes(table: pa.Table) -> bytes:
    """The Parquet file of ``table``, the one writer of every Parquet file medimg-build
    makes (a store's ``cases.parquet``, ``export-table``, the catalog): the same bytes
    for the same table and pyarrow version."""
    sink = io.BytesIO()
    pq.write_table(table, sink, **PARQUET_OPTIONS)
    return sink.getvalue()


# -- reading back ---------------------------------------------------------------------
def read_case_table(path: str | os.PathLike) -> pd.DataFrame:
    """A Parquet file of ``case_table`` back as the store's ``cases`` DataFrame (lists
    as lists, JSON text decoded, ``steps`` as {name, params} records) followed by the
    label columns: what round-trip tests and notebooks want."""
    table = pq.read_table(path)
    as_text = set(json.loads((table.schema.metadata or {}).get(JSON_COLUMNS_KEY, b"[]")))
    data = {}
    for name in table.column_names:
        column = table.column(name)
        if name in as_text or isinstance(column.type, pa.JsonType):
            data[name] = pd.Series([_loads(v) for v in column.to_pylist()], dtype=object)
        elif _is_steps(column.type):
            data[name] = pd.Series([None if steps is None else
                                    [{"name": s["name"], "params": _loads(s["params"])}
                                     for s in steps] for steps in column.to_pylist()],
                                   dtype=object)
        elif pa.types.is_nested(column.type):
            data[name] = pd.Series(column.to_pylist(), dtype=object)
        else:
            data[name] = column.to_pandas()
    return pd.DataFrame(data)


def _is_steps(kind: pa.DataType) -> bool:
    # The list's item field is named "element" in Parquet, "item" in Arrow: not compared.
    return pa.types.is_list(kind) and kind.value_type == STEP_TYPE


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
