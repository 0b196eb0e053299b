"""Reading single chunks of local sharded arrays without zarr-python's per-call machinery.

A 2D slice of a volume, or one image of a stack, is one chunk of one shard. zarr-python
reads one in ~1.5 ms (a 512x512 int16 chunk, issue 18) of which Blosc's decode is
~0.42 ms; the rest is its async machinery -- a thread hop per call, and the shard index
read and checked again at every call. For the layout medimg-build writes (a local file
per shard, ``sharding_indexed`` with the index at the end as ``bytes`` + ``crc32c``,
chunks as ``bytes`` + ``blosc``), ``LocalShardArray`` reads each shard's index once, reads
the chunk with one ``pread`` and lets Blosc decode it, into the result itself when the
chunk fills a block of it (a 2D slice, a case of a stack); a selection over several
chunks is assembled chunk by chunk the same way. Chunks written with their crc32c
(``[bytes, blosc, crc32c]``, every store of this version) are checked as ``integrity.py``
checks them for zarr-python: the checksum, and a missing shard or chunk is damage.
Other codecs, reversed selections and remote stores go to zarr-python as before; the
values are the same (tests/test_chunk_reads.py). No thread is involved, so forked
DataLoader workers are safe.

Library read paths measured against it (issue 18, interleaved, same stores): zarr-python
with the ``zarrs`` codec pipeline takes 1.7-2x its time per slice (a thread hop per call)
and reads a ``CheckedStore`` through zarr-python's own pipeline, unchecked by it;
``tensorstore`` takes 1.24-1.5x its time per slice (and 0.65-1.1x case by case in a
scan), aborts a process forked after it was used (DataLoader workers fork) and reads a
missing shard as zeros.
"""

from __future__ import annotations

import os
from itertools import product
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
from numcodecs import blosc
from xarray.backends import BackendArray
from xarray.core import indexing
from zarr.storage import LocalStore

from .chunk_sizes import chunk_bound
from .integrity import (
    CRC32C_BYTES, NO_CHUNK, CheckedStore, Pinned, check_local_object, check_pinned,
    checked_index_at_end, checksummed_array, chunk_problem, codec_names, codecs_json,
    crc32c_ok, damaged, endian, index_entries, index_size, shard_index,
)

__all__ = ["CRC32C_BYTES", "NO_CHUNK", "LocalShardArray", "index_entries", "index_size",
           "local_shard_array", "with_local_shard_reads"]


def local_shard_array(array: zarr.Array) -> LocalShardArray | None:
    """A ``LocalShardArray`` over ``array`` when its storage is the layout above, else None."""
    store, location, pinned = array.store, None, None
    if isinstance(store, CheckedStore):
        store, location, pinned = store._store, store.location, store.pinned
    if not isinstance(store, LocalStore) or array.dtype.kind not in "biuf":
        return None
    layout = lean_layout(array.metadata)
    if layout is None:
        return None
    chunk_shape, byte_order, checksummed = layout
    return LocalShardArray(array, Path(store.root) / array.path, chunk_shape,
                           np.dtype(array.dtype).newbyteorder(byte_order),
                           location or str(store.root), checksummed, pinned)


def lean_layout(metadata) -> tuple[tuple[int, ...], str, bool] | None:
    """(the chunk shape inside a shard, the byte order of the stored values, whether each
    chunk ends with its crc32c) when ``metadata`` describes the layout of the module
    docstring, else None. Read from the codecs' JSON, against the spec's names and
    values."""
    codecs = codecs_json(metadata)
    if codec_names(codecs) != ["sharding_indexed"]:
        return None
    sharding = codecs[0]["configuration"]
    inner = sharding["codecs"]
    checksummed = codec_names(inner) == ["bytes", "blosc", "crc32c"]
    # The shard paths LocalShardArray builds are the default encoding's, c/<i>/<j>...
    # (v2's, same separator, has no c/): any other goes to zarr-python.
    if not (checksummed or codec_names(inner) == ["bytes", "blosc"]) \
            or not checked_index_at_end(sharding) \
            or metadata.chunk_key_encoding.to_dict() != {
                "name": "default", "configuration": {"separator": "/"}}:
        return None
    byte_order = ">" if endian(inner[0]) == "big" else "<"  # None: one-byte values
    return tuple(sharding["chunk_shape"]), byte_order, checksummed


