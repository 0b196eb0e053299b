"""``export_table``: the case table of a store as one Parquet file.

JSON-ish columns (lists, dicts) become Arrow lists/structs when Arrow holds them
exactly -- the values read back equal the originals -- and JSON strings otherwise
(a dict whose keys vary from row to row would come back with None-filled keys; a list
mixing numbers and strings has no Arrow type). The JSON-string columns are named in
the file's schema metadata under ``medimg.json_columns``, so a reader can decode them.
"""

from __future__ import annotations

import json
import os
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from ..provenance import to_jsonable
from .opening import open_store

JSON_COLUMNS_KEY = b"medimg.json_columns"


def default_table_path(location: str) -> str:
    """``<store>.cases.parquet`` next to the store."""
    return location.rstrip("/") + ".cases.parquet"


def export_table(store_location: str | os.PathLike, out: str | os.PathLike | None = None,
                 storage_options: dict | None = None) -> tuple[str, int]:
    """Write the case table of complete cases; returns (where, number of rows)."""
    store = open_store(store_location, storage_options)
    table = table_to_arrow(store.cases, store.attrs.get("table", {}).get("json_columns", []))
    target = os.fspath(out) if out is not None else default_table_path(store.location)
    fs, path = fsspec.core.url_to_fs(target, **(storage_options or {}))
    handle = _open_output(fs, path, target)  # fails before anything is written there
    try:
        with handle:
            pq.write_table(table, handle)
    except BaseException:
        _remove_partial(fs, path)  # a full disk: no truncated table under the name
        raise
    return target, table.num_rows


def _open_output(fs, path: str, target: str):
    """``path`` opened for writing, its folder made if missing. Refuses a directory:
    a failed write removes its output, which must never be anything but the table."""
    if fs.isdir(path):
        raise StoreError(target, "is a directory, not a file name for the table",
                         hint="give --out the path of a .parquet file")
    if "/" in path.rstrip("/"):
        fs.makedirs(path.rstrip("/").rsplit("/", 1)[0], exist_ok=True)
    return fs.open(path, "wb")


def _remove_partial(fs, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm(path)
    except OSError:
        pass  # the write's own error, being raised, says what went wrong


def table_to_arrow(cases: pd.DataFrame, json_columns: list[str]) -> pa.Table:
    arrays, as_text = {}, []
    for name in cases.columns:
        values = cases[name]
        if name in json_columns:
            array = _exact_arrow(values.tolist())
            if array is None:
                array = pa.array([json.dumps(to_jsonable(v)) for v in values], pa.string())
                as_text.append(name)
            arrays[name] = array
        else:
            arrays[name] = pa.array(values)
    table = pa.table(arrays)
    return table.replace_schema_metadata(
        {**(table.schema.metadata or {}), JSON_COLUMNS_KEY: json.dumps(as_text).encode()})


def _exact_arrow(values: list[Any]) -> pa.Array | None:
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return None
    if pa.types.is_null(array.type) and any(v is not None for v in values):
        return None
    return array if array.to_pylist() == values else None


def read_exported_table(path: str | os.PathLike) -> pd.DataFrame:
    """The exported Parquet back as the store's ``cases`` DataFrame (lists as lists,
    JSON-string columns decoded): what round-trip tests and notebooks want."""
    table = pq.read_table(path)
    as_text = set(json.loads((table.schema.metadata or {}).get(JSON_COLUMNS_KEY, b"[]")))
    data = {}
    for name in table.column_names:
        column = table.column(name)
        if name in as_text:
            data[name] = pd.Series([json.loads(v) for v in column.to_pylist()], dtype=object)
        elif pa.types.is_nested(column.type):
            data[name] = pd.Series(column.to_pylist(), dtype=object)
        else:
            data[name] = column.to_pandas()
    return pd.DataFrame(data)
