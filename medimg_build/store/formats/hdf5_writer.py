"""Creating an HDF5 store: the file, its root ``Hdf5Group`` and the layout's writer
(the same writer as Zarr's; what HDF5 does differently while writing is
``Hdf5Format``'s ``writing_case`` and ``finish``). h5py serializes every call on one
global lock, so threads calling ``write_case`` are safe, but processes are not: the one
process that owns the writer writes (``Hdf5Format.writes_from_workers`` is False).
"""

from __future__ import annotations

import os

import h5py

from ...errors import StoreError
from .hdf5_backend import DEFAULT_COMPRESSION, LIBVER
from .hdf5_group import Hdf5Group
from ..journal import BuildLock
from ..replace import Replacing, rebuild_location, remove_leftovers


def create_hdf5_writer(store_format, location: str, new, overwrite: bool,
                       lock: BuildLock | None = None):
    """``Hdf5Format.create_writer`` (``new``, a ``writer.NewStore``, is checked by
    ``create_store``).

    ``new.compressor`` is a dict of h5py ``create_dataset`` filter arguments (e.g.
    ``{"compression": "gzip", "compression_opts": 9, "shuffle": True}``, or an
    ``hdf5plugin`` filter's ``**kwargs``); default: gzip level 4 with shuffle.

    ``lock`` (``BuildLock.beside`` the file) is held until close or abort. An existing
    file is replaced as a Zarr store is (``replace.py``): the new one is written beside
    it and renamed over it by a close that built every case."""
    compressor = new.compressor
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
        root.attrs["medimg"] = new.initial()
        # The writer's own compressor is None: the group gives every dataset its filters.
        writer = new.layout.writer(store_format, root, path, new.n_cases, new.attrs, None,
                                   new.options)
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
