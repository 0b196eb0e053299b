"""What both layouts' writers share: case bookkeeping, labels, table, root attributes.

A subclass writes pixels (``_write``), flushes what it buffered (``_flush``) and
describes its arrays (``_arrays_info``); everything else happens here, so the two
layouts cannot drift apart on ids, labels, the table or the root attributes.

Thread safety: ``write_case`` may be called from several threads. Bookkeeping is under
one lock; pixel writes happen outside it, and each one touches only chunks no other
call touches (its own shard or its own case group).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
import warnings
from typing import Any

import numpy as np
import pandas as pd
import zarr

from ..case import Case
from ..errors import StoreError
from ..failpoints import failpoint
from ..image import MedicalImage
from ..provenance import to_jsonable
from .annotation_tables import GROUP_NAMES, AnnotationBuffer
from .journal import BuildLock, Journal, annotation_from, case_record, labels_from
from .classification import ClassificationBuffer
from .manifest import MANIFEST, write_manifest
from .schema import CHANNEL, SCHEMA_VERSION, array_info, check_case_id
from .table import check_table, write_table


class ImageTemplate:
    """What every case of a store must share with the first one written."""

    def __init__(self, image: MedicalImage, mask: MedicalImage | None) -> None:
        self.spatial_ndim = image.spatial_ndim
        self.channel_axis = image.has_channels
        self.n_channels = image.n_channels
        self.dtype = image.array.dtype
        self.mask_dtype = None if mask is None else mask.array.dtype
        self.spatial_shape = image.spatial_shape

    def to_record(self) -> dict[str, Any]:
        return {"spatial_ndim": self.spatial_ndim, "channel_axis": self.channel_axis,
                "n_channels": self.n_channels, "dtype": str(self.dtype),
                "mask_dtype": None if self.mask_dtype is None else str(self.mask_dtype),
                "spatial_shape": list(self.spatial_shape)}

    @classmethod
    def from_records(cls, records: list[dict[str, Any]]) -> ImageTemplate:
        """The template of a resumed store, from its complete cases' journal records
        (any case will do: all share what the template checks; a volumes store takes
        its mask dtype from any case that has a mask)."""
        first = records[0]["template"]
        template = cls.__new__(cls)
        template.spatial_ndim, template.channel_axis = first["spatial_ndim"], first["channel_axis"]
        template.n_channels, template.dtype = first["n_channels"], np.dtype(first["dtype"])
        template.spatial_shape = tuple(first["spatial_shape"])
        masks = [r["template"]["mask_dtype"] for r in records if r["template"]["mask_dtype"]]
        template.mask_dtype = np.dtype(masks[0]) if masks else None
        return template

    def mismatch(self, image: MedicalImage, mask: MedicalImage | None, stack: bool):
        """A description of how a case differs from the template, or None.

        The stack has one array for all cases: same shape, channels and dtype, and a
        mask for every case or for none. A volumes case has its own arrays, so only
        the dtype (chosen per modality) and the number of spatial axes (the arrays'
        dims) are shared; a case may lack a mask; masks share the first mask's dtype."""
        mask_dtype = None if mask is None else mask.array.dtype
        if not stack and self.mask_dtype is None:
            self.mask_dtype = mask_dtype
        checks = [
            ("spatial axes", self.spatial_ndim, image.spatial_ndim),
            ("dtype", self.dtype, image.array.dtype),
        ]
        if stack or mask_dtype is not None:
            checks.append(("mask dtype", self.mask_dtype, mask_dtype))
        if stack:
            checks += [("channel axis", self.channel_axis, image.has_channels),
                       ("channels", self.n_channels, image.n_channels),
                       ("shape", self.spatial_shape, image.spatial_shape)]
        for what, expected, got in checks:
            if expected != got:
                return f"{what} {got} where the store has {expected}"
        return None

    def to_attrs(self, stack: bool) -> dict[str, Any]:
        """The root ``image`` entry; a volumes case's channels are in its own attrs."""
        shared = {"spatial_ndim": self.spatial_ndim, "channel_dim": CHANNEL}
        if stack:
            shared.update(channel_axis=self.channel_axis, n_channels=self.n_channels)
        return shared


