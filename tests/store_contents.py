"""What two builds must agree on: every array and attribute of a store."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import zarr

from medimg_build.store.table import PARQUET_KEY


def store_contents(path: Path) -> dict:
    """Every array (values, dims, attrs, dtype, chunks, shards) and group attribute of a
    store, minus what differs between equal builds by design (provenance, build time).
    A stray file in the store (a lock, a journal) makes zarr warn, and fails here."""
    contents = {}

    def visit(group: zarr.Group, prefix: str) -> None:
        attrs = json.loads(json.dumps(dict(group.attrs)))
        attrs.get("medimg", {}).pop("provenance", None)
        attrs.get("medimg", {}).get("build_report", {}).pop("seconds", None)
        contents[f"{prefix}/@attrs"] = attrs
        for name, array in group.arrays():
            values = np.asarray(array[...])  # a 0-d string array gives a str
            contents[f"{prefix}/{name}"] = (
                array.metadata.dimension_names, json.dumps(dict(array.attrs)),
                str(array.dtype), array.chunks, array.shards,
                values.tolist() if values.dtype.kind in "OTU" else values.tobytes())
        for name, child in group.groups():
            visit(child, f"{prefix}/{name}")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # The case table's Parquet copy is a file beside the hierarchy on purpose
        # (store/table_arrow.py): compared by its bytes below.
        warnings.filterwarnings("ignore", message=f"Object at {PARQUET_KEY} ")
        visit(zarr.open_group(path, mode="r", use_consolidated=False), "")
    if (Path(path) / PARQUET_KEY).exists():
        contents[PARQUET_KEY] = (Path(path) / PARQUET_KEY).read_bytes()
    return contents
