"""``export_table``: the case table of a store, with its classification labels, as one
Parquet file: the table ``table_arrow.case_table`` makes (the file a Zarr store keeps
as ``cases.parquet``; the module docstring there says how each column is typed).
``read_exported_table`` reads it back.
"""

from __future__ import annotations

import os

import fsspec
import pyarrow as pa

from ..errors import StoreError
from .opening import open_store
from .table_arrow import JSON_COLUMNS_KEY, labelled_case_table, parquet_bytes
from .table_arrow import read_case_table as read_exported_table
from .table_arrow import table_to_arrow

__all__ = ["JSON_COLUMNS_KEY", "default_table_path", "export_table", "read_exported_table",
           "store_case_table", "table_to_arrow", "write_parquet"]

PARQUET_SUFFIXES = (".parquet", ".pq")  # what Spark, DuckDB and pandas users name them


def default_table_path(location: str) -> str:
    """``<store>.cases.parquet`` next to the store."""
    return location.rstrip("/") + ".cases.parquet"


def export_table(store_location: str | os.PathLike, out: str | os.PathLike | None = None,
                 storage_options: dict | None = None) -> tuple[str, int]:
    """Write the case table of complete cases; returns (where, number of rows)."""
    store = open_store(store_location, storage_options)
    table = store_case_table(store)
    target = os.fspath(out) if out is not None else default_table_path(store.location)
    write_parquet(table, target, storage_options)
    return target, table.num_rows


def check_parquet_name(target: str) -> None:
    """Refuse a file name that says another format: the file would be Parquet under it,
    and a spreadsheet or ``jq`` opening ``cases.csv`` would read binary garbage."""
    if not target.rstrip("/").lower().endswith(PARQUET_SUFFIXES):
        raise StoreError(target, "is not a .parquet file name: tables are written as "
                         "Parquet only", hint="name it FILE.parquet; "
                         "pandas.read_parquet(FILE).to_csv() makes a CSV of it")


def write_parquet(table: pa.Table, target: str, storage_options: dict | None = None) -> None:
    """``table`` as the Parquet file ``target`` (a path or URL): the bytes of
    ``table_arrow.parquet_bytes``, so an exported table is byte for byte the file a
    Zarr store keeps. The folder is made if missing; a failed write leaves nothing."""
    data = parquet_bytes(table)
    fs, path = fsspec.core.url_to_fs(target, **(storage_options or {}))
    try:
        handle = _open_output(fs, path, target)  # fails before anything is written there
    except NotImplementedError:  # fsspec's answer for http(s)://: no writes at all
        scheme = target.split("://", 1)[0]
        raise StoreError(target, f"cannot be written: {scheme}:// is read-only",
                         hint="give --out a local path, or a writable URL such as s3://"
                         ) from None
    try:
        with handle:
            handle.write(data)
    except BaseException:
        _remove_partial(fs, path)  # a full disk: no truncated table under the name
        raise


def _open_output(fs, path: str, target: str):
    """``path`` opened for writing, its folder made if missing. Refuses a directory:
    a failed write removes its output, which must never be anything but the table."""
    if fs.isdir(path):
        raise StoreError(target, "is a directory, not a file name for the table",
                         hint="give --out the path of a .parquet file")
    check_parquet_name(target)
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
    labels = {name: store.labels(name) for name in store.label_names}
    return labelled_case_table(store.attrs, store.cases, labels)
