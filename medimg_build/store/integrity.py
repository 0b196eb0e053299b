"""What every read of a store checks, so that a damaged store never reads as wrong pixels.

A chunk written by medimg-build ends with the crc32c of its compressed bytes (the
``crc32c`` codec last in the chunk's codecs: ``[bytes, blosc, crc32c]`` inside each
shard), and every chunk of image and mask is written, an empty one too
(``schema.checksummed``, ``schema.WHOLE_ARRAY_CONFIG``). So, for such an array:

- a chunk whose bytes fail their crc32c, or a shard index failing its own, is damage;
- a shard that is missing, or a chunk that its shard's index says was never written
  (inside the array's bounds), is damage too -- zarr-python would read fill values.

Zarr reads go through ``CheckedStore``, a wrapper of the store that checks each object
zarr-python fetches before zarr decodes it: the index and chunk ranges of a partial
shard read, a whole shard, an unsharded chunk. It names the store, the array and the
chunk in a one-line StoreError; zarr's own crc32c check then runs on verified bytes.
The lean local reader (chunk_reads.py) and HDF5 (fletcher32, formats/hdf5_group.py) check
with the same helpers and the same message.

A local store is also pinned to the folder it opened (``pinned_folder``): ``build
--overwrite`` swaps a whole new folder in under the store's name (replace.py), and a
reader holding the old store's metadata must not go on reading the new store's chunks
(same shapes would read as plausible pixels of the wrong store). Each read checks,
after it, that the name still holds the folder opened: a read before the swap read the
old store whole, a read after it is an error. Arrays written without the checksum (a
store of an older version) are read as before.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from dataclasses import dataclass
from functools import lru_cache

import google_crc32c
import numpy as np
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.metadata import ArrayV3Metadata
from zarr.storage import LocalStore, WrapperStore

from ..errors import StoreError
from ..limits import current_max_voxels
from .chunk_sizes import ChunkBound, check_codecs, chunk_bound, size_problem

DAMAGED_HINT = "the store is damaged: verify it with medimg-build verify, rebuild or restore it"
INDEX_ENTRY_BYTES = 16  # (offset, nbytes) as two little-endian uint64 per chunk of a shard
NO_CHUNK = 2**64 - 1  # both fields of a chunk never written
CRC32C_BYTES = 4
# A zip member may inflate to this many times its compressed size, plus the allowance.
MAX_INFLATION = 100
INFLATION_ALLOWANCE = 2**20
CHUNK_DIR = "/c/"  # zarr v3's default chunk keys: <array>/c/<i>/<j>/...


def index_size(n_chunks: int) -> int:
    """Bytes of the index ending a shard of ``n_chunks`` chunks: (offset, nbytes) per
    chunk, then the crc32c of those."""
    return n_chunks * INDEX_ENTRY_BYTES + CRC32C_BYTES


def index_entries(index) -> np.ndarray:
    """The (offset, nbytes) rows of a shard index, in the shard's chunk order (C order);
    ``NO_CHUNK`` marks a chunk never written. The checksum is not checked here."""
    return np.frombuffer(index, dtype="<u8", count=(len(index) - CRC32C_BYTES) // 8
                         ).reshape(-1, 2)


def damaged(location: str, array: str, problem: str) -> StoreError:
    """The one-line error of every failed check: store, array, chunk and what failed."""
    return StoreError(location, f"{array} {problem}", hint=DAMAGED_HINT)


def crc32c_ok(data) -> bool:
    """Whether ``data`` (bytes-like) ends with the crc32c of the rest."""
    view = np.frombuffer(data, dtype=np.uint8)  # google_crc32c takes arrays, not views
    if len(view) < CRC32C_BYTES:
        return False
    stored = int.from_bytes(view[-CRC32C_BYTES:].tobytes(), "little")
    return google_crc32c.value(view[:-CRC32C_BYTES]) == stored


@dataclass(frozen=True)
class ChecksummedArray:
    """The chunk grid of an array whose chunks carry a crc32c. ``per_shard`` is None
    for an unsharded array (each object is one chunk, and a missing one reads as fill
    values by design: the stack's per-case arrays of a shard never written)."""

    grid: tuple[int, ...]  # chunks along each axis
    per_shard: tuple[int, ...] | None

    @property
    def index_bytes(self) -> int:
        return index_size(int(np.prod(self.per_shard)))

    def chunk_of(self, shard: tuple[int, ...], position: int) -> tuple[int, ...]:
        """The array chunk at ``position`` (C order) of the shard's index."""
        local = np.unravel_index(position, self.per_shard)
        return tuple(int(s * p + i) for s, p, i in zip(shard, self.per_shard, local))

    def in_bounds(self, chunk: tuple[int, ...]) -> bool:
        return all(c < n for c, n in zip(chunk, self.grid))


def codecs_json(metadata) -> list[dict]:
    """The array's codecs as the spec writes them in zarr.json (names, configurations
    with their string values): compared with the spec's own constants, they need none
    of zarr-python's enums (``ShardingCodecIndexLocation``, ``Endian``), which zarr 3.3
    deprecates."""
    return [codec.to_dict() for codec in metadata.codecs]


def codec_names(codecs: list[dict]) -> list[str]:
    return [codec["name"] for codec in codecs]


def endian(codec: dict) -> str | None:
    """A ``bytes`` codec's endianness; None for one-byte values (the spec omits it)."""
    return (codec.get("configuration") or {}).get("endian")


def checked_index_at_end(sharding: dict) -> bool:
    """Whether a ``sharding_indexed`` configuration keeps its index where ``index_entries``
    reads it: at the end of the shard (the spec's default), as little-endian ``bytes``
    then ``crc32c``."""
    index = sharding.get("index_codecs") or []
    return (sharding.get("index_location", "end") == "end"
            and codec_names(index) == ["bytes", "crc32c"] and endian(index[0]) == "little")


def checksummed_array(metadata) -> ChecksummedArray | None:
    """What ``metadata`` (zarr v3 array metadata) says about checking its chunks, or None
    when they carry no crc32c (an older store) or are laid out otherwise."""
    if not isinstance(metadata, ArrayV3Metadata):
        return None
    codecs = codecs_json(metadata)
    outer = tuple(metadata.chunk_grid.chunk_shape)
    if codec_names(codecs) == ["sharding_indexed"]:
        sharding = codecs[0]["configuration"]
        if not (codec_names(sharding["codecs"])[-1:] == ["crc32c"]
                and checked_index_at_end(sharding)):
            return None
        inner = tuple(sharding["chunk_shape"])
        grid = tuple(-(-n // c) for n, c in zip(metadata.shape, inner))
        return ChecksummedArray(grid, tuple(o // i for o, i in zip(outer, inner)))
    if codec_names(codecs)[-1:] == ["crc32c"]:
        return ChecksummedArray(tuple(-(-n // c) for n, c in zip(metadata.shape, outer)), None)
    return None


def chunk_key(key: str) -> tuple[str, tuple[int, ...]] | None:
    """(array path, grid coordinates) of a chunk key, or None for any other key."""
    head, sep, tail = key.rpartition(CHUNK_DIR)
    if key.startswith(CHUNK_DIR[1:]) and not sep:  # an array at the store's root path
        head, tail = "", key[len(CHUNK_DIR) - 1:]
    parts = tail.split("/")
    if not parts or not all(p.isdigit() for p in parts):
        return None
    return head, tuple(int(p) for p in parts)


def shard_index(location: str, array: str, layout: ChecksummedArray,
                shard: tuple[int, ...], raw) -> np.ndarray:
    """The (offset, nbytes) rows of a shard's index ``raw`` (its last bytes), after
    checking its crc32c and that every chunk inside the array's bounds was written."""
    if len(raw) != layout.index_bytes or not crc32c_ok(raw):
        raise damaged(location, array, f"shard {shard}: its chunk index fails its crc32c "
                      "checksum")
    entries = index_entries(raw)
    for position in np.flatnonzero(entries[:, 0] == NO_CHUNK):
        chunk = layout.chunk_of(shard, int(position))
        if layout.in_bounds(chunk):
            raise damaged(location, array, f"chunk {chunk} is missing from its shard {shard}")
    return entries


def check_chunk(location: str, array: str, chunk: tuple[int, ...], data,
                bound: ChunkBound | None = None) -> None:
    problem = chunk_problem(data, bound)
    if problem:
        raise damaged(location, array, f"chunk {chunk} {problem}")


def chunk_problem(data, bound: ChunkBound | None = None, checksum: bool = True
                  ) -> str | None:
    """What is wrong with a chunk's bytes: its crc32c (unless ``checksum`` is False: a
    chunk without one), then the decoded size its compressor's header declares
    (``chunk_sizes.size_problem``)."""
    if checksum and not crc32c_ok(data):
        return "fails its crc32c checksum"
    return None if bound is None else size_problem(bound, data)


def check_shard(location: str, array: str, layout: ChecksummedArray,
                shard: tuple[int, ...], data, bound: ChunkBound | None = None) -> None:
    """A whole shard: its index, then every chunk it lists."""
    view = np.frombuffer(data, dtype=np.uint8)
    if len(view) < layout.index_bytes:
        raise damaged(location, array, f"shard {shard} is truncated")
    entries = shard_index(location, array, layout, shard, view[-layout.index_bytes:])
    for position, (offset, nbytes) in enumerate(entries.tolist()):
        if offset == NO_CHUNK:
            continue
        chunk = layout.chunk_of(shard, position)
        if offset + nbytes > len(view) - layout.index_bytes:
            raise damaged(location, array, f"chunk {chunk} lies outside its shard {shard}")
        check_chunk(location, array, chunk, view[offset:offset + nbytes], bound)


Pinned = tuple[str, tuple[int, int]]  # a local store's folder and its (device, inode)


def pinned_folder(store) -> Pinned | None:
    """The folder of a local store with its identity now; None for other stores (an
    object store has no rename, so --overwrite never swaps one; a zip is read through
    its open file)."""
    if not isinstance(store, LocalStore):
        return None
    folder = str(store.root)
    try:
        status = os.stat(folder)
    except OSError:
        return None  # nothing there: opening the store fails on its own
    return folder, (status.st_dev, status.st_ino)


def check_pinned(location: str, pinned: Pinned | None) -> None:
    """StoreError if the store's name no longer holds the folder that was opened."""
    if pinned is None:
        return
    folder, identity = pinned
    try:
        status = os.stat(folder)
        now = (status.st_dev, status.st_ino)
    except OSError:
        now = None
    if now != identity:
        raise StoreError(location, "was replaced or removed (by another build's "
                         "--overwrite?) while it was open: its metadata no longer "
                         "describes the chunks under its name", hint="open the store again")


def check_local_object(location: str, pinned: Pinned | None, key: str) -> None:
    """StoreError unless the object ``key`` (or absolute path) of a local store, links
    followed, is a regular file inside the store's folder (a missing one is left to the
    reader).

    A store from another lab may hold symbolic links: one to ``/dev/zero`` or a pipe
    would read without end, one to a file of the reader's machine would read its bytes
    as pixels or table cells. medimg-build writes no links; a link that stays inside
    the store (a copy made with hard or soft links) still reads."""
    if pinned is None:
        return
    path = os.path.join(pinned[0], key)
    try:
        status = os.lstat(path)
        if stat.S_ISLNK(status.st_mode):
            path = os.path.realpath(path)
            status = os.stat(path)
        else:  # one lstat per read; folders are resolved once (a store has few)
            path = os.path.join(_real_path(os.path.dirname(path)), os.path.basename(path))
    except OSError:
        return
    folder = _real_path(pinned[0])
    if not stat.S_ISREG(status.st_mode):
        problem = "is not a regular file"
    elif os.path.commonpath([path, folder]) != folder:
        problem = f"leads outside the store, to {path}"
    else:
        return
    raise StoreError(location, f"{key} {problem}", hint="a store holds only its own "
                     "regular files: this one was altered, do not read it")


def check_snapshot_members(location: str, archive: zipfile.ZipFile) -> None:
    """StoreError if a member of a zip declares more inflated bytes than compression
    can plausibly explain. Snapshots store their members (snapshot.py), but any zip of a
    store opens; zarr reads a compressed member whole, up to the size its header
    declares, so a few MB of zeros could inflate to gigabytes. Blosc-compressed chunks
    deflate by a few percent at most, and zarr.json by 5-20 times."""
    for info in archive.infolist():
        if info.file_size > MAX_INFLATION * info.compress_size + INFLATION_ALLOWANCE:
            raise StoreError(location, f"member {info.filename[:200]} inflates "
                             f"{info.compress_size:,} bytes to {info.file_size:,} (more than "
                             f"{MAX_INFLATION} times: a zip bomb)", hint="this zip was "
                             "altered; make one with medimg-build snapshot")


@lru_cache(maxsize=4096)
def _real_path(folder: str) -> str:
    return os.path.realpath(folder)


class CheckedStore(WrapperStore):
    """A read-only Zarr store that checks every chunk object before zarr-python decodes
    it (module docstring). ``watch(root)`` lets it find array metadata in the root's
    consolidated metadata; without it (after pickling, on a Dask worker) it reads the
    array's ``zarr.json`` once."""

    def __init__(self, store, location: str) -> None:
        super().__init__(store)
        self.location = location
        # Before the root metadata is read: a swap in between is caught, never missed.
        self.pinned = pinned_folder(store)
        self._root = None  # the AsyncGroup whose (consolidated) metadata describes arrays
        self._arrays: dict[str, ChecksummedArray | None] = {}
        self._bounds: dict[str, ChunkBound | None] = {}

    def watch(self, root) -> None:
        self._root = root._async_group if hasattr(root, "_async_group") else root

    def _with_store(self, store) -> CheckedStore:
        other = type(self)(store, self.location)
        other._root, other.pinned = self._root, self.pinned
        return other

    def __getstate__(self) -> dict:
        # The folder opened, not the one a worker finds when it unpickles the store.
        return {"store": self._store, "location": self.location, "pinned": self.pinned}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["store"], state["location"])
        self.pinned = state["pinned"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CheckedStore) and self._store == other._store

    def __hash__(self) -> int:
        return hash((type(self), self.location))

    async def _layout(self, array: str) -> ChecksummedArray | None:
        if array not in self._arrays:
            metadata = await self._metadata(array)
            check_codecs(self.location, array, metadata)
            self._arrays[array] = checksummed_array(metadata)
            self._bounds[array] = chunk_bound(metadata, current_max_voxels())
        return self._arrays[array]

    async def _metadata(self, array: str):
        if self._root is not None:
            try:
                node = await self._root.getitem(array)
                return node.metadata
            except (KeyError, ValueError):
                pass
        raw = await self._store.get(f"{array}/zarr.json" if array else "zarr.json",
                                    default_buffer_prototype())
        if raw is None:
            return None
        document = json.loads(raw.to_bytes())
        return ArrayV3Metadata.from_dict(document) \
            if document.get("node_type") == "array" else None

    async def get(self, key, prototype, byte_range=None):
        parsed = chunk_key(key)
        check_local_object(self.location, self.pinned, key)
        try:
            value = await self._store.get(key, prototype, byte_range)
        except zipfile.BadZipFile as error:  # a snapshot's member fails the zip's CRC-32
            array, what = parsed if parsed else (key, None)
            raise damaged(self.location, array, f"shard {what} fails the zip's check "
                          f"({error})" if what else f"fails the zip's check ({error})"
                          ) from None
        check_pinned(self.location, self.pinned)
        if parsed is None:
            return value
        array, coords = parsed
        layout = await self._layout(array)
        bound = self._bounds[array]
        if layout is not None:
            await self._check(array, coords, layout, bound, key, value, byte_range)
        elif bound is not None and value is not None and (
                isinstance(byte_range, RangeByteRequest) if bound.sharded else byte_range is None):
            # One chunk without a crc32c: still the size its compressor will allocate.
            problem = size_problem(bound, value.as_numpy_array())
            if problem:
                raise damaged(self.location, array, f"chunk {coords} {problem}")
        return value

    async def _check(self, array: str, coords: tuple[int, ...], layout: ChecksummedArray,
                     bound: ChunkBound | None, key: str, value, byte_range) -> None:
        if layout.per_shard is None:  # one object, one chunk
            if value is not None and byte_range is None:
                check_chunk(self.location, array, coords, value.as_numpy_array(), bound)
            return
        if value is None:
            raise damaged(self.location, array, f"shard {coords} is missing (no object "
                          f"{key!r})")
        data = value.as_numpy_array()
        if byte_range is None:
            check_shard(self.location, array, layout, coords, data, bound)
        elif isinstance(byte_range, SuffixByteRequest):  # zarr reads the index first
            shard_index(self.location, array, layout, coords, data)
        elif isinstance(byte_range, RangeByteRequest):
            problem = chunk_problem(data, bound)
            if problem:
                chunk = await self._chunk_at(array, coords, layout, key, byte_range.start)
                raise damaged(self.location, array, f"chunk {chunk} {problem}")

    async def _chunk_at(self, array: str, shard: tuple[int, ...], layout: ChecksummedArray,
                        key: str, offset: int):
        """The chunk stored at ``offset`` of a shard, to name it (an error path only)."""
        raw = await self._store.get(key, default_buffer_prototype(),
                                    SuffixByteRequest(layout.index_bytes))
        entries = shard_index(self.location, array, layout, shard, raw.as_numpy_array())
        positions = np.flatnonzero(entries[:, 0] == offset)
        return layout.chunk_of(shard, int(positions[0])) if len(positions) else \
            f"at byte {offset} of shard {shard}"
