"""``export_table``: the case table of a store, with its classification labels, as one
Parquet file: the table ``table_arrow.case_table`` makes (the file a Zarr store keeps
as ``cases.parquet``; the module docstring there says how each column is typed).
``read_exported_table`` reads it back.
"""

from __future__ import annotations

import os

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from .opening import open_store
from .table_arrow import JSON_COLUMNS_KEY, case_table, written_labels
from .table_arrow import read_case_table as read_exported_table
from .table_arrow import table_to_arrow

__all__ = ["JSON_COLUMNS_KEY", "default_table_path", "export_table", "read_exported_table",
           "store_case_table", "table_to_arrow"]


def default_table_path(location: str) -> str:
    """``<store>.cases.parquet`` next to the store."""
    return location.rstrip("/") + ".cases.parquet"


def export_table(store_location: str | os.PathLike, out: str | os.PathLike | None = None,
                 storage_options: dict | None = None) -> tuple[str, int]:
    """Write the case table of complete cases; returns (where, number of rows)."""
    store = open_store(store_location, storage_options)
    table = store_case_table(store)
    target = os.fspath(out) if out is not None else default_table_path(store.location)
    fs, path = fsspec.core.url_to_fs(target, **(storage_options or {}))
    handle = _open_output(fs, path, target)  # fails before anything is written there
    try:
        with handle:
            pq.write_table(table, handle)  # as table_arrow.parquet_bytes: the same bytes
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


def store_case_table(store) -> pa.Table:
    """The Arrow table of an open store's complete cases and their labels."""
    attrs = store.attrs
    labels = {name: store.labels(name) for name in written_labels(attrs)}
    return case_table(store.cases, (attrs.get("table") or {}).get("json_columns", []),
                      labels, (attrs.get("labels") or {}).get("classification") or {})
