"""``MedimgStore``: read a medimg store of either layout, lazily where it can.

Only complete cases exist for a reader: they are the rows of ``.cases``, and asking
for any other case raises StoreError. The layout-specific reads are the layout's
(``layout_reads.py``); ``MedimgStore`` is the same for both layouts, and for every
format (``formats/``; ``opening.open_store`` chooses the format), which gives it its
``FormatReads``. Zarr is opened here (``ZarrReads``).
"""

from __future__ import annotations

import math
import os
import zipfile
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from xarray.backends.zarr import ZarrStore
from zarr.storage import FsspecStore, LocalStore, ZipStore

from ..errors import StoreError
from ..image import MedicalImage
from ..limits import store_max_voxels
from .annotation_tables import BOXES, LANDMARKS, read_annotations
from .axes import axis_coords, image_from_stored, mask_from_stored
from .axes import stored_origin, stored_spacing
from .chunk_reads import with_local_shard_reads
from .integrity import CheckedStore, check_snapshot_members
from .layout_reads import FormatReads
from .layouts import layout_named
from .classification import read_label, written_labels
from .pictures import ORIENTATION, PICTURE_COLUMNS, SPACING_UNIT, picture_flags
from .schema import (
    CASE, IMAGE, LABEL_PREFIX, LAYOUTS, MANIFEST, MASK, READABLE_MAJORS, SCHEMA_VERSION,
    label_array_name,
)
from .table import read_table, read_whole_arrays

MODALITY = "modality"  # a case table column, and the store's attribute for all cases


class NotThisFormat(StoreError):
    """The location is not a store of the format whose reader tried it: it may be one
    of another format (``opening.open_store`` then asks ``pick_format`` again)."""


def open_zarr_store(location: str, storage_options: dict | None = None) -> MedimgStore:
    """The ``MedimgStore`` of the Zarr store at ``location`` (a local directory, a
    ``.zip`` or any fsspec URL with its ``storage_options``)."""
    # Every chunk zarr-python fetches is checked first (integrity.py): damage is a
    # StoreError naming the chunk, never fill values or wrong pixels.
    store = CheckedStore(zarr_store(location, storage_options), location)
    try:
        # zarr_format=3: no probing for v2 files (each probe is a request on S3 or HTTP);
        # the consolidated metadata in the root zarr.json then describes every group and
        # array, so opening a store and any of its cases costs one read.
        root = zarr.open_group(store, mode="r", zarr_format=3)
    # TypeError: zarr's reading of a zarr.json whose fields have the wrong type;
    # RecursionError: one nested deeper than Python's stack ([[[[...]]]]).
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError, KeyError,
            TypeError, RecursionError) as err:
        raise NotThisFormat(location, f"not a Zarr v3 group ({type(err).__name__})",
                            hint="check the path, or build a store with "
                                 "'medimg-build build'") from None
    except OSError as err:  # unreachable host, refused credentials...
        raise StoreError(location, f"cannot read the store ({type(err).__name__}: {err})",
                         hint="check the URL, the network, and the credentials or "
                              "storage options") from None
    store.watch(root)
    return MedimgStore(ZARR_READS, store, root, location, _check_root(root, location))


def zarr_store(location: str, storage_options: dict | None = None):
    """The read-only Zarr store at ``location``: an fsspec URL (one ending in ``.zip`` is
    a snapshot, read in place by range requests), a ``.zip`` or a local directory
    (StoreError if a local path does not exist)."""
    if "://" in location:
        if location.endswith(".zip") and not location.startswith("zip::"):
            # A snapshot (snapshot.py) read in place; in a chained URL the options
            # belong to the inner filesystem, named by its protocol.
            protocol = location.split("://", 1)[0]
            location = "zip::" + location
            storage_options = {protocol: storage_options} if storage_options else None
        try:
            store = FsspecStore.from_url(location, storage_options=storage_options,
                                         read_only=True)
        except (ImportError, ValueError) as err:  # no such protocol, or its package missing
            raise StoreError(location, f"cannot open this URL ({err})",
                             hint="install the fsspec package for its protocol (s3fs, "
                                  "gcsfs, adlfs...) or check the URL") from None
        if isinstance(getattr(store.fs, "zip", None), zipfile.ZipFile):  # a snapshot
            check_snapshot_members(location, store.fs.zip)
        return store
    if not os.path.exists(location):
        raise StoreError(location, "no store at this path",
                         hint="check the path, or build a store with 'medimg-build build'")
    if location.endswith(".zip"):
        try:
            with zipfile.ZipFile(location) as archive:
                check_snapshot_members(location, archive)
        except zipfile.BadZipFile as err:
            raise StoreError(location, f"is not a readable zip file ({err})",
                             hint="a snapshot is made by 'medimg-build snapshot'; fetch "
                                  "it again if the copy was cut short") from None
        return ZipStore(location, mode="r")
    return LocalStore(location, read_only=True)


