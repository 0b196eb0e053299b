"""Reading the HDF5 format: the same ``MedimgStore`` over one HDF5 file.

``MedimgStore`` reads the table and labels through ``root[name][:]`` and a few group
calls; ``H5ReadGroup`` offers those over h5py (strings decoded to str). The layout
reads build xarray objects from dask arrays over the datasets, not through xarray's
netCDF engines: h5netcdf is not a dependency, and the netCDF data model would want
every dim as a dimension scale, which ``channel`` or ``affine_row`` are not.

Lazy and picklable: a dask chunk holds an ``H5Source`` (location + options), which
opens the file once per process on first use, so the arrays work on Dask distributed
workers as well as in threads (h5py serializes reads on its global lock).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask.array as da
import h5py
import numpy as np
import xarray as xr
from dask.base import tokenize

from ...errors import StoreError
from .hdf5_backend import decode_attrs, dims_of, is_string, open_error, own_node
from ..integrity import damaged
from ..reader import NOT_DATA, MedimgStore, StackReads, VolumesReads, check_medimg
from ..schema import (
    CASE, CASES_GROUP,
)

STRINGS = np.dtypes.StringDType()  # what xarray gives for Zarr strings


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
                self._file = self._open()
            return self._file

    def _open(self) -> h5py.File:
        if "://" not in self.location:
            return h5py.File(self.location, "r")
        import fsspec  # remote: h5py reads through a file-like object, range by range

        fs, path = fsspec.core.url_to_fs(self.location, **(self.storage_options or {}))
        return h5py.File(fs.open(path, "rb"), "r")


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


def _damaged(dataset: h5py.Dataset, key: Any, location: str, error: OSError) -> StoreError:
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


class _Chunks:
    """The array-like dask reads one dataset through (picklable, see ``H5Source``)."""

    def __init__(self, source: H5Source, path: str, shape: tuple[int, ...], dtype) -> None:
        self.source, self.path, self.shape, self.dtype = source, path, shape, dtype
        self.ndim = len(shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return read_values(self.source.file[self.path], key, self.source.location)


class H5ReadGroup:
    """The ``zarr.Group`` calls ``MedimgStore``, table.py and classification.py read with; h5py's
    errors on a damaged file become StoreErrors (``checked``)."""

    def __init__(self, source: H5Source, group: h5py.Group) -> None:
        self.source, self.h5 = source, group

    def _checked(self, name: str = ""):
        path = f"{self.h5.name.rstrip('/')}/{name}".strip("/") or "the root group"
        return checked(self.source.location, path)

    def _own(self, name: str):
        return own_node(self.h5[name], self.h5, name, self.source.location)

    @property
    def attrs(self) -> dict[str, Any]:
        with self._checked():
            return decode_attrs(self.h5.attrs)

    def __contains__(self, name: str) -> bool:
        with self._checked(name):
            return name in self.h5

    def __getitem__(self, path: str):
        with self._checked(path):
            node = self._own(path)
        if isinstance(node, h5py.Group):
            return H5ReadGroup(self.source, node)
        return _Values(node, self.source.location)

    def array_keys(self) -> list[str]:
        with self._checked():
            return [k for k, v in self.h5.items() if isinstance(v, h5py.Dataset)]

    def groups(self) -> dict[str, H5ReadGroup]:
        with self._checked():
            return {k: H5ReadGroup(self.source, self._own(k)) for k, v in self.h5.items()
                    if isinstance(v, h5py.Group)}

    def lazy(self, name: str) -> da.Array | np.ndarray:
        """A dataset as dask, chunked as stored; strings eagerly (small table columns,
        and dask has no string dtype worth having)."""
        with self._checked(name):
            dataset = self._own(name)
        if is_string(dataset.dtype):
            return np.array(read_values(dataset, location=self.source.location).tolist(),
                            dtype=STRINGS)
        source = _Chunks(self.source, dataset.name, dataset.shape, dataset.dtype)
        token = tokenize(self.source.location, dataset.name, dataset.shape, str(dataset.dtype))
        return da.from_array(source, chunks=dataset.chunks or dataset.shape,
                             name=f"h5-{name}-{token}", asarray=True, meta=np.empty(
                                 (0,) * dataset.ndim, dtype=dataset.dtype))

    def to_dataset(self, names: list[str] | None = None) -> xr.Dataset:
        """The group's datasets as xarray variables, dims from ``dimension_names``; a
        1-D dataset named after its dim is an index coordinate (as xarray.open_zarr)."""
        variables, coords = {}, {}
        for name in [n for n in self.array_keys() if n not in NOT_DATA] if names is None \
                else names:
            with self._checked(name):
                dataset = self._own(name)
                dims, attrs = dims_of(dataset), decode_attrs(dataset.attrs)
            variable = xr.Variable(dims, self.lazy(name), attrs=attrs)
            if dims == (name,):
                coords[name] = variable.load()
            else:
                variables[name] = variable
        return xr.Dataset(variables, coords=coords, attrs=self.attrs)


class _Values:
    """A dataset as the store code reads it: ``[key]`` gives decoded values."""

    def __init__(self, dataset: h5py.Dataset, location: str) -> None:
        self._dataset, self._location = dataset, location
        self.shape, self.dtype = dataset.shape, dataset.dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        return read_values(self._dataset, key, self._location)


def open_hdf5_store(location: str, storage_options: dict | None = None) -> Hdf5Store:
    source = H5Source(location, storage_options)
    try:
        handle = source.file
    except OSError as err:
        raise open_error(location, err) from None
    return Hdf5Store(source, H5ReadGroup(source, handle), location)


class Hdf5Store(MedimgStore):
    """``MedimgStore`` over an HDF5 file; only the layout reads differ."""

    def __init__(self, source: H5Source, root: H5ReadGroup, location: str) -> None:
        self.location = location
        self.attrs = check_medimg(root.attrs.get("medimg"), location, "an HDF5 file",
                                  resumable=False)
        self.layout = self.attrs["layout"]
        self._store = source
        self._root = root
        layout_class = _StackReads if self.layout == "stack" else _VolumesReads
        self._reads = layout_class(source, root, self.attrs)


class _StackReads(StackReads):
    def _open(self, **kwargs: Any) -> xr.Dataset:
        return _rechunked(self._root.to_dataset(), kwargs)


class _VolumesReads(VolumesReads):
    def dataset(self, complete: np.ndarray, ids: np.ndarray, **kwargs: Any) -> xr.DataTree:
        """The DataTree ``xarray.open_datatree`` gives for the Zarr store, without the
        incomplete cases."""
        root = self._root.to_dataset()
        if not complete.all():
            root = root.isel({CASE: np.flatnonzero(complete)})
        nodes = {"/": root, f"/{CASES_GROUP}": xr.Dataset(attrs=self._cases_attrs())}
        for case_id in ids[complete]:
            nodes.update(_subtree(f"/{CASES_GROUP}/{case_id}", self._groups[case_id]))
        for name, group in self._root.groups().items():  # boxes, landmarks tables
            if name != CASES_GROUP:
                nodes[f"/{name}"] = group.to_dataset()
        return xr.DataTree.from_dict({k: _rechunked(v, kwargs) for k, v in nodes.items()})

    def _cases_attrs(self) -> dict[str, Any]:
        return self._root[CASES_GROUP].attrs if CASES_GROUP in self._root else {}

    def _open_level_0(self, case_id: str, array_path: str, chunks: dict | None) -> xr.Dataset:
        level = self._groups[case_id][array_path.rpartition("/")[0]].to_dataset()
        return _rechunked(level, {"chunks": chunks})


def _subtree(path: str, group: H5ReadGroup) -> dict[str, xr.Dataset]:
    """The DataTree nodes of ``group`` and every group below it, by path."""
    nodes = {path: group.to_dataset()}
    for name, child in group.groups().items():
        nodes.update(_subtree(f"{path}/{name}", child))
    return nodes


def _rechunked(ds: xr.Dataset, kwargs: dict[str, Any]) -> xr.Dataset:
    """``dataset(chunks=...)`` as for xarray.open_zarr; other open options have no
    meaning for HDF5 and are refused rather than silently ignored."""
    unknown = set(kwargs) - {"chunks"}
    if unknown:
        raise TypeError(f"unsupported options for an HDF5 store: {', '.join(sorted(unknown))}")
    chunks = kwargs.get("chunks")
    return ds if chunks in (None, {}) else ds.chunk(chunks)
