"""Zarr v3, the default format: a directory (or a ``.zip`` snapshot, or any fsspec URL)
of groups and arrays. Its group adapter is the ``zarr.Group`` itself; the other formats
mirror that API. The reading, writing and manifest code is in ``reader.py``,
``writer.py`` (resume), ``manifest.py`` and ``snapshot.py``; this module is what
chooses among them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from ...errors import StoreError
from ...failpoints import failpoint
from .. import manifest
from ..journal import JOURNAL_DIR, LOCK_NAME, BuildLock, Journal
from ..reader import open_zarr_store, zarr_store
from ..replace import (
    Replacing, is_local, rebuild_location, refuse_remote_replace, remove_leftovers,
)
from ..base import BESIDE_HIERARCHY
from ..schema import array_info
from ..table import PARQUET_KEY
from ..snapshot import snapshot_zarr
from .base import StoreFormat, register_format


class ZarrFormat(StoreFormat):
    name, title, resumable, writes_from_workers = "zarr", "Zarr", True, True

    def guess_can_open(self, location: str, storage_options: dict | None = None) -> bool:
        """Anything no other format claims: a directory, a ``.zip`` or a URL; opening it
        says precisely what is missing."""
        return True

    @contextmanager
    def open(self, location: str, mode: str = "r",
             storage_options: dict | None = None) -> Iterator[zarr.Group]:
        """The root as it is on disk: not through its consolidated metadata, unless it
        cannot be listed (read-only; writers open their group in ``create_writer``)."""
        if mode != "r":
            raise ValueError(f"ZarrFormat.open reads only, not mode {mode!r}")
        store = zarr_store(location, storage_options)
        try:
            root = zarr.open_group(store, mode="r", use_consolidated=not can_list(store))
        # TypeError: zarr.json fields of the wrong JSON type; RecursionError: a zarr.json
        # nested deeper than Python's stack.
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError, KeyError,
                TypeError, RecursionError) as err:
            raise StoreError(location, f"not a Zarr v3 group ({type(err).__name__})",
                             hint="check the path, or build a store with "
                                  "'medimg-build build'") from None
        yield root

    def open_reader(self, location: str, storage_options: dict | None = None):
        return open_zarr_store(location, storage_options)

    def create_writer(self, location: str, new, overwrite: bool, journal: dict | None):
        lock = None if journal is None else BuildLock(location)
        if lock is not None:
            lock.check()  # first: --overwrite must not touch a store that is being built
        failpoint("checked")  # failpoint: past the check, another build may start now
        replace = self.make_room(location, overwrite)
        if replace and not is_local(location):
            refuse_remote_replace(location)
        if lock is not None:
            lock.acquire()  # from here on a second build of this name is refused
        try:
            failpoint("lock")  # failpoint: killed holding the lock, nothing written
            if not replace:
                Journal(location).remove()  # of a build killed before its first write
                writer = new.writer(location, journal)
                writer.lock = lock
                return writer
            remove_leftovers(location)  # rebuilds of killed --overwrite builds: no one's now
            rebuild = rebuild_location(location)
            inner_lock = None if journal is None else BuildLock(rebuild)
            if inner_lock is not None:
                inner_lock.acquire()
            writer = new.writer(rebuild, journal)
            writer.lock = inner_lock
            return Replacing(writer, location, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    def make_room(self, location: str, overwrite: bool) -> bool:
        """An existing path is refused unless ``overwrite``; even then only a Zarr store
        (or an empty folder, or one that a build killed before its first write left) is
        replaced, never a folder that merely happens to be there."""
        fs, fs_path = fsspec.core.url_to_fs(location)
        if not fs.exists(fs_path):
            return False
        if not overwrite:
            raise StoreError(location, "a store already exists here",
                             hint="pass --overwrite to replace it, or choose another --out")
        if fs.isdir(fs_path) and fs.exists(f"{fs_path.rstrip('/')}/zarr.json"):
            return True
        if not fs.isdir(fs_path) or not only_build_files(location):
            raise StoreError(location, "exists and is not a Zarr store; refusing to delete it",
                             hint="choose another --out")
        return False  # nothing readable to keep: built in place

    def array_info(self, array) -> dict[str, Any]:
        return array_info(array)

    def keep_case_table(self, root: zarr.Group, table: Callable[[], Any]) -> None:
        """``cases.parquet`` at the root, beside the arrays (``table_arrow.py``): DuckDB,
        Spark or R read it from a path or an S3 URL, without Zarr."""
        from ..table_arrow import parquet_bytes

        data = default_buffer_prototype().buffer.from_bytes(parquet_bytes(table()))
        sync(root.store.set(PARQUET_KEY, data))

    def finish(self, root: zarr.Group) -> None:
        """The content manifest, then consolidation (so the consolidated metadata
        includes the manifest)."""
        manifest.write_manifest(root)
        consolidate(root)

    def manifest_objects(self, root: zarr.Group) -> dict[str, str]:
        return manifest.zarr_objects(root.store)

    def verify(self, location: str, storage_options: dict | None = None) -> list:
        return manifest.verify_zarr(location, storage_options)

    def manifest_summary(self, location: str, storage_options: dict | None = None
                         ) -> dict[str, Any]:
        return manifest.zarr_summary(location, storage_options)

    def snapshot(self, location: str, out: str, storage_options: dict | None = None) -> int:
        return snapshot_zarr(location, out, storage_options)


def consolidate(root: zarr.Group) -> None:
    """One metadata document at the root, so that a reader on S3/HTTP opens the store
    in one request instead of one per array (and xarray stops warning)."""
    with warnings.catch_warnings():
        # Zarr v3 consolidated metadata is not in the spec yet; zarr-python and xarray
        # read it, and a reader without it still finds every zarr.json.
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        warnings.filterwarnings("ignore", message=BESIDE_HIERARCHY)  # lock, journal, Parquet
        zarr.consolidate_metadata(root.store, path=root.path)


def only_build_files(location: str) -> bool:
    """The folder holds nothing but a build's lock and journal (or nothing at all)."""
    fs, fs_path = fsspec.core.url_to_fs(location)
    names = {entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(fs_path, detail=False)}
    return names <= {LOCK_NAME, JOURNAL_DIR}


def can_list(store) -> bool:
    """False for a plain HTTP server, which cannot list keys: there the hierarchy is the
    one the consolidated metadata describes."""
    protocols = getattr(getattr(store, "fs", None), "protocol", ())
    return not {"http", "https"} & set([protocols] if isinstance(protocols, str) else protocols)


ZARR = register_format(ZarrFormat(), default=True)