def _check_root(root: zarr.Group, location: str) -> dict[str, Any]:
    if root.metadata.zarr_format != 3:
        raise StoreError(location, "is a Zarr v2 group, not a medimg store",
                         hint="was it written by medimg-build?")
    return check_medimg(root.attrs.get("medimg"), location, "a Zarr group")


def check_medimg(medimg: Any, location: str, container: str,
                 resumable: bool = True) -> dict[str, Any]:
    """The root ``medimg`` attributes if they describe a readable, finished store."""
    if not isinstance(medimg, dict):
        raise StoreError(location, f"is {container} but not a medimg store (no 'medimg' "
                         "root attribute)", hint="was it written by medimg-build?")
    version = str(medimg.get("schema_version", ""))
    major = version.split(".")[0]
    if major not in READABLE_MAJORS:
        older = major.isdigit() and int(major) < int(READABLE_MAJORS[0])
        raise StoreError(location, f"store schema {version!r} is not readable by this "
                         f"version (schema {SCHEMA_VERSION})",
                         hint="rebuild the store with this version" if older
                         else "upgrade medimg-build")
    if medimg.get("layout") not in LAYOUTS:
        raise StoreError(location, f"unknown store layout {medimg.get('layout')!r}",
                         hint="upgrade medimg-build")
    if not medimg.get("finished"):
        resume = " (or --resume)" if resumable else ""  # HDF5 builds do not resume
        raise StoreError(location, "the build that wrote this store did not finish",
                         hint=f"build it again with --overwrite{resume}")
    return medimg


