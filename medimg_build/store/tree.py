"""A read-only view of a store's tree of groups and arrays, for code that inspects a
store as it is on disk (``validate.py``), over the root group a format opens
(``StoreFormat.open``: a ``zarr.Group``, or an adapter with its API such as
``formats.hdf5_group.Hdf5Group``).

Only what such code asks is here, in plain Python: the arrays and groups of a group
(one level, or every array below it) as dicts, an array's shape, dtype, dimension
names (a tuple, or None when the array has none), values (a NumPy array; strings as
``str``), the block it is best read by (``chunks``: the shard where the array is
sharded, else the chunk) and attributes as a dict.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


class ArrayView:
    """One array: ``shape``, ``ndim``, ``dtype``, ``dimension_names``, ``chunks``,
    ``attrs`` and ``view[key]`` (a NumPy array)."""

    def __init__(self, node) -> None:
        self._node = node
        self.shape: tuple[int, ...] = tuple(int(n) for n in node.shape)
        self.ndim = len(self.shape)
        self.dtype = node.dtype
        names = node.metadata.dimension_names
        self.dimension_names = None if names is None else tuple(names)
        self.chunks = tuple(node.shards or node.chunks)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._node.attrs)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self._node[key])


class GroupView:
    """One group: ``attrs``, ``arrays()``, ``groups()``, ``all_arrays()``, ``name in
    view`` and ``view[path]`` (an ArrayView or a GroupView)."""

    def __init__(self, node) -> None:
        self._node = node

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._node.attrs)

    @property
    def zarr_store(self):
        """The Zarr store this group is read from, whose consolidated metadata validate
        checks; None for a format without one."""
        return getattr(self._node, "store", None)

    def __contains__(self, path: str) -> bool:
        return path in self._node

    def __getitem__(self, path: str) -> ArrayView | GroupView:
        return _view(self._node[path])

    def arrays(self) -> dict[str, ArrayView]:
        """The arrays directly in this group, by name."""
        return {name: ArrayView(array) for name, array in self._node.arrays()}

    def groups(self) -> dict[str, GroupView]:
        """The groups directly in this group, by name."""
        return {name: GroupView(group) for name, group in self._node.groups()}

    def all_arrays(self) -> Iterator[tuple[str, ArrayView]]:
        """Every array below this group, with its path relative to the group."""
        for path, node in self._node.members(max_depth=None):
            if not hasattr(node, "members"):  # a group lists its members, an array not
                yield path, ArrayView(node)


def _view(node) -> ArrayView | GroupView:
    return GroupView(node) if hasattr(node, "members") else ArrayView(node)
