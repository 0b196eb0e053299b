"""The store schema in one HDF5 file: how Zarr notions map onto h5py.

The writers (stack.py, volumes.py, classification.py, table.py), the readers, validate and
the manifest talk to a Zarr group through a handful of calls: ``create_array``,
``create_group``, ``attrs``, ``arrays()``, ``groups()``, ``group[path]``, and reads and
slice assignment on the arrays they get back. ``hdf5_group.Hdf5Group`` offers exactly
those calls over an h5py group, so the layout logic (case bookkeeping, shard batching,
labels, table, completion markers) exists once and the two formats cannot drift apart.

Mapping (the names, groups and dims are the Zarr store's, see ``medimg_build.store``):

- an array is a dataset of the same path; its dims are the dataset attribute
  ``dimension_names`` (array of str); every labelled axis also has a netCDF-4
  dimension scale attached, so that xarray's h5netcdf engine and HDF5 tools show the
  axes (``hdf5_dimensions.py``);
- every attribute medimg writes is JSON text (HDF5 attributes cannot hold nested
  dicts): ``json.loads(f.attrs["medimg"])`` gives the root ``medimg`` dict with h5py
  alone; ``dimension_names`` and the HDF5 dimension-scale attributes are the exceptions;
- strings are variable-length UTF-8 (``h5py.string_dtype()``);
- chunks are the Zarr chunks (one 2D slice of image and mask); HDF5 has no shards and
  needs none: the whole store is one file;
- compression is deflate (gzip) with the byte-shuffle filter, and every chunk carries
  HDF5's fletcher32 checksum: all built into every HDF5 library, so any h5py reads
  (and checks) the file without plugins.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import h5py
import numpy as np

from ...errors import StoreError, one_line

HDF5_SUFFIXES = (".h5", ".hdf5")
SIGNATURE = b"\x89HDF\r\n\x1a\n"
DIMENSION_NAMES = "dimension_names"
# Attributes HDF5 itself writes for dimension scales; never JSON, never medimg's.
SCALE_ATTRS = frozenset({DIMENSION_NAMES, "CLASS", "NAME", "DIMENSION_LIST",
                         "REFERENCE_LIST", "_Netcdf4Dimid"})
STRING = h5py.string_dtype("utf-8")

# Level 4 measured (gzip_bench in the commit message; shuffle on, one-slice chunks) on
# the TotalSegmentator CT (int16), its MR (float32) and a 2373^2 uint8 X-ray:
#   CT ratio 1.69 / 1.75 / 1.78 / 1.79 at levels 1 / 4 / 6 / 9, writing at
#   113 / 95 / 54 / 10 MB/s; MR 2.68 / 2.83 / 2.91 / 2.95 at 107 / 84 / 36 / 5 MB/s;
#   the X-ray ~1.7 at every level; reading ~270 MB/s at every level.
# Level 4 keeps 98% of level 9's ratio at twice level 6's write speed. Shuffle adds
# 10-20% ratio on int16/float32 (1.52 -> 1.75 on CT) and costs nothing on uint8.
DEFAULT_COMPRESSION: dict[str, Any] = {"compression": "gzip", "compression_opts": 4,
                                       "shuffle": True}
# HDF5 1.10's file format, exactly: every h5py 3.x wheel reads it, and unlike the
# earliest format its metadata (superblock, object headers, chunk indexes) carries
# checksums, so a damaged header is refused rather than read as other attributes
# or other chunks (the chunks themselves carry fletcher32).
LIBVER = ("v110", "v110")


def has_signature(head: bytes) -> bool:
    return head[:8] == SIGNATURE


def is_hdf5_file(location: str, storage_options: dict | None = None) -> bool:
    """True when ``location`` is an HDF5 file, by its signature (not its suffix).

    The signature is at byte 0, or at 512, 1024, ... when the file has a user block
    (``signature_offsets``): h5py.is_hdf5 looks at all of those in a local file, and
    so does this in a file by URL."""
    if "://" not in location:
        return os.path.isfile(location) and bool(h5py.is_hdf5(location))
    import fsspec

    fs, path = fsspec.core.url_to_fs(location, **(storage_options or {}))
    try:
        if not fs.isfile(path):
            return False
        with fs.open(path, "rb") as handle:
            for offset in signature_offsets(handle.seek(0, os.SEEK_END)):
                handle.seek(offset)
                if has_signature(handle.read(8)):
                    return True
        return False
    except (OSError, ValueError):
        return False


def signature_offsets(size: int) -> Iterator[int]:
    """Where the signature may be in a file of ``size`` bytes: 0, then after a user
    block, whose size is a power of two from 512 (the HDF5 file format spec, "Format
    Signature"; the library and h5py.is_hdf5 look at the same places). Most are in the
    first block an fsspec file reads."""
    offset = 0
    while offset + len(SIGNATURE) <= size:
        yield offset
        offset = 512 if offset == 0 else offset * 2


def open_error(location: str, err: OSError) -> StoreError:
    """Why h5py could not open ``location``, as one line. An HDF5 file in our format
    (1.10) is marked open for writing until its writer closes it: a build still
    running, or killed."""
    if "already open for write" in str(err):
        return StoreError(location, "the build that writes this store has not finished "
                          "(HDF5 marks the file open for writing until its build closes it)",
                          hint="wait for it to end, or if it was killed, run it again with "
                               "--overwrite (HDF5 builds do not resume)")
    return StoreError(location, f"cannot open the HDF5 file ({err})")


def open_file(location: str, storage_options: dict | None = None):
    """(the HDF5 file at a path or URL, read-only; the fsspec file it is read through,
    or None): the one way this package opens an HDF5 file to read it."""
    raw = None
    try:
        if "://" in location:
            import fsspec  # remote: h5py reads through a file-like object, range by range

            fs, path = fsspec.core.url_to_fs(location, **(storage_options or {}))
            raw = fs.open(path, "rb")
        return h5py.File(raw if raw is not None else location, "r"), raw
    except OSError as err:
        if raw is not None:
            raw.close()
        raise open_error(location, err) from None


@contextmanager
def open_hdf5(location: str, storage_options: dict | None = None) -> Iterator[h5py.File]:
    """``open_file``, closed on exit."""
    handle, raw = open_file(location, storage_options)
    try:
        yield handle
    finally:
        handle.close()
        if raw is not None:
            raw.close()


@contextmanager
def file_errors(path: str) -> Iterator[None]:
    """HDF5 reports a failed write (a full disk) as a RuntimeError or an OSError whose
    text alone carries the system's ``errno = N``: raised again as the OSError it is,
    naming the file, so that callers handle it as any other write error."""
    try:
        yield
    except (RuntimeError, OSError) as err:
        code = re.search(r"errno = (\d+)", str(err))
        if code is None or (isinstance(err, OSError) and err.filename):
            raise
        raise OSError(int(code[1]), os.strerror(int(code[1])), path) from err


def is_string(dtype) -> bool:
    return h5py.check_string_dtype(dtype) is not None


def dimension_names(dataset: h5py.Dataset) -> tuple[str, ...] | None:
    """The dataset's ``dimension_names``; None when it has none (no attribute, or the
    empty one writers store for "none"), as Zarr's metadata says None. Anything but one
    name per axis is a StoreError, as Zarr refuses such metadata (a str would otherwise
    name one axis per letter)."""
    names = dataset.attrs.get(DIMENSION_NAMES)
    if names is None or (isinstance(names, np.ndarray) and names.size == 0):
        return None
    if not (isinstance(names, np.ndarray) and names.shape == (dataset.ndim,)
            and all(isinstance(n, (str, bytes)) for n in names)):
        raise StoreError(dataset.file.filename, f"{dataset.name.lstrip('/')}: "
                         f"dimension_names {one_line(repr(names), 60)} is not one name per axis "
                         f"(it has {dataset.ndim})", hint="the file was altered: do not read it")
    return tuple(n.decode() if isinstance(n, bytes) else n for n in names)


def dims_of(dataset: h5py.Dataset) -> tuple[str, ...]:
    """The dataset's dims, ``dim_0``... where it names none (as xarray does)."""
    return dimension_names(dataset) or tuple(f"dim_{i}" for i in range(dataset.ndim))


def codecs_of(dataset: h5py.Dataset) -> list[dict[str, Any]]:
    """The filter pipeline in Zarr's codec-description style, for the root attrs."""
    codecs = []
    if dataset.shuffle:
        codecs.append({"name": "shuffle", "configuration": {"filter": "hdf5"}})
    if dataset.compression:
        codecs.append({"name": dataset.compression,
                       "configuration": {"level": dataset.compression_opts}})
    if dataset.fletcher32:  # last in HDF5's pipeline, as crc32c is in Zarr's
        codecs.append({"name": "fletcher32"})
    return codecs


def array_info(dataset: h5py.Dataset) -> dict[str, Any]:
    """What the root attributes record about one dataset (as ``schema.array_info``)."""
    dtype = "string" if is_string(dataset.dtype) else str(dataset.dtype)
    return {
        "dims": list(dims_of(dataset)),
        "dtype": dtype,
        "shape": [int(n) for n in dataset.shape],
        "chunks": [int(n) for n in (dataset.chunks or dataset.shape)],
        "shards": None,
        "codecs": codecs_of(dataset),
    }
