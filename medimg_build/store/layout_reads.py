"""The reads of each layout (``StackReads``, ``VolumesReads``), one class per layout for
every format: they read arrays and attributes through the root group (a ``zarr.Group``
or an adapter with its API) and ask the format's ``FormatReads`` for the two things
xarray opens differently per format, a group as a lazy Dataset and the whole store as
a DataTree. ``layouts.Layout.reads`` picks the class; ``MedimgStore`` calls it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any

import numpy as np
import xarray as xr

from .axes import spatial_dims
from .schema import (
    AFFINE, CASE, CASE_ATTRS, CASES_GROUP, COMPLETE, IMAGE, MASK, image_path, level_0_mask_path,
)


class FormatReads(ABC):
    """How a format's groups become xarray objects (``reader.ZarrReads``,
    ``formats.hdf5_reader.Hdf5Reads``)."""

    @abstractmethod
    def group_dataset(self, group, **kwargs: Any) -> xr.Dataset:
        """The arrays of ``group`` as a lazy Dataset, without the store's ``NOT_DATA``;
        ``kwargs`` as for ``xarray.open_zarr`` (``chunks``, ``drop_variables``...)."""

    @abstractmethod
    def datatree(self, store, root, skip: list[str], **kwargs: Any) -> xr.DataTree:
        """The whole store as the DataTree ``xarray.open_datatree`` gives for Zarr,
        without the groups at the paths ``skip`` (and what is below them)."""


class StackReads:
    """Reads of the stack layout: a case is a position along ``case``."""

    def __init__(self, reads: FormatReads, store, root, attrs: dict[str, Any]) -> None:
        self._reads, self._store, self._root = reads, store, root
        self._channel_axis = bool((attrs.get("image") or {}).get("channel_axis", False))

    def _open(self, **kwargs: Any) -> xr.Dataset:
        kwargs = {"chunks": {}, **kwargs}
        if kwargs["chunks"] != {} or IMAGE not in self._root or \
                self._root[IMAGE].shards is None:
            return self._reads.group_dataset(self._root, **kwargs)
        # By default the images (and masks) get one Dask chunk per shard: a scan then
        # reads each shard whole, in one request, and a single image is still one chunk
        # read (Dask fuses the indexing into the read). The other variables keep their
        # stored chunks (a table column is one chunk: split by shard, a scan of it
        # would read it once per shard). An unsharded store (HDF5) keeps its chunks.
        images = [name for name in (IMAGE, MASK) if name in self._root]
        drop = list(kwargs.pop("drop_variables", None) or [])
        rest = self._reads.group_dataset(self._root, drop_variables=drop + images, **kwargs)
        by_shard = self._reads.group_dataset(
            self._root, chunks={CASE: self._root[IMAGE].shards[0]},
            drop_variables=[name for name in self._root.array_keys() if name not in images])
        return rest.assign({name: by_shard[name] for name in images})

    def complete(self, ids: np.ndarray) -> np.ndarray:
        if COMPLETE not in self._root:  # no case was ever written
            return np.zeros(len(ids), dtype=bool)
        return np.asarray(self._root[COMPLETE][...], dtype=bool)

    @cached_property
    def _raw(self) -> xr.Dataset:
        return self._open()

    @cached_property
    def _lazy(self) -> xr.Dataset:
        return self._open(chunks=None)

    def _opened(self, chunks: dict | None) -> xr.Dataset:
        """The whole Dataset with ``chunks``; the Dask-backed and the lazy one are kept."""
        return self._lazy if chunks is None else self._raw if chunks == {} \
            else self._open(chunks=chunks)

    def dataset(self, complete: np.ndarray, ids: np.ndarray, **kwargs: Any) -> xr.Dataset:
        ds = self._opened(kwargs.get("chunks", {})) if set(kwargs) <= {"chunks"} \
            else self._open(**kwargs)
        return ds if complete.all() else ds.isel({CASE: np.flatnonzero(complete)})

    def case(self, position: int, case_id: str, chunks: dict | None) -> xr.Dataset:
        ds = self._opened(chunks)
        names = [n for n in (IMAGE, MASK) if n in ds]
        return ds[names].isel({CASE: position})

    def affine(self, position: int, case_id: str) -> np.ndarray:
        return np.asarray(self._root[AFFINE][position], dtype=np.float64)

    def channel_axis(self, position: int, case_id: str) -> bool:
        return self._channel_axis

    def array(self, position: int, case_id: str, name: str) -> _CaseOfStack | None:
        return _CaseOfStack(self._root[name], position) if name in self._root else None


class _CaseOfStack:
    """One case of a stacked array, not yet read: its shape, and ``[...]`` to read it."""

    def __init__(self, stacked, position: int) -> None:
        self._stacked, self._position = stacked, position
        self.shape = tuple(stacked.shape[1:])

    def __getitem__(self, key) -> np.ndarray:
        return self._stacked[self._position]


class VolumesReads:
    """Reads of the volumes layout: a case is the group ``cases/<case_id>``, read at
    level 0 (``image_path()``, ``level_0_mask_path``)."""

    def __init__(self, reads: FormatReads, store, root, attrs: dict[str, Any]) -> None:
        self._reads, self._store, self._root = reads, store, root

    @cached_property
    def _groups(self) -> dict[str, Any]:
        return dict(self._root[CASES_GROUP].groups()) if CASES_GROUP in self._root else {}

    def _case_attrs(self, case_id: str) -> dict[str, Any]:
        group = self._groups.get(case_id)
        return {} if group is None else dict(group.attrs.get(CASE_ATTRS) or {})

    def complete(self, ids: np.ndarray) -> np.ndarray:
        return np.array([self._case_attrs(i).get("complete") is True for i in ids], dtype=bool)

    def dataset(self, complete: np.ndarray, ids: np.ndarray, **kwargs: Any) -> xr.DataTree:
        kwargs.setdefault("chunks", {})  # dask-backed, like open_zarr's Dataset
        skip = [f"{CASES_GROUP}/{case_id}" for case_id in ids[~complete]]
        tree = self._reads.datatree(self._store, self._root, skip, **kwargs)
        if not complete.all():
            tree.dataset = tree.to_dataset().isel({CASE: np.flatnonzero(complete)})
        return tree

    def case(self, position: int, case_id: str, chunks: dict | None) -> xr.Dataset:
        """Level 0 of the image, with the mask (level 0 of the label image) beside it."""
        ds = self._open_level_0(case_id, image_path(), chunks)
        mask = level_0_mask_path(self._groups[case_id])
        if mask is not None:
            ds[MASK] = self._open_level_0(case_id, mask, chunks)[MASK]
        return ds

    def _open_level_0(self, case_id: str, array_path: str, chunks: dict | None) -> xr.Dataset:
        # The axis coordinates are dropped (MedimgStore.case computes the same values
        # from the affine) so that opening a case reads nothing.
        group = self._groups[case_id][array_path.rpartition("/")[0]]
        return self._reads.group_dataset(group, chunks=chunks, drop_variables=spatial_dims(3))

    def affine(self, position: int, case_id: str) -> np.ndarray:
        return np.asarray(self._case_attrs(case_id)["affine"], dtype=np.float64)

    def channel_axis(self, position: int, case_id: str) -> bool:
        return bool(self._case_attrs(case_id).get("channel_axis", False))

    def array(self, position: int, case_id: str, name: str):
        """The case's level-0 array, not yet read (``MedimgStore._whole`` reads it)."""
        group = self._groups[case_id]
        path = image_path() if name == IMAGE else level_0_mask_path(group)
        return group[path] if path is not None and path in group else None
