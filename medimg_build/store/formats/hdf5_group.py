"""``Hdf5Group``: an h5py group with the ``zarr.Group`` API the store code uses, the one
adapter through which writers, readers, validate and the manifest see an HDF5 file.

What it mirrors: ``create_array``, ``create_group``, ``attrs`` (a mapping, JSON-encoded
on disk, see ``hdf5_backend``), ``group[path]``, ``name in group``, ``arrays()``,
``groups()``, ``array_keys()``, ``members(max_depth=None)``; an array (``Hdf5Array``)
has ``shape``, ``ndim``, ``dtype`` (``StringDType`` for strings, as Zarr's),
``chunks`` (the whole array when contiguous), ``shards`` (None),
``metadata.dimension_names``, ``attrs``, ``array[key]`` (strings as ``str``) and
``array[key] = values``.

Opened for reading (``mode="r"``), every node reached is checked to keep its bytes in
its own file (``own_node``) and h5py's errors on a damaged file are StoreErrors naming
the object (``checked``); a failed chunk read names the chunk (``read_values``). A
writer's group (``mode="w"``) lets errors through as they are: HDF5 reports a full
disk from any call, and ``Hdf5Format.writing_case`` names it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from ...errors import StoreError
from ..integrity import damaged
from .hdf5_backend import DIMENSION_NAMES, SCALE_ATTRS, STRING, dimension_names, is_string
from .hdf5_dimensions import is_dimension_only

STRINGS = np.dtypes.StringDType()  # Zarr's dtype for string arrays


def encode_attr(value: Any) -> str:
    return json.dumps(value)


def decode_attr(value: Any) -> Any:
    """A stored attribute as the Python value medimg wrote: JSON text decoded; text
    that is not JSON is kept as text (a hand-edited file is reported on, not crashed
    on), bytes are read as UTF-8 first."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def decode_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    """A node's medimg attributes as Python values, without HDF5's dimension-scale
    bookkeeping (``SCALE_ATTRS``)."""
    return {key: decode_attr(attrs[key]) for key in attrs if key not in SCALE_ATTRS}


class Hdf5Attrs(MutableMapping):
    """``node.attrs`` as Zarr's: Python values in, Python values out."""

    def __init__(self, node: Hdf5Group | Hdf5Array) -> None:
        self._node = node

    def __getitem__(self, key: str) -> Any:
        if key in SCALE_ATTRS:
            raise KeyError(key)
        with self._node._checked():
            return decode_attr(self._node.h5.attrs[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self._node.h5.attrs[key] = encode_attr(value)

    def __delitem__(self, key: str) -> None:
        del self._node.h5.attrs[key]

    def __iter__(self) -> Iterator[str]:
        with self._node._checked():
            keys = [key for key in self._node.h5.attrs if key not in SCALE_ATTRS]
        return iter(keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class Hdf5ArrayMetadata:
    dimension_names: tuple[str, ...] | None


class _Node:
    h5: Any
    location: str
    mode: str

    @property
    def path(self) -> str:
        return self.h5.name.strip("/")

    def _checked(self, name: str = ""):
        if self.mode != "r":
            return nullcontext()
        path = f"{self.path}/{name}".strip("/") or "the root group"
        return checked(self.location, path)

    @property
    def attrs(self) -> Hdf5Attrs:
        return Hdf5Attrs(self)


class Hdf5Array(_Node):
    """One dataset, as a ``zarr.Array`` is read and written."""

    def __init__(self, dataset: h5py.Dataset, location: str, mode: str) -> None:
        self.h5, self.location, self.mode = dataset, location, mode
        self.shape: tuple[int, ...] = tuple(int(n) for n in dataset.shape)
        self.ndim = len(self.shape)
        self.dtype = STRINGS if is_string(dataset.dtype) else dataset.dtype
        self.chunks: tuple[int, ...] = tuple(dataset.chunks or dataset.shape)
        self.shards = None
        self.metadata = Hdf5ArrayMetadata(dimension_names(dataset))

    def __getitem__(self, key: Any) -> np.ndarray:
        return read_values(self.h5, key, self.location)

    def __setitem__(self, key: Any, values: Any) -> None:
        self.h5[key] = values


class Hdf5Group(_Node):
    """One group; ``compression`` (h5py filter arguments) is given to every chunked
    dataset ``create_array`` makes."""

    def __init__(self, group: h5py.Group, location: str, mode: str = "r",
                 compression: dict[str, Any] | None = None, source: Any = None) -> None:
        self.h5, self.location, self.mode = group, location, mode
        self.compression = compression or {}
        self.source = source  # the reader's per-process file (hdf5_reader.H5Source)

    def _wrap(self, node, name: str) -> Hdf5Group | Hdf5Array:
        node = own_node(node, self.h5, name, self.location)
        if is_dimension_only(node):  # hidden from the listing: never read as an array
            path = f"{self.path}/{name}".strip("/")
            raise StoreError(self.location, f"{path} is a netCDF dimension (no values), "
                             "not an array of the store",
                             hint="the file was altered: do not read it")
        if isinstance(node, h5py.Group):
            return Hdf5Group(node, self.location, self.mode, self.compression, self.source)
        return Hdf5Array(node, self.location, self.mode)

    def __contains__(self, path: str) -> bool:
        with self._checked(path):
            return path in self.h5

    def __getitem__(self, path: str) -> Hdf5Group | Hdf5Array:
        with self._checked(path):
            return self._wrap(self.h5[path], path)

    def __delitem__(self, path: str) -> None:
        del self.h5[path]

    def _items(self, kind: type) -> list[tuple[str, Any]]:
        with self._checked():
            names = [name for name, node in self.h5.items()
                     if isinstance(node, kind) and not is_dimension_only(node)]
        return [(name, self[name]) for name in names]

    def arrays(self) -> Iterator[tuple[str, Hdf5Array]]:
        return iter(self._items(h5py.Dataset))

    def groups(self) -> Iterator[tuple[str, Hdf5Group]]:
        return iter(self._items(h5py.Group))

    def array_keys(self) -> Iterator[str]:
        return iter([name for name, _ in self._items(h5py.Dataset)])

    def members(self, max_depth: int | None = 0) -> tuple[tuple[str, Any], ...]:
        """Every group and array below (``max_depth=None``) or directly in this group,
        by path relative to it, depth first in name order (as ``h5py``'s visit)."""
        with self._checked():
            names = [name for name, node in self.h5.items() if not is_dimension_only(node)]
        found: list[tuple[str, Any]] = []
        for name in names:
            node = self[name]
            found.append((name, node))
            if isinstance(node, Hdf5Group) and (max_depth is None or max_depth > 0):
                deeper = None if max_depth is None else max_depth - 1
                found.extend((f"{name}/{path}", child)
                             for path, child in node.members(deeper))
        return tuple(found)

    def create_group(self, name: str, overwrite: bool = False,
                     attributes: dict[str, Any] | None = None) -> Hdf5Group:
        if overwrite and name in self.h5:
            del self.h5[name]  # a retried case: its first attempt failed half-way
        group = Hdf5Group(self.h5.create_group(name), self.location, self.mode,
                          self.compression, self.source)
        for key, value in (attributes or {}).items():
            group.attrs[key] = value
        return group

    def create_array(self, name: str, *, shape=None, dtype=None, chunks=None,
                     shards=None, compressors=None, fill_value=None, config=None,
                     dimension_names=None, attributes=None, data=None) -> Hdf5Array:
        """A dataset with Zarr's ``create_array`` arguments. ``shards``, ``config`` and
        the Zarr ``compressors`` are ignored: one file needs no shards, HDF5 writes
        every chunk it is given, and every chunked dataset gets this file's compression
        (small columns too: it costs nothing) and the fletcher32 checksum, which HDF5
        checks on every read of the chunk (``read_values`` names a mismatch)."""
        if data is not None:
            data = np.asarray(data)
            shape, dtype = data.shape, data.dtype
        string = dtype is str or np.dtype(dtype).kind in "OTU"
        kwargs: dict[str, Any] = {"shape": tuple(shape), "dtype": STRING if string else dtype,
                                  "track_times": False}  # same inputs, same bytes
        if chunks is not None and 0 not in tuple(shape):
            kwargs.update(self.compression)
            # HDF5 refuses fletcher32 on variable-length strings (their chunks hold
            # references to the global heap, not the strings).
            kwargs.update(chunks=tuple(int(c) for c in chunks), fletcher32=not string)
        if fill_value is not None and not string:
            kwargs["fillvalue"] = fill_value
        dataset = self.h5.create_dataset(name, **kwargs)
        dataset.attrs[DIMENSION_NAMES] = np.array(list(dimension_names or ()), dtype=STRING)
        for key, value in (attributes or {}).items():
            dataset.attrs[key] = encode_attr(value)
        if data is not None:
            dataset[...] = data.astype(object) if string else data
        return Hdf5Array(dataset, self.location, self.mode)


def own_node(node: h5py.Group | h5py.Dataset, parent: h5py.Group, name: str, location: str):
    """``node``, reached as ``parent[name]``, if every byte of it is in its store's file;
    else a StoreError.

    An HDF5 file can point outside itself: an external link into another file, a dataset
    whose values are raw external files, a virtual dataset mapping other files. HDF5
    follows them on read, so a store from another lab could make its reader read any
    file of the reader's machine as pixels. medimg-build writes none of them; each is
    refused when a reader reaches it (links are followed only on access, so this costs
    one check per object read, not a walk of the whole file)."""
    name = f"{parent.name.rstrip('/')}/{name}".strip("/")
    if node.file != parent.file:
        problem = f"{name} is an external link into {node.file.filename}"
    elif isinstance(node, h5py.Dataset) and node.external:
        files = ", ".join(str(entry[0]) for entry in node.external)
        problem = f"{name} keeps its values in external file(s) {files}"
    elif isinstance(node, h5py.Dataset) and node.is_virtual:
        problem = f"{name} is a virtual dataset mapping other files"
    else:
        return node
    raise StoreError(location, problem, hint="a medimg store keeps all its data in its own "
                     "file: this one was altered, do not read it")


@contextmanager
def checked(location: str, what: str) -> Iterator[None]:
    """h5py's errors on a damaged file (a metadata checksum, a chunk index that cannot
    be read) as one StoreError naming the file and the object; any other KeyError
    (a name that is not there) stays a KeyError."""
    try:
        yield
    except KeyError as error:
        if "checksum" not in str(error):  # h5py's KeyError for a damaged object header
            raise
        raise damaged(location, what, f"cannot be read (HDF5: {error.args[0]})") from None
    except (OSError, RuntimeError, ValueError) as error:
        raise damaged(location, what, f"cannot be read (HDF5: {error})") from None


def read_values(dataset: h5py.Dataset, key: Any = (), location: str | None = None
                ) -> np.ndarray:
    """``dataset[key]`` with strings as str (h5py gives bytes). HDF5 checks each chunk's
    fletcher32 as it reads it; a chunk that fails is a StoreError naming ``location``,
    the dataset and the chunk (HDF5 says only "filter returned failure")."""
    try:
        if is_string(dataset.dtype):
            return np.asarray(dataset.asstr()[key], dtype=object)
        return dataset[key]
    except OSError as error:
        raise _damaged(dataset, key, location or dataset.file.filename, error) from None


def _damaged(dataset: h5py.Dataset, key: Any, location: str, error: OSError):
    """The error of a failed read: which chunk of the selection fails (each is read
    again alone: an error path only)."""
    name = dataset.name.lstrip("/")
    selection = _as_slices(key, dataset.shape)
    if dataset.chunks is not None and selection is not None:
        for chunk in dataset.iter_chunks(selection):
            try:
                dataset[chunk]
            except OSError:
                coords = tuple(s.start // c for s, c in zip(chunk, dataset.chunks))
                return damaged(location, name, f"chunk {coords} fails its fletcher32 "
                               "checksum or its decompression")
    return damaged(location, name, f"cannot be read (HDF5: {error})")


def _as_slices(key: Any, shape: tuple[int, ...]) -> tuple[slice, ...] | None:
    """A basic selection as one slice per axis (an integer as its one element), or None
    for anything else (then the chunk is not named)."""
    key = () if key is Ellipsis else key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key) or len(key) > len(shape):
        return None
    out = []
    for k, n in zip(key + (slice(None),) * (len(shape) - len(key)), shape):
        if isinstance(k, (int, np.integer)):
            k = int(k) + n if k < 0 else int(k)
            out.append(slice(k, k + 1))
        elif isinstance(k, slice) and k.step in (None, 1):
            start, stop, _ = k.indices(n)
            if stop <= start:
                return None
            out.append(slice(start, stop))
        else:
            return None
    return tuple(out)
