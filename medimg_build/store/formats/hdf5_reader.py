"""Reading the HDF5 format: the same ``MedimgStore`` over one HDF5 file.

``MedimgStore`` reads the table and labels through the root group, here an
``Hdf5Group`` (hdf5_group.py), and the layout reads (``layout_reads.py``) get their
xarray objects from ``Hdf5Reads``: dask arrays over the datasets, not xarray's netCDF
engines: h5netcdf is not a dependency (it does open the file: see
``hdf5_dimensions.py``, whose dimension-only datasets ``Hdf5Group`` leaves out).

Lazy and picklable: a dask chunk holds an ``H5Source`` (location + options), which
opens the file once per process on first use, so the arrays work on Dask distributed
workers as well as in threads (h5py serializes reads on its global lock).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import dask.array as da
import h5py
import numpy as np
import xarray as xr
from dask.base import tokenize

from ..layout_reads import FormatReads
from ..reader import NOT_DATA, MedimgStore, check_medimg
from .hdf5_backend import dims_of, open_file
from .hdf5_group import STRINGS, Hdf5Array, Hdf5Group, read_values


class H5Source:
    """Where the file is; the open h5py file is per process and never pickled."""

    def __init__(self, location: str, storage_options: dict | None = None) -> None:
        self.location = location
        self.storage_options = storage_options
        self._file: h5py.File | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["location"], state["storage_options"])

    @property
    def file(self) -> h5py.File:
        with self._lock:
            if self._file is None:
                self._file, _ = open_file(self.location, self.storage_options)
            return self._file


class _Chunks:
    """The array-like dask reads one dataset through (picklable, see ``H5Source``)."""

    def __init__(self, source: H5Source, path: str, shape: tuple[int, ...], dtype) -> None:
        self.source, self.path, self.shape, self.dtype = source, path, shape, dtype
        self.ndim = len(shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return read_values(self.source.file[self.path], key, self.source.location)


def lazy(group: Hdf5Group, array: Hdf5Array) -> da.Array | np.ndarray:
    """A dataset as dask, chunked as stored; strings eagerly (small table columns,
    and dask has no string dtype worth having)."""
    dataset = array.h5
    if array.dtype == STRINGS:
        return np.array(array[...].tolist(), dtype=STRINGS)
    source = _Chunks(group.source, dataset.name, dataset.shape, dataset.dtype)
    token = tokenize(group.location, dataset.name, dataset.shape, str(dataset.dtype))
    name = dataset.name.rpartition("/")[2]
    return da.from_array(source, chunks=dataset.chunks or dataset.shape,
                         name=f"h5-{name}-{token}", asarray=True, meta=np.empty(
                             (0,) * dataset.ndim, dtype=dataset.dtype))


def to_dataset(group: Hdf5Group, drop: Iterable[str] = ()) -> xr.Dataset:
    """The group's datasets as xarray variables, dims from ``dimension_names``; a 1-D
    dataset named after its dim is an index coordinate (as xarray.open_zarr). The
    names in ``drop`` are left out, as ``drop_variables`` does (unread)."""
    variables, coords = {}, {}
    for name, array in group.arrays():
        if name in NOT_DATA or name in drop:
            continue
        variable = xr.Variable(dims_of(array.h5), lazy(group, array), attrs=dict(array.attrs))
        if variable.dims == (name,):
            coords[name] = variable.load()
        else:
            variables[name] = variable
    return xr.Dataset(variables, coords=coords, attrs=dict(group.attrs))


def open_hdf5_store(location: str, storage_options: dict | None = None) -> MedimgStore:
    source = H5Source(location, storage_options)
    root = Hdf5Group(source.file, location, "r", source=source)
    attrs = check_medimg(root.attrs.get("medimg"), location, "an HDF5 file", resumable=False)
    return MedimgStore(HDF5_READS, source, root, location, attrs)


class Hdf5Reads(FormatReads):
    """xarray objects over the datasets (``to_dataset``); ``chunks`` as for
    ``xarray.open_zarr`` (``_rechunked``)."""

    def group_dataset(self, group: Hdf5Group, **kwargs: Any) -> xr.Dataset:
        drop = kwargs.pop("drop_variables", None) or ()
        return _rechunked(to_dataset(group, [drop] if isinstance(drop, str) else drop),
                          kwargs)

    def datatree(self, store: H5Source, root: Hdf5Group, skip: list[str], **kwargs: Any
                 ) -> xr.DataTree:
        """The DataTree ``xarray.open_datatree`` gives for the Zarr store."""
        nodes = _subtree("/", root, set(skip))
        return xr.DataTree.from_dict({k: _rechunked(v, kwargs) for k, v in nodes.items()})


HDF5_READS = Hdf5Reads()


def _subtree(path: str, group: Hdf5Group, skip: set[str]) -> dict[str, xr.Dataset]:
    """The DataTree nodes of ``group`` and every group below it, by path, without the
    groups at the paths ``skip`` (relative to the root, as ``cases/<case_id>``)."""
    nodes = {path: to_dataset(group)}
    for name, child in group.groups():
        child_path = f"{path.rstrip('/')}/{name}"
        if child_path.lstrip("/") not in skip:
            nodes.update(_subtree(child_path, child, skip))
    return nodes


def _rechunked(ds: xr.Dataset, kwargs: dict[str, Any]) -> xr.Dataset:
    """``dataset(chunks=...)`` as for xarray.open_zarr; other open options have no
    meaning for HDF5 and are refused rather than silently ignored."""
    unknown = set(kwargs) - {"chunks"}
    if unknown:
        raise TypeError(f"unsupported options for an HDF5 store: {', '.join(sorted(unknown))}")
    chunks = kwargs.get("chunks")
    return ds if chunks in (None, {}) else ds.chunk(chunks)