class BaseWriter:
    layout: str = ""
    reserved: frozenset[str] = frozenset()  # root names no table column may take

    def __init__(self, root: zarr.Group, location: str, n_cases: int,
                 attrs: dict[str, Any], compressor) -> None:
        self._root = root
        self.location = location
        self.n_cases = n_cases
        self._attrs = attrs  # the caller's dict, read at close: it may add to it until then
        self._compressor = compressor
        self._lock = threading.Lock()
        self._ids: dict[int, str] = {}  # index -> case id, claimed or written
        # The same ids casefolded: "Case1" and "case1" would be one group on macOS and
        # Windows filesystems, so ids must differ by more than letter case.
        self._taken_ids: set[str] = set()
        self._labels = ClassificationBuffer(n_cases)
        self._annotations = AnnotationBuffer()  # boxes and landmarks, written at close
        self._template: ImageTemplate | None = None
        self._closed = False
        # Resumable builds only (create_store/reopen_store with a journal): the lock,
        # the journal, the records of cases not yet in it, and the cases recovered.
        self.lock: BuildLock | None = None
        self.journal: Journal | None = None
        self._records: dict[int, dict[str, Any]] = {}
        self.recovered: dict[int, dict[str, Any]] = {}  # index -> journal record

    # -- writing cases -----------------------------------------------------------------
    def write_case(self, index: int, case: Case) -> None:
        """Write (or, for the stack, buffer) one harmonized case at ``index``. A volumes
        case may come as a ``WrittenCase`` whose group a worker wrote already
        (``worker_writes.py``): it is only recorded, or deleted if refused."""
        try:
            self._write_case(index, case)
        except BaseException:
            self._discard(case)
            raise

    def _write_case(self, index: int, case: Case) -> None:
        labels = self._claim(index, case)
        index = int(index)
        try:
            self._check_geometry(case)
            if self.journal is not None:
                record = case_record(index, case, labels)
                with self._lock:
                    record["template"] = ImageTemplate(case.image, case.mask).to_record()
                    self._records[index] = record
            self._write(index, case)
        except BaseException:
            with self._lock:  # let the caller retry or skip this index
                self._taken_ids.discard(str(self._ids.pop(index, "")).casefold())
                self._labels.discard(index)
                self._annotations.discard(index)
                self._records.pop(index, None)
            raise
        with self._lock:
            self._labels.add(index, labels)
            self._annotations.add(index, case)

    def _claim(self, index: int, case: Case) -> dict[str, Any]:
        if self._closed:
            raise StoreError(self.location, "the store writer is closed")
        if not isinstance(index, (int, np.integer)) or not 0 <= index < self.n_cases:
            raise StoreError(self.location,
                             f"case index {index!r} is outside 0..{self.n_cases - 1}")
        case_id = check_case_id(case.case_id, self.location)
        with self._lock:
            if index in self._ids:
                raise StoreError(self.location, f"case index {index} was already written "
                                 f"(as {self._ids[index]!r})")
            if case_id.casefold() in self._taken_ids:
                raise StoreError(self.location, f"case id {case_id!r} is written twice",
                                 hint="case ids must be unique in a store, ignoring case")
            labels = self._labels.check(case_id, case.labels, self.location)
            self._annotations.check(case, self._vocabulary(), self.location)
            self._check_row(case)
            self._ids[int(index)] = case_id
            self._taken_ids.add(case_id.casefold())
        return labels

    def _taken_names(self) -> set[str]:
        return set(self.reserved) | set(self._labels.names()) | GROUP_NAMES | {MANIFEST}

    def _vocabulary(self) -> Any:
        return self._attrs.get("labels", self._attrs.get("label_vocabulary"))

    def _check_row(self, case: Case) -> None:
        """Fail on the first case, not at close after the whole build, when the case's
        table row has a column that would clash with a store array."""
        clashes = sorted(set(map(str, case.row)) & self._taken_names())
        if clashes:
            raise StoreError(self.location, f"case {case.case_id!r}: table column(s) "
                             f"{', '.join(clashes)} clash with {self.layout} store arrays",
                             hint="rename those columns of the case table")

    def _check_geometry(self, case: Case) -> None:
        check_case_geometry(case, self.location)

    def _fit_template(self, case: Case, stack: bool) -> bool:
        """Check ``case`` against the first case (call under the lock); True when
        ``case`` is the first and the arrays must be created."""
        if self._template is None:
            self._template = ImageTemplate(case.image, case.mask)
            return True
        problem = self._template.mismatch(case.image, case.mask, stack)
        if problem:
            raise StoreError(self.location, f"case {case.case_id!r} does not fit the "
                             f"{self.layout} store: {problem}",
                             hint="harmonize every case to the same grid and dtype")
        return False

    def _write(self, index: int, case: Case) -> None:
        raise NotImplementedError

    def _discard(self, case: Case) -> None:
        """Remove what a refused case left in the store before the writer saw it."""

    def worker_destination(self):
        """Where Dask workers may write cases themselves (``worker_writes.py``), or
        None: this layout's cases are written by the build process only."""
        return None

    def _journal_unit(self, unit: str, indices: list[int]) -> None:
        """Journal the records of ``indices`` as ``unit``: call before the unit's
        completion marker, so that every complete case has its record."""
        if self.journal is None:
            return
        with self._lock:
            records = [self._records.pop(index) for index in sorted(indices)]
        self.journal.write_unit(unit, records)

    # -- resuming ----------------------------------------------------------------------
    def resume(self, case_ids: list[str]) -> None:
        """Take the cases that are complete in a reopened store (``recovered``, their
        journal records) as written; everything else is left for the build to redo."""
        records = self._complete_records(case_ids)
        for record in sorted(records, key=lambda r: r["index"]):
            index, case_id = record["index"], record["case_id"]
            if case_ids[index] != case_id:
                raise StoreError(self.location, f"the journal has case {case_id!r} at index "
                                 f"{index}, the source {case_ids[index]!r}",
                                 hint="rebuild with --overwrite")
            labels = self._labels.check(case_id, labels_from(record), self.location)
            self._labels.add(index, labels)
            self._annotations.add(index, Case(
                case_id, image=None, boxes=annotation_from("boxes", record["boxes"]),
                landmarks=annotation_from("landmarks", record["landmarks"])))
            self._ids[index] = case_id
            self._taken_ids.add(case_id.casefold())
            self.recovered[index] = record
        if records:
            self._template = ImageTemplate.from_records(records)
        self._after_resume()

    def _complete_records(self, case_ids: list[str]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _after_resume(self) -> None:
        """Remove what ``close`` writes (a killed close may have left part of it) and
        what unfinished cases left behind, so those are written afresh."""
        keep = self._kept_on_resume()
        with beside_hierarchy():
            names = [name for name, _ in self._root.members()]
        for name in names:
            if name not in keep:
                del self._root[name]

    def _kept_on_resume(self) -> set[str]:
        """Root nodes that hold complete cases (the rest is rewritten)."""
        raise NotImplementedError

    def _unit_records(self, unit: str) -> list[dict[str, Any]]:
        records = None if self.journal is None else self.journal.read_unit(unit)
        if records is None:
            raise StoreError(self.location, f"{unit} is complete but has no journal record",
                             hint="the store was not built resumably; rebuild with --overwrite")
        return records

    def abort(self) -> None:
        """An error exit: release the lock (the store stays unfinished, resumable)."""
        if self.lock is not None:
            self.lock.release()

    def _flush(self) -> None:
        """Write whatever is still buffered (the stack's partial shards)."""

    def _arrays_info(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- closing ---------------------------------------------------------------------
    def close(self, table: pd.DataFrame) -> None:
        """Flush, write labels and the case table, then the root attributes."""
        if self._closed:
            raise StoreError(self.location, "the store writer is already closed")
        with self._lock:
            check_table(table, self.n_cases, dict(self._ids), self._taken_names(),
                        self.location)
        self._flush()
        with self._lock:
            vocabulary = self._vocabulary()
            self._labels.write(self._root, vocabulary, self.location)
            annotations = self._annotations.write(
                self._root, vocabulary,
                None if self._template is None else self._template.spatial_ndim)
            arrays = self._arrays_info()  # before the table: its columns are in `table`
            table_info = write_table(self._root, table)
            self._closed = True
        failpoint("close")  # failpoint: killed with the table written, not finished
        medimg = dict(to_jsonable(self._attrs))
        medimg.update(
            schema_version=SCHEMA_VERSION, layout=self.layout, n_cases=self.n_cases,
            finished=True, table=table_info, arrays=arrays, annotations=annotations,
            image=None if self._template is None else self._template.to_attrs(
                self.layout == "stack"),
        )
        self._root.attrs["medimg"] = to_jsonable(medimg)
        self._finish()
        if self.journal is not None and len(self._ids) == self.n_cases:
            self.journal.remove()  # kept while cases failed: --resume retries them
        self.abort()

    # -- what differs between storage formats (Zarr here; HDF5 in formats/hdf5_writer.py) --
    def _finish(self) -> None:
        """Last step of ``close``, after the root attributes: the content manifest, then
        consolidation (so the consolidated metadata includes the manifest)."""
        write_manifest(self._root)
        consolidate(self._root)

    def _array_info(self, array) -> dict[str, Any]:
        return array_info(array)

    def _root_arrays_info(self) -> dict[str, Any]:
        """Every root array written so far, sorted: directory listing order varies, and
        the same inputs must give the same bytes."""
        with beside_hierarchy():
            arrays = sorted(self._root.arrays())
        return {name: self._array_info(array) for name, array in arrays}


def check_case_geometry(case: Case, location: str) -> None:
    """A mask must lie on its image's grid (the store keeps one grid per case)."""
    mask = case.mask
    if mask is None:
        return
    if mask.has_channels or mask.spatial_shape != case.image.spatial_shape:
        raise StoreError(location, f"case {case.case_id!r}: mask of shape "
                         f"{mask.array.shape} is not on the image grid "
                         f"{case.image.spatial_shape}")
    if not np.allclose(mask.affine, case.image.affine, atol=1e-4):
        raise StoreError(location, f"case {case.case_id!r}: the mask's affine "
                         "differs from the image's", hint="resample the mask onto the image")


def layout_options(layout: str, cases_per_shard: int | None, pyramid_levels: int
                   ) -> dict[str, Any]:
    """The writer options of ``layout`` (each layout takes its own)."""
    if layout == "stack":
        return {"cases_per_shard": cases_per_shard}
    return {"pyramid_levels": pyramid_levels}


@contextmanager
def beside_hierarchy():
    """Silence Zarr on listing a store with the build lock and journal in it: they are
    files beside the hierarchy on purpose (journal.py)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Object at .medimg-build")
        yield


def consolidate(root: zarr.Group) -> None:
    """One metadata document at the root, so that a reader on S3/HTTP opens the store
    in one request instead of one per array (and xarray stops warning)."""
    with warnings.catch_warnings():
        # Zarr v3 consolidated metadata is not in the spec yet; zarr-python and xarray
        # read it, and a reader without it still finds every zarr.json.
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        warnings.filterwarnings("ignore", message="Object at .medimg-build")  # journal.py
        zarr.consolidate_metadata(root.store, path=root.path)
