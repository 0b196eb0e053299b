"""A read-only view of a store's tree of groups and arrays, the same over a Zarr group
and an HDF5 file, for code that inspects a store as it is on disk (``validate.py``).

Only what such code asks is here: the arrays and groups of a group (one level, or
every array below it), an array's shape, dtype, dimension names, storage block and
values, and attributes as Python dicts. The two formats are made to look alike:

- dimension names are a tuple, or None when the array has none (Zarr's metadata says
  None; HDF5 has no ``dimension_names`` attribute, or the empty one writers store
  for "none");
- strings read as ``str`` and their dtype is ``StringDType`` (what Zarr gives);
- attributes are JSON-decoded for HDF5 (see ``hdf5_backend``), a value that is not
  JSON is kept as its text (a hand-edited file is reported on, not crashed on);
- ``chunks`` is the block an array is best read by: the shard (Zarr, sharded), the
  chunk, or the whole array (HDF5, contiguous).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np
import zarr

from .formats.hdf5_backend import DIMENSION_NAMES, SCALE_ATTRS, is_string, own_node

STRINGS = np.dtypes.StringDType()  # Zarr's dtype for string arrays


class ArrayView:
    """One array: ``shape``, ``ndim``, ``dtype``, ``dimension_names``, ``chunks``,
    ``attrs`` and ``view[key]`` (a NumPy array)."""

    def __init__(self, node: zarr.Array | h5py.Dataset) -> None:
        self._node = node
        self.shape: tuple[int, ...] = tuple(int(n) for n in node.shape)
        self.ndim = len(self.shape)
        if isinstance(node, zarr.Array):
            self.dtype = node.dtype
            self.dimension_names = _names(node.metadata.dimension_names)
            self.chunks = tuple(node.shards or node.chunks)
        else:
            self.dtype = STRINGS if is_string(node.dtype) else node.dtype
            names = node.attrs.get(DIMENSION_NAMES)
            self.dimension_names = None if names is None or len(names) == 0 else tuple(
                n.decode() if isinstance(n, bytes) else str(n) for n in names)
            self.chunks = tuple(node.chunks or node.shape)

    @property
    def attrs(self) -> dict[str, Any]:
        return _attrs(self._node)

    def __getitem__(self, key: Any) -> np.ndarray:
        node = self._node
        if isinstance(node, h5py.Dataset) and is_string(node.dtype):
            return np.asarray(node.asstr()[key], dtype=object)
        return np.asarray(node[key])


class GroupView:
    """One group: ``attrs``, ``arrays()``, ``groups()``, ``all_arrays()``, ``name in
    view`` and ``view[path]`` (an ArrayView or a GroupView)."""

    def __init__(self, node: zarr.Group | h5py.Group) -> None:
        self._node = node

    @property
    def attrs(self) -> dict[str, Any]:
        return _attrs(self._node)

    @property
    def zarr_store(self):
        """The Zarr store this group is read from; None for HDF5."""
        return self._node.store if isinstance(self._node, zarr.Group) else None

    def __contains__(self, path: str) -> bool:
        return path in self._node

    def __getitem__(self, path: str) -> ArrayView | GroupView:
        return _view(self._own(self._node[path], path))

    def arrays(self) -> dict[str, ArrayView]:
        """The arrays directly in this group, by name."""
        if isinstance(self._node, zarr.Group):
            return {name: ArrayView(array) for name, array in self._node.arrays()}
        return {name: ArrayView(self._own(node, name)) for name, node in self._node.items()
                if isinstance(node, h5py.Dataset)}

    def groups(self) -> dict[str, GroupView]:
        """The groups directly in this group, by name."""
        if isinstance(self._node, zarr.Group):
            return {name: GroupView(group) for name, group in self._node.groups()}
        return {name: GroupView(self._own(node, name)) for name, node in self._node.items()
                if isinstance(node, h5py.Group)}

    def _own(self, node, name: str):
        """``self[name]``, refused if it is HDF5 that reads outside its file (``own_node``)."""
        if isinstance(self._node, zarr.Group):
            return node
        return own_node(node, self._node, name, self._node.file.filename)

    def all_arrays(self) -> Iterator[tuple[str, ArrayView]]:
        """Every array below this group, with its path relative to the group."""
        if isinstance(self._node, zarr.Group):
            for path, node in self._node.members(max_depth=None):
                if isinstance(node, zarr.Array):
                    yield path, ArrayView(node)
            return
        found: list[tuple[str, ArrayView]] = []
        self._node.visititems(
            lambda path, node: found.append((path, ArrayView(self._own(node, path))))
            if isinstance(node, h5py.Dataset) else None)
        yield from found


def _view(node) -> ArrayView | GroupView:
    return GroupView(node) if isinstance(node, (zarr.Group, h5py.Group)) else ArrayView(node)


def _names(names) -> tuple | None:
    return None if names is None else tuple(names)


def _attrs(node) -> dict[str, Any]:
    if not isinstance(node, (h5py.Group, h5py.Dataset)):
        return dict(node.attrs)
    out = {}
    for key in node.attrs:
        if key in SCALE_ATTRS:
            continue
        value = node.attrs[key]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass  # not JSON: kept as text, and reported as whatever it is not
        out[key] = value
    return out
