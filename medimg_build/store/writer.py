"""``create_store``: a new, empty store and the writer of its layout.

The layouts are described in the package docstring (``medimg_build.store``); the
writers are in ``stack.py`` and ``volumes.py``, what they share in ``base.py``. The
same writers fill an HDF5 file through ``hdf5_writer.py``.
"""

from __future__ import annotations

import os
from typing import Any

import fsspec
import numpy as np
import zarr

from ..errors import StoreError
from ..provenance import to_jsonable
from .base import BaseWriter
from .hdf5_backend import wants_hdf5
from .hdf5_writer import create_hdf5_writer
from .schema import LAYOUTS, SCHEMA_VERSION, default_compressor
from .stack import StackWriter
from .volumes import VolumesWriter


def create_store(path: str | os.PathLike, layout: str, n_cases: int,
                 attrs: dict[str, Any] | None = None, cases_per_shard: int | None = None,
                 compressor=None, overwrite: bool = False,
                 format: str | None = None) -> BaseWriter:
    """Create an empty store at ``path`` (a local path or an fsspec URL) and return the
    writer that fills it: ``write_case(index, case)`` for each case, then
    ``close(table)``.

    ``attrs`` becomes the root ``medimg`` attribute (the writer adds the schema version,
    layout, table and array descriptions). It is read again at ``close``, so the caller
    may add to it (a build report, say) until then. ``cases_per_shard`` applies to the stack
    only (default: ~64 MiB of image per shard). ``compressor`` is a Zarr v3
    bytes-to-bytes codec for image and mask (default Blosc zstd-5 with bit-shuffle).

    ``format`` is "zarr" or "hdf5" (one HDF5 file of the same schema, see
    ``hdf5_backend.py``); by default HDF5 for a ``.h5``/``.hdf5`` path, else Zarr. An
    HDF5 ``compressor`` is a dict of h5py filter arguments (default gzip-4 + shuffle).
    """
    location = os.fspath(path)
    if layout not in LAYOUTS:
        raise StoreError(location, f"unknown store layout {layout!r}",
                         hint=f"use one of {', '.join(LAYOUTS)}")
    if not isinstance(n_cases, (int, np.integer)) or n_cases < 1:
        raise StoreError(location, f"a store needs at least one case, got n_cases={n_cases!r}")
    if cases_per_shard is not None and cases_per_shard < 1:
        raise StoreError(location, f"cases_per_shard must be >= 1, got {cases_per_shard}")
    hdf5 = wants_hdf5(location, format)
    attrs = {} if attrs is None else attrs
    # Written now and completed by close(): a reader that finds finished=False knows
    # the build was interrupted rather than mistaking the store for a whole one.
    initial = dict(to_jsonable(attrs), schema_version=SCHEMA_VERSION, layout=layout,
                   n_cases=int(n_cases), finished=False)
    if hdf5:
        return create_hdf5_writer(location, layout, int(n_cases), attrs, initial,
                                  cases_per_shard, compressor, overwrite)
    _make_room(location, overwrite)
    root = zarr.open_group(location, mode="w", zarr_format=3, attributes={"medimg": initial})
    writer_class = StackWriter if layout == "stack" else VolumesWriter
    extra = {"cases_per_shard": cases_per_shard} if layout == "stack" else {}
    return writer_class(root, location, int(n_cases), attrs,
                        compressor or default_compressor(), **extra)


def _make_room(location: str, overwrite: bool) -> None:
    """Refuse an existing path unless ``overwrite``; even then, delete only a Zarr
    store or an empty directory, never a folder that merely happens to be there."""
    fs, fs_path = fsspec.core.url_to_fs(location)
    if not fs.exists(fs_path):
        return
    if not overwrite:
        raise StoreError(location, "a store already exists here",
                         hint="pass --overwrite to replace it, or choose another --out")
    is_store = fs.exists(f"{fs_path.rstrip('/')}/zarr.json")
    if not fs.isdir(fs_path) or not (is_store or not fs.ls(fs_path)):
        raise StoreError(location, "exists and is not a Zarr store; refusing to delete it",
                         hint="choose another --out")
    fs.rm(fs_path, recursive=True)