class MedimgStore:
    """A finished store, whose root ``attrs`` (its ``medimg`` attribute) ``check_medimg``
    accepted, read through its root group (``zarr.Group``'s API) and ``reads``, its
    format's ``FormatReads``."""

    def __init__(self, reads: FormatReads, store, root, location: str,
                 attrs: dict[str, Any]) -> None:
        self.location = location
        self.attrs: dict[str, Any] = attrs
        self.layout: str = self.attrs["layout"]
        self._store = store
        self._root = root
        self._reads = layout_named(self.layout).reads(reads, store, root, self.attrs)

    def __repr__(self) -> str:
        return (f"MedimgStore({self.location!r}, layout={self.layout!r}, "
                f"cases={len(self.cases)}, dataset={self.attrs.get('dataset')!r})")

    # -- which cases exist -------------------------------------------------------------
    @cached_property
    def _ids(self) -> np.ndarray:
        return np.asarray(self._root[CASE][:].tolist(), dtype=object)

    @cached_property
    def _complete(self) -> np.ndarray:
        return self._reads.complete(self._ids)

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {case_id: i for i, case_id in enumerate(self._ids) if self._complete[i]}

    def _position(self, case_id: str) -> int:
        if case_id not in self._positions:
            known = "is not complete" if case_id in set(self._ids) else "is not in the store"
            raise StoreError(self.location, f"case {case_id!r} {known}",
                             hint="see store.cases for the readable cases")
        return self._positions[case_id]

    # -- the public reads --------------------------------------------------------------
    @cached_property
    def cases(self) -> pd.DataFrame:
        """The case table: one row per complete case, JSON columns decoded."""
        return read_table(self._root, self.attrs["table"], self._complete, self._ids)

    def dataset(self, **open_kwargs: Any) -> xr.Dataset | xr.DataTree:
        """Stack: the lazy Dataset of complete cases. Volumes: the DataTree of the
        store without its incomplete cases. ``open_kwargs`` go to xarray."""
        return self._reads.dataset(self._complete, self._ids, **open_kwargs)

    def case(self, case_id: str, chunks: dict | None = None) -> xr.Dataset:
        """One case, lazy: ``image`` (channel, [z,] y, x) [+ ``mask``], coordinates in
        mm, and case_id, affine, spacing, origin in ``attrs``.

        ``chunks=None``: no Dask; each read goes straight to Zarr, so a 2D slice reads
        one chunk (plus its shard's index) and the whole image one shard. ``chunks={}``
        (or a dict, as for ``xarray.open_zarr``): Dask-backed, for graphs over many
        cases. HDF5 stores are always Dask-backed."""
        position = self._position(case_id)
        ds = self._reads.case(position, case_id, chunks)
        affine = self._reads.affine(position, case_id)
        spatial = ds[IMAGE].shape[1:]
        ds = ds.assign_coords({k: v for k, v in axis_coords(affine, spatial).items()
                               if k not in ds.coords})
        ds.attrs = {"case_id": case_id, "affine": affine.tolist(),
                    "spacing": stored_spacing(affine, len(spatial)).tolist(),
                    "origin": stored_origin(affine).tolist()}
        return ds

    def read_image(self, case_id: str) -> MedicalImage:
        """The case's image in memory, in MedicalImage axis order, with its affine; a
        picture's (``is_picture``, ``store/pictures.py``) in picture space, its axes
        named ``column,row``."""
        position = self._position(case_id)
        stored = self._whole(self._reads.array(position, case_id, IMAGE), case_id, IMAGE)
        array = image_from_stored(stored, self._reads.channel_axis(position, case_id))
        return MedicalImage(array, self._reads.affine(position, case_id),
                            spatial_ndim=stored.ndim - 1, meta=self._meta(case_id, position))

    def read_mask(self, case_id: str) -> MedicalImage | None:
        position = self._position(case_id)
        stored = self._whole(self._reads.array(position, case_id, MASK), case_id, MASK)
        if stored is None:
            return None
        return MedicalImage(mask_from_stored(stored), self._reads.affine(position, case_id),
                            spatial_ndim=stored.ndim, meta=self._meta(case_id, position))

    def _whole(self, stored, case_id: str, name: str) -> np.ndarray | None:
        """A case's array (a lazy zarr/HDF5 selection) read into memory once its shape is
        within the size limit: a store from another lab may declare any shape, and an
        array without checksums reads its missing chunks as fill values of that shape."""
        if stored is None:
            return None
        values, limit = math.prod(int(n) for n in stored.shape), store_max_voxels(self.attrs)
        if values > limit:
            raise StoreError(self.location, f"case {case_id}: its {name} of shape "
                             f"{list(stored.shape)} = {values:,} values is over the limit of "
                             f"{limit:,}", hint="a real case this large needs "
                             "medimg_build.limits.max_voxels(N) around the read; else the "
                             "store is damaged or forged")
        return stored[...]

    @property
    def label_names(self) -> list[str]:
        """The classification labels ``labels`` reads, in vocabulary order: those of the
        recipe's vocabulary that a built case had (a store whose every case failed has
        none)."""
        return written_labels(self.attrs)

    def labels(self, name: str) -> pd.Series | pd.DataFrame:
        """Classification label ``name`` indexed by case_id (multi-label: one column per
        class); -1 = missing/unknown."""
        if label_array_name(name) not in self._root:
            stored = sorted(k[len(LABEL_PREFIX):] for k in self._root.array_keys()
                            if k.startswith(LABEL_PREFIX))
            raise StoreError(self.location, f"no label {name!r} in the store",
                             hint=f"stored labels: {', '.join(stored) or 'none'}")
        return read_label(self._root, name, self._ids, self._complete)

    def boxes(self) -> pd.DataFrame:
        """The bounding boxes of complete cases, one row per box: ``case_index`` (along
        the stored ``case`` axis), ``case_id``, ``label``, ``label_index``, harmonized
        voxel edges ``[z_min, z_max,] y_min, y_max, x_min, x_max``, their RAS+ extent
        in mm ``R_min .. S_max`` (a picture's: ``row_min .. column_max``), ``key_slice``
        (3D) and the source coordinates ``source_i_min ..`` (see
        ``medimg_build.store.annotation_tables``). A store without boxes gives an empty
        table of these columns."""
        return read_annotations(self._root, BOXES, self._complete, self._spatial_ndim,
                                self._pictures)

    def landmarks(self) -> pd.DataFrame:
        """The landmarks of complete cases, one row per point: ``case_index``,
        ``case_id``, ``label``, ``label_index``, harmonized voxel ``[z,] y, x``, RAS+
        mm ``R, A, S`` (a picture's: ``row, column``) and the source coordinates
        ``source_i, source_j[, source_k]``; an empty table of these columns in a store
        without landmarks."""
        return read_annotations(self._root, LANDMARKS, self._complete, self._spatial_ndim,
                                self._pictures)

    @property
    def _spatial_ndim(self) -> int:
        """2 or 3: the spatial axes of the store's images (3 for a store of no case)."""
        return int((self.attrs.get("image") or {}).get("spatial_ndim") or 3)

    @cached_property
    def _case_facts(self) -> dict[str, np.ndarray]:
        """The case table's short text columns that ``read_image`` gives each case: what
        its grid is (``store/pictures.py``) and its modality (a store of CR and MG
        films, or CT and PET), those the table has, read once."""
        table = self.attrs.get("table") or {}
        names = [name for name in (*PICTURE_COLUMNS, MODALITY)
                 if name in (table.get("columns") or [])
                 and name not in (table.get("json_columns") or [])]
        return dict(zip(names, read_whole_arrays(self._root, names)))

    @cached_property
    def _pictures(self) -> np.ndarray:
        """Per stored case (along ``case``): whether it is a picture."""
        columns = self._case_facts
        if self._spatial_ndim != 2 or ORIENTATION not in columns:
            return np.zeros(len(self._ids), dtype=bool)
        return picture_flags(columns[ORIENTATION], columns.get(SPACING_UNIT))

    def _meta(self, case_id: str, position: int) -> dict[str, Any]:
        # A harmonized image is in the patient frame (RAS+), a picture in its own; a
        # picture of unknown pixel size keeps its spacings in (source) pixels.
        meta = {"case_id": case_id, "store": self.location,
                "space": "image" if self._pictures[position] else "patient"}
        units = self._case_facts.get(SPACING_UNIT)
        if units is not None:
            meta["pixel_spacing_known"] = str(units[position]) != "pixel"
        for key in (MODALITY, "organ", "dataset"):
            if key in self.attrs:
                meta[key] = self.attrs[key]
        modalities = self._case_facts.get(MODALITY)
        if modalities is not None and str(modalities[position] or ""):
            meta[MODALITY] = str(modalities[position])
        return meta


