"""Writers of the HDF5 format: the Zarr layout writers over an ``Hdf5Group``.

Only what HDF5 does differently is here: describing a dataset, flushing after each
case, attaching dimension scales and closing the file. h5py serializes every call on
one global lock, so threads calling ``write_case`` are safe, but processes are not:
the one process that owns the writer writes (as ``build_store`` does).
"""

from __future__ import annotations

import os
from typing import Any

import h5py

from ...case import Case
from ...errors import StoreError
from .hdf5_backend import (
    DEFAULT_COMPRESSION, LIBVER, array_info, file_errors,
)
from .hdf5_dimensions import attach_netcdf_dimensions
from .hdf5_group import Hdf5Group
from ..base import layout_options
from .hdf5_manifest import write_hdf5_manifest
from ..journal import BuildLock
from ..replace import Replacing, rebuild_location, remove_leftovers
from ..results import CaseWritten
from ..stack import StackWriter
from ..volumes import VolumesWriter


class _Hdf5Writing:
    _root: Hdf5Group

    def _write(self, index: int, written: CaseWritten, case: Case | None) -> None:
        with file_errors(self._root.h5.file.filename):
            super()._write(index, written, case)  # type: ignore[misc]
            # An interrupted build leaves a readable file whose finished cases are
            # whole: flushed after each case, HDF5 metadata on disk never lags the
            # pixels by more than the case being written (its completion marker unset).
            self._root.h5.file.flush()

    def _array_info(self, array) -> dict[str, Any]:
        return array_info(array.h5)

    def worker_destination(self) -> None:
        return None  # one HDF5 file has one writer: the build process

    def _finish(self) -> None:
        with file_errors(self._root.h5.file.filename):
            write_hdf5_manifest(self._root.h5.file)
            attach_netcdf_dimensions(self._root.h5)  # not content; labels the manifest too
            self._root.h5.file.close()


class Hdf5StackWriter(_Hdf5Writing, StackWriter):
    pass


class Hdf5VolumesWriter(_Hdf5Writing, VolumesWriter):
    pass


def create_hdf5_writer(location: str, layout: str, n_cases: int, attrs: dict[str, Any],
                       initial: dict[str, Any], cases_per_shard: int | None,
                       compressor: dict[str, Any] | None, overwrite: bool,
                       pyramid_levels: int = 1, lock: BuildLock | None = None):
    """``Hdf5Format.create_writer`` (the arguments are checked by ``create_store``).

    ``compressor`` is a dict of h5py ``create_dataset`` filter arguments (e.g.
    ``{"compression": "gzip", "compression_opts": 9, "shuffle": True}``, or an
    ``hdf5plugin`` filter's ``**kwargs``); default: gzip level 4 with shuffle.

    ``lock`` (``BuildLock.beside`` the file) is held until close or abort. An existing
    file is replaced as a Zarr store is (``replace.py``): the new one is written beside
    it and renamed over it by a close that built every case."""
    if "://" in location:
        raise StoreError(location, "HDF5 stores are written to a local file only",
                         hint="write it locally and upload it, or use --format zarr")
    if compressor is not None and not isinstance(compressor, dict):
        raise StoreError(location, "an HDF5 store's compressor is a dict of h5py filter "
                         f"arguments, got {type(compressor).__name__}",
                         hint='e.g. {"compression": "gzip", "compression_opts": 4}')
    if lock is not None:
        lock.check()  # first: --overwrite must not touch a file that is being built
    replace = make_room(location, overwrite)
    os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)  # as Zarr does
    if lock is not None:
        lock.acquire()
    try:
        if replace:
            remove_leftovers(location)  # of killed builds: no one's, the lock is ours
        path = rebuild_location(location) if replace else location
        handle = h5py.File(path, "w", libver=LIBVER)
        root = Hdf5Group(handle, path, "w", compressor or DEFAULT_COMPRESSION)
        root.attrs["medimg"] = initial
        writer_class = Hdf5StackWriter if layout == "stack" else Hdf5VolumesWriter
        extra = layout_options(layout, cases_per_shard, pyramid_levels)
        writer = writer_class(root, path, n_cases, attrs, None, **extra)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    if not replace:
        writer.lock = lock
        return writer
    return Replacing(writer, location, lock, resumable=False)  # no resume for HDF5


def make_room(location: str, overwrite: bool) -> bool:
    """Whether there is a file to replace. An existing path is refused unless
    ``overwrite``; even then only an HDF5 file is replaced, never a folder or another
    kind of file that merely happens to be there."""
    if not os.path.lexists(location):
        return False
    if not overwrite:
        raise StoreError(location, "a store already exists here",
                         hint="pass --overwrite to replace it, or choose another --out")
    if not os.path.isfile(location) or not h5py.is_hdf5(location):
        raise StoreError(location, "exists and is not an HDF5 file; refusing to delete it",
                         hint="choose another --out")
    return True