class LocalShardArray(BackendArray):
    """An xarray backend array reading basic selections itself (module docstring).
    ``checksummed``: the chunks end with their crc32c and were all written, so a bad
    checksum, a missing shard and a missing chunk are each a StoreError naming
    ``location`` (the store), the array and the chunk; else (a store of an older
    version) only the shard index is checked and what is missing reads as fill."""

    def __init__(self, array: zarr.Array, folder: Path, chunk_shape: tuple[int, ...],
                 stored_dtype: np.dtype, location: str | None = None,
                 checksummed: bool = False, pinned: Pinned | None = None) -> None:
        self.array, self.folder = array, folder
        self.shape, self.dtype = array.shape, np.dtype(array.dtype)
        self.chunk_shape = tuple(chunk_shape)
        self.per_shard = tuple(s // c for s, c in zip(array.shards, self.chunk_shape))
        self.stored_dtype = stored_dtype
        self.location = location or str(folder)
        self.grid = checksummed_array(array.metadata) if checksummed else None
        # local_shard_array takes [bytes, blosc(, crc32c)] arrays only: an exact Blosc bound.
        self.bound = chunk_bound(array.metadata, 0)
        self.pinned = pinned  # the store's folder when it was opened (integrity.py)
        self._indexes: dict[tuple[int, ...], np.ndarray] = {}
        self._paths: dict[tuple[int, ...], str] = {}  # shard files, checked once each
        self.chunk_size = int(np.prod(self.chunk_shape))

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        if isinstance(key, indexing.BasicIndexer):  # all a read of ours is: no adapter
            return self._read(key.tuple)
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read)

    def _read(self, key: tuple) -> np.ndarray:
        key, flips = _forward(key, self.shape)
        plan = [self._along(k, size, extent)
                for k, size, extent in zip(key, self.chunk_shape, self.shape)]
        if any(parts is None for parts in plan):
            return self.array[key][flips]
        shape = [sum(_length(out) for _, _, out in parts)
                 for parts in plan if parts[0][2] is not None]
        result = np.empty(shape, dtype=self.dtype)
        for pieces in product(*plan):
            chunk = tuple(c for c, _, _ in pieces)
            within = tuple(w for _, w, _ in pieces)
            where = tuple(o for _, _, o in pieces if o is not None)
            self._chunk_into(chunk, within, result[(*where, ...)])  # a view, even 0-d
        return result[flips] if any(f.step for f in flips) else result

    @staticmethod
    def _along(k: int | slice, size: int, extent: int) -> list[tuple] | None:
        """How a basic selection along one axis (forward: see ``_forward``) splits over
        its chunks: (chunk, selection within the chunk, where it goes in the result --
        None for an integer, whose axis the result drops); None for an empty slice,
        left to zarr-python."""
        if isinstance(k, (int, np.integer)):
            k = int(k) + extent if k < 0 else int(k)
            return [(k // size, k % size, None)]
        start, stop, step = k.indices(extent)
        if stop <= start:  # empty
            return None
        if step == 1:  # the usual case, without NumPy: a slice per chunk it crosses
            parts = []
            for chunk in range(start // size, (stop - 1) // size + 1):
                origin = chunk * size
                first, last = max(start, origin), min(stop, origin + size)
                parts.append((chunk, slice(first - origin, last - origin, 1),
                              slice(first - start, last - start)))
            return parts
        taken = np.arange(start, stop, step)
        chunks = taken // size
        bounds = np.flatnonzero(np.diff(chunks)) + 1
        parts = []
        for first, last in zip(np.r_[0, bounds], np.r_[bounds, len(taken)]):
            chunk = int(chunks[first])
            origin = chunk * size
            within = slice(int(taken[first]) - origin, int(taken[last - 1]) - origin + 1, step)
            parts.append((chunk, within, slice(int(first), int(last))))
        return parts

    def _chunk_into(self, chunk: tuple[int, ...], within: tuple, out: np.ndarray) -> None:
        """``out[...] = chunk[within]``, decoding straight into ``out`` when it takes the
        whole chunk as one block of memory (a 2D slice, a case of a stack): no copy."""
        whole = out.size == self.chunk_size and out.flags.c_contiguous and all(
            w == slice(0, n, 1) if isinstance(w, slice) else n == 1
            for w, n in zip(within, self.chunk_shape))
        if whole and self.stored_dtype == self.dtype:
            self._chunk(chunk, out)
        else:
            out[...] = self._chunk(chunk)[within]

    def _chunk(self, chunk: tuple[int, ...], out: np.ndarray | None = None) -> np.ndarray:
        """The chunk's values (decoded into ``out`` if given: C-contiguous, of the chunk's
        size and stored type)."""
        shard = tuple(c // p for c, p in zip(chunk, self.per_shard))
        path = self._paths.get(shard)
        if path is None:  # once per shard: the file was checked when opened
            path = os.path.join(self.folder, "c", *map(str, shard))
            check_local_object(self.location, self.pinned, path)
            self._paths[shard] = path
        position = np.ravel_multi_index(tuple(c % p for c, p in zip(chunk, self.per_shard)),
                                        self.per_shard)
        try:
            with open(path, "rb", buffering=0) as handle:
                index = self._index(shard, handle)
                offset, nbytes = (int(v) for v in index[position])
                if offset == NO_CHUNK:  # outside the array, or (older stores) never written
                    return self._fill(out)
                data = os.pread(handle.fileno(), nbytes, offset)
        except FileNotFoundError:
            check_pinned(self.location, self.pinned)  # gone with a swapped-out store
            if self.grid is not None:
                raise damaged(self.location, self.array.path, f"shard {shard} is missing "
                              f"(no file {path})") from None
            return self._fill(out)  # an older store: a shard never written holds fill values
        check_pinned(self.location, self.pinned)  # after the read: it read the old store whole
        # The crc32c if any, then the size its Blosc header declares (what Blosc allocates,
        # and exactly the chunk's size: decoding into ``out`` fills it whole).
        problem = chunk_problem(data, self.bound, checksum=self.grid is not None)
        if problem:
            raise damaged(self.location, self.array.path, f"chunk {chunk} {problem}")
        if self.grid is not None:
            data = memoryview(data)[:-CRC32C_BYTES]
        try:
            if out is not None:
                blosc.decompress(data, out)
                return out
            pixels = np.frombuffer(blosc.decompress(data), dtype=self.stored_dtype)
            return pixels.astype(self.dtype, copy=False).reshape(self.chunk_shape)
        except (RuntimeError, ValueError) as error:  # Blosc's or a wrong decoded size
            raise damaged(self.location, self.array.path,
                          f"chunk {chunk} cannot be decoded ({error})") from None

    def _index(self, shard: tuple[int, ...], handle) -> np.ndarray:
        if shard not in self._indexes:
            size = index_size(int(np.prod(self.per_shard)))
            start = os.fstat(handle.fileno()).st_size - size
            if start < 0:
                raise damaged(self.location, self.array.path, f"shard {shard} is truncated")
            raw = os.pread(handle.fileno(), size, start)
            if self.grid is not None:  # checks the crc32c and that no chunk is missing
                entries = shard_index(self.location, self.array.path, self.grid, shard, raw)
            elif crc32c_ok(raw):
                entries = index_entries(raw)
            else:
                raise damaged(self.location, self.array.path,
                              f"shard {shard}: its chunk index fails its crc32c checksum")
            self._indexes[shard] = entries
        return self._indexes[shard]

    def _fill(self, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            return np.full(self.chunk_shape, self.array.fill_value, dtype=self.dtype)
        out[...] = self.array.fill_value
        return out


def _forward(key: tuple, shape: tuple[int, ...]) -> tuple[tuple, tuple]:
    """``key`` with every reversed slice replaced by the same elements in forward order,
    and the flips that put the result back in the asked order (zarr reads forward only)."""
    forward, flips = [], []
    for k, extent in zip(key, shape):
        if isinstance(k, slice):
            start, stop, step = k.indices(extent)
            taken = range(start, stop, step)
            if step < 0:  # empty: slice(0, 0), which zarr-python reads (no negative step)
                k = slice(taken[-1], taken[0] + 1, -step) if len(taken) else slice(0, 0)
            flips.append(slice(None, None, -1) if step < 0 else slice(None))
        forward.append(k)
    return tuple(forward), tuple(flips)


def _length(out: slice) -> int:
    return out.stop - out.start


def with_local_shard_reads(ds: xr.Dataset, group: zarr.Group) -> xr.Dataset:
    """``ds`` (opened lazily from ``group`` without Dask) with each eligible variable
    read through a ``LocalShardArray``."""
    arrays = set(group.array_keys())
    replaced = {}
    for name, variable in ds.data_vars.items():
        if name not in arrays:
            continue
        lean = local_shard_array(group[name])
        if lean is not None and lean.dtype == variable.dtype:  # not CF-decoded by xarray
            replaced[name] = xr.Variable(variable.dims, indexing.LazilyIndexedArray(lean),
                                         variable.attrs, variable.encoding)
    return ds.assign(replaced) if replaced else ds