# Root arrays that describe the store rather than its cases (store/manifest.py).
NOT_DATA = [MANIFEST]


def open_group_dataset(group: zarr.Group, **kwargs: Any) -> xr.Dataset:
    """The lazy xarray Dataset of an open Zarr group. Opened from the group, not from the
    store and a path, so that xarray reuses the group's (consolidated) metadata instead
    of reading every member's zarr.json again."""
    drop = list(kwargs.pop("drop_variables", None) or [])
    ds = xr.open_dataset(ZarrStore(group, mode="r"), drop_variables=[*NOT_DATA, *drop],
                         **kwargs)
    return with_local_shard_reads(ds, group) if kwargs.get("chunks") is None else ds


class ZarrReads(FormatReads):
    def group_dataset(self, group: zarr.Group, **kwargs: Any) -> xr.Dataset:
        return open_group_dataset(group, **kwargs)

    def datatree(self, store, root: zarr.Group, skip: list[str], **kwargs: Any
                 ) -> xr.DataTree:
        tree = xr.open_datatree(store, engine="zarr", **{"drop_variables": NOT_DATA, **kwargs})
        for path in skip:
            parent, _, name = path.rpartition("/")
            if name in tree[parent].children:
                del tree[parent][name]
        return tree


ZARR_READS = ZarrReads()
