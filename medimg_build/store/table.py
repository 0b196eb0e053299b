"""The case table as one 1-D array per column along the ``case`` dimension.

Why columns of arrays: xarray then sees the table as variables aligned with ``image``
(``ds.split == "train"`` selects cases), in a Zarr hierarchy that Zarr readers
understand. A Zarr store also keeps the table as ``cases.parquet`` beside them, for
readers without Zarr or without its string arrays (``table_arrow.py``).

Column types are chosen from the values (pandas dtypes are not trusted: an all-int
column with a gap is float64 in pandas, a str column may be object):

============  ======================  ==============================
values        stored as               a missing value (None/NaN) is
============  ======================  ==============================
bool          bool                    (a gap makes it a JSON column)
int           int64                   (a gap makes it float64)
int/float     float64                 NaN
str           variable-length string  ""
anything else JSON strings            "null" (decoded back to None)
============  ======================  ==============================
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pandas as pd
from zarr.core.sync import sync

from ..errors import StoreError
from ..limits import current_max_voxels
from ..provenance import to_jsonable
from .damage import undecodable
from .schema import CASE, COLUMN_CHUNK, check_node_name, is_integer

CASE_ID = "case_id"  # the DataFrame column that becomes the `case` array
# The same table as one Parquet file in a Zarr store, written at close (table_arrow.py).
PARQUET_KEY = "cases.parquet"


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and bool(np.isnan(value))


def _kind(values: list[Any]) -> str:
    present = [v for v in values if not _missing(v)]
    gaps = len(present) < len(values)
    if not present:
        return "float"
    if all(isinstance(v, (bool, np.bool_)) for v in present):
        return "json" if gaps else "bool"
    if all(is_integer(v) for v in present):
        return "float" if gaps else "int"
    if all(is_integer(v) or isinstance(v, (float, np.floating)) for v in present):
        return "float"
    if all(isinstance(v, str) for v in present):
        return "str"
    return "json"


def encode_column(values: list[Any]) -> tuple[np.ndarray, str]:
    """Values of one column -> (array to store, kind)."""
    kind = _kind(values)
    if kind == "bool":
        return np.array(values, dtype=bool), kind
    if kind == "int":
        return np.array(values, dtype=np.int64), kind
    if kind == "float":
        return np.array([np.nan if _missing(v) else float(v) for v in values]), kind
    if kind == "str":
        return np.array(["" if _missing(v) else v for v in values], dtype=object), kind
    texts = [json.dumps(to_jsonable(None if _missing(v) else v)) for v in values]
    return np.array(texts, dtype=object), kind


def check_table(table: pd.DataFrame, n_cases: int, written: dict[int, str],
                taken: set[str], where: str) -> None:
    """Refuse a table that does not line up with the cases written."""
    if CASE_ID not in table.columns:
        raise StoreError(where, "the case table has no 'case_id' column",
                         hint="pass the table with one row per case and its case_id")
    if len(table) != n_cases:
        raise StoreError(where, f"the case table has {len(table)} rows for {n_cases} cases",
                         hint="pass one row per case index, in index order")
    ids = table[CASE_ID].tolist()
    for index, case_id in written.items():
        if ids[index] != case_id:
            raise StoreError(where, f"row {index} of the case table is {ids[index]!r} but "
                             f"case {index} was written as {case_id!r}",
                             hint="put the table rows in case-index order")
    for name in table.columns:
        if name != CASE_ID:
            check_node_name(name, "table column", where)
            if name in taken:
                raise StoreError(where, f"table column {name!r} clashes with the store "
                                 "array of that name", hint="rename the column")


def write_table(root, table: pd.DataFrame) -> dict[str, list[str]]:
    """One array per column; returns the root attrs' ``table`` entry."""
    columns, json_columns = [], []
    n = len(table)
    for name in table.columns:
        data, kind = encode_column(table[name].tolist())
        array_name = CASE if name == CASE_ID else str(name)
        array = root.create_array(
            array_name, shape=(n,), chunks=(min(n, COLUMN_CHUNK),),
            dtype=str if data.dtype == object else data.dtype,
            dimension_names=(CASE,),
        )
        array[:] = data
        columns.append(str(name))
        if kind == "json":
            json_columns.append(str(name))
    return {"columns": columns, "json_columns": json_columns}


def read_table(root, info: dict[str, list[str]], keep: np.ndarray,
               case_ids: np.ndarray | None = None) -> pd.DataFrame:
    """The stored table, rows where ``keep`` is True, JSON columns decoded; ``case_ids``
    (all of them) when the caller has read them already."""
    json_columns = set(info.get("json_columns", []))
    names = [n for n in info["columns"] if not (n == CASE_ID and case_ids is not None)]
    read = dict(zip(names, read_whole_arrays(root, [CASE if n == CASE_ID else n
                                                    for n in names])))
    columns = [case_ids if n not in read else read[n] for n in info["columns"]]
    data = {}
    for name, values in zip(info["columns"], columns):
        values = values[keep]
        if name in json_columns:
            with _decoding(root, name):
                data[name] = pd.Series([json.loads(v) for v in values.tolist()],
                                       dtype=object)
        elif values.dtype.kind in "OTU":
            data[name] = pd.Series(values.tolist(), dtype="str")
        else:
            data[name] = pd.Series(values)
    return pd.DataFrame(data)


def read_whole_arrays(root, names: list[str]) -> list[np.ndarray]:
    """The arrays ``names`` of ``root``, read whole. From a Zarr group they are read
    concurrently: a table of 20 columns on S3 then costs one round trip, not 20."""
    _check_lengths(root, names)
    arrays = [getattr(root[name], "async_array", None) for name in names]
    if None in arrays:  # not Zarr's: the HDF5 adapter reads from one local file
        values = []
        for name in names:
            with _decoding(root, name):
                values.append(root[name][...])
        return values

    async def read(name: str, array) -> np.ndarray:
        with _decoding(root, name):
            return await array.getitem(...)

    async def read_all() -> list[np.ndarray]:
        return await asyncio.gather(*(read(n, a) for n, a in zip(names, arrays)))

    return sync(read_all())


def _check_lengths(root, names: list[str]) -> None:
    """Refuse, before reading, columns that are not one row per case: a column of
    another length than the others, or of more rows than the size limit. A store from
    another lab can declare any shape, and a column's missing chunks read as fill values
    of that shape (10**10 empty strings: 149 GiB)."""
    shapes = {name: tuple(root[name].shape) for name in names}
    rows = next(iter(shapes.values()), (0,))
    for name, shape in shapes.items():
        problem = "is not one-dimensional" if len(shape) != 1 else \
            f"has {shape[0]:,} rows where {names[0]} has {rows[0]:,}" if shape != rows else \
            f"has {shape[0]:,} rows, over the size limit of {current_max_voxels():,}" \
            if shape[0] > current_max_voxels() else None
        if problem:
            with _decoding(root, name):
                raise ValueError(f"column {name} {problem}")


def _decoding(root, name: str):
    """Damaged bytes of column ``name`` as a StoreError naming it (damage.py)."""
    # zarr names its store as a URL (file://..., zip://...); the HDF5 adapter has no
    # store object, and is named by its file
    store = getattr(root, "store", None) or root.location
    return undecodable(f"{store}/{name}", f"the case table's column {name}")
