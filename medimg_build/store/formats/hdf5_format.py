"""HDF5: the same schema in one file (the mapping is in ``hdf5_backend``). Recognized
by its signature when read, by its ``.h5``/``.hdf5`` name when written; locked while
built, never resumed (a file killed mid-write is not safely reopened).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..journal import BuildLock
from ..manifest import ManifestError
from .base import StoreFormat, register_format
from .hdf5_backend import HDF5_SUFFIXES, array_info, file_errors, is_hdf5_file, open_hdf5
from .hdf5_dimensions import attach_netcdf_dimensions
from .hdf5_group import Hdf5Array, Hdf5Group
from .hdf5_manifest import hdf5_objects, verify_hdf5, write_hdf5_manifest
from .hdf5_reader import open_hdf5_store
from .hdf5_writer import create_hdf5_writer, make_room
from ...errors import StoreError


class Hdf5Format(StoreFormat):
    name, title, suffixes, resumable = "hdf5", "HDF5", HDF5_SUFFIXES, False
    writes_from_workers = False  # one HDF5 file has one writer: the build process

    def guess_can_open(self, location: str, storage_options: dict | None = None) -> bool:
        return is_hdf5_file(location, storage_options)

    @contextmanager
    def open(self, location: str, mode: str = "r", storage_options: dict | None = None
             ) -> Iterator[Hdf5Group]:
        """The root ``Hdf5Group`` (read-only; writers open the file in
        ``create_writer``)."""
        if mode != "r":
            raise ValueError(f"Hdf5Format.open reads only, not mode {mode!r}")
        with open_hdf5(location, storage_options) as handle:
            yield Hdf5Group(handle, location, "r")

    def open_reader(self, location: str, storage_options: dict | None = None):
        return open_hdf5_store(location, storage_options)

    def create_writer(self, location: str, new, overwrite: bool, journal: dict | None):
        lock = None if journal is None else BuildLock.beside(location)
        return create_hdf5_writer(self, location, new, overwrite, lock=lock)

    def make_room(self, location: str, overwrite: bool) -> bool:
        return make_room(location, overwrite)

    def array_info(self, array: Hdf5Array) -> dict[str, Any]:
        return array_info(array.h5)

    @contextmanager
    def writing_case(self, root: Hdf5Group) -> Iterator[None]:
        """A full disk named as the OSError it is; then the file flushed: an
        interrupted build leaves a readable file whose finished cases are whole (HDF5
        metadata on disk never lags the pixels by more than the case being written,
        its completion marker unset)."""
        with file_errors(root.h5.file.filename):
            yield
            root.h5.file.flush()

    def finish(self, root: Hdf5Group) -> None:
        """The content manifest, the netCDF dimension scales (not content: they label
        the manifest too) and the file closed."""
        with file_errors(root.h5.file.filename):
            write_hdf5_manifest(root.h5.file)
            attach_netcdf_dimensions(root.h5)
            root.h5.file.close()

    def manifest_objects(self, root: Hdf5Group) -> dict[str, str]:
        return hdf5_objects(root.h5.file)

    def verify(self, location: str, storage_options: dict | None = None) -> list:
        with open_hdf5(location, storage_options) as h5:
            return verify_hdf5(location, h5)

    def manifest_summary(self, location: str, storage_options: dict | None = None
                         ) -> dict[str, Any]:
        with open_hdf5(location, storage_options) as h5:
            return json.loads(h5.attrs["medimg"])["manifest"]

    def snapshot(self, location: str, out: str, storage_options: dict | None = None) -> int:
        raise ManifestError(location, "an HDF5 store is one file already",
                            hint="share the file as it is; `medimg-build verify` checks it")

    def refuse_resume(self, location: str) -> None:
        raise StoreError(location, "--resume works on Zarr stores only (an HDF5 file "
                         "killed mid-write is not safely reopened)",
                         hint="rebuild with --overwrite")


HDF5 = register_format(Hdf5Format())
