"""Snapshots: a finished Zarr store with a manifest packed into one zip that verifies
(``opening.snapshot_store``; the manifest is ``manifest.py``'s).

A snapshot is a zip of every object (lock and journal excluded), entries sorted, stored
uncompressed (chunks are compressed already; a stored entry is also what lets Zarr's
ZipStore read one chunk without inflating others) and with fixed timestamps and
permissions, so that equal stores give byte-identical snapshots.
"""

from __future__ import annotations

import os
import zipfile

from .manifest import ManifestError, all_keys, read_object, verify_zarr
from .reader import open_zarr_store, zarr_store

ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: no build time in a snapshot


def snapshot_zarr(location: str, out: str, storage_options: dict | None = None) -> int:
    """Pack a finished Zarr store with a manifest into the zip ``out`` (a new ``.zip``
    path, ``opening.snapshot_store`` checks it); returns the number of entries."""
    medimg_store = open_zarr_store(location, storage_options)  # refuses an unfinished store
    if "manifest" not in medimg_store.attrs:
        raise ManifestError(location, "has no content manifest",
                            hint="built by an older medimg-build, or an HDF5 file; rebuild it")
    store = zarr_store(location, storage_options)
    keys = all_keys(store)
    # Never a truncated or unverified zip under the final name (".zip": verify reads it).
    partial = out[:-len(".zip")] + ".partial.zip"
    try:
        _write_zip(partial, store, keys)
        problems = verify_zarr(partial)  # the hash it will be shared by must hold
        if problems:
            raise ManifestError(location, f"does not verify, so no snapshot was written "
                                f"({len(problems)} problem(s), the first: {problems[0]})",
                                hint="`medimg-build verify` lists them; restore the store "
                                     "or rebuild it")
        os.replace(partial, out)
    except BaseException as err:
        if os.path.exists(partial):  # a full disk: give the space back
            os.remove(partial)
        if isinstance(err, OSError) and err.filename == partial:
            raise OSError(err.errno, err.strerror, out) from err  # the name the user gave
        raise
    return len(keys)


def _write_zip(path: str, store, keys: list[str]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key in keys:
            info = zipfile.ZipInfo(key, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # Unix, on every OS: the header bytes must not vary
            info.external_attr = 0o644 << 16
            zf.writestr(info, read_object(store, key) or b"")
