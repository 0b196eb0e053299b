"""What both layouts' writers share: case bookkeeping, labels, table, root attributes.

A layout fills in only what differs (``BaseWriter``'s abstract methods); everything
else happens here, so the two layouts cannot drift apart on ids, labels, the table or
the root attributes. What differs between formats the writer asks its ``StoreFormat``
(``writing_case``, ``array_info``, ``finish``, ``writes_from_workers``).

Thread safety: ``write_case`` may be called from several threads. Bookkeeping is under
one lock; pixel writes happen outside it, and each one touches only chunks no other
call touches (its own shard or its own case group).
"""

from __future__ import annotations

import copy
import re
import threading
import warnings
from abc import abstractmethod
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from ..case import Case
from ..errors import StoreError
from ..failpoints import failpoint
from ..provenance import to_jsonable
from .annotation_tables import GROUP_NAMES, AnnotationBuffer, check_on_grid, check_types
from .contract import StoreWriter, WorkerDestination
from .journal import Journal
from .classification import ClassificationBuffer
from .schema import CHANNEL, MANIFEST, SCHEMA_VERSION, check_case_id
from .results import CaseWritten, case_written
from .table import PARQUET_KEY, check_table, write_table


class ImageTemplate:
    """What every case of a store must share with the first one written
    (``results.template_record``, as each case's record holds it)."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.spatial_ndim, self.channel_axis = record["spatial_ndim"], record["channel_axis"]
        self.n_channels, self.dtype = record["n_channels"], np.dtype(record["dtype"])
        self.spatial_shape = tuple(record["spatial_shape"])
        self.mask_dtype = None if record["mask_dtype"] is None else np.dtype(record["mask_dtype"])

    @classmethod
    def from_records(cls, records: list[dict[str, Any]]) -> ImageTemplate:
        """The template of a resumed store, from its complete cases' journal records
        (any case will do: all share what the template checks)."""
        return cls(records[0]["template"])

    def mismatch(self, case: ImageTemplate, stack: bool) -> str | None:
        """A description of how a case (its template) differs from this one, or None.

        The stack has one array for all cases: same shape, channels and dtype, and a
        mask for every case or for none. A volumes case has its own arrays, so only
        the dtype (chosen per modality) and the number of spatial axes (the arrays'
        dims) are shared; a case may lack a mask, and its mask is uint8 or uint16 as
        its own values need (``labels.segmentation.label_dtype``)."""
        checks = [
            ("spatial axes", self.spatial_ndim, case.spatial_ndim),
            ("dtype", self.dtype, case.dtype),
        ]
        if stack:
            checks += [("mask dtype", self.mask_dtype, case.mask_dtype),
                       ("channel axis", self.channel_axis, case.channel_axis),
                       ("channels", self.n_channels, case.n_channels),
                       ("shape", self.spatial_shape, case.spatial_shape)]
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


class BaseWriter(StoreWriter):
    """The writer of both layouts (``stack.py``, ``volumes.py``) in every format: its
    ``layout`` (a ``layouts.Layout``) made it, its ``store_format`` (a
    ``formats.StoreFormat``) opened ``root``.

    A layout writes pixels (``_write``), flushes what it buffered (``_flush``), lists
    the records of the cases a reopened store holds complete (``_complete_records``) and
    the root nodes that hold them (``_kept_on_resume``), and describes its arrays
    (``_arrays_info``)."""

    reserved: frozenset[str] = frozenset()  # root names no table column may take

    def __init__(self, layout, store_format, root, location: str, n_cases: int,
                 attrs: dict[str, Any], compressor) -> None:
        super().__init__(location, n_cases)
        self.layout, self._format = layout, store_format
        self._root = root
        # A copy: what the caller changes later reaches the store only through close.
        self._attrs = copy.deepcopy(attrs)
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
        # Resumable builds only (create_store/reopen_store with a journal): the journal
        # and the records of cases not yet in it.
        self.journal: Journal | None = None
        self._records: dict[int, dict[str, Any]] = {}

    # -- writing cases -----------------------------------------------------------------
    def write_case(self, index: int, case: Case | CaseWritten) -> CaseWritten:
        """Write (or, for the stack, buffer) one harmonized case at ``index``; a
        ``CaseWritten`` whose group a worker wrote already (``volumes.CaseDestination``)
        is only recorded, or deleted if refused."""
        try:
            if isinstance(case, CaseWritten):
                return self._accept(index, case, None)
            check_types(case.case_id, {kind: getattr(case, kind) for kind in GROUP_NAMES},
                        self.location)  # before its record is made of them
            return self._accept(index, case_written(index, case), case)
        except BaseException:
            if isinstance(case, CaseWritten):
                self._discard(case)
            raise

    def _accept(self, index: int, written: CaseWritten, case: Case | None) -> CaseWritten:
        """Claim ``index`` for the case, check it, journal it and write its pixels
        (``case``; None when a worker wrote them)."""
        found = {kind: getattr(case, kind) if case is not None else written.annotation(kind)
                 for kind in GROUP_NAMES}
        labels = self._claim(index, written, case.labels if case is not None
                             else written.labels(), found)
        index = int(index)
        try:
            if case is not None:
                check_case_geometry(case, self.location)
            written = written.with_record(labels=to_jsonable(labels))
            if self.journal is not None:
                with self._lock:
                    self._records[index] = written.record
            with self._format.writing_case(self._root):
                self._write(index, written, case)
        except BaseException:
            with self._lock:  # let the caller retry or skip this index
                self._taken_ids.discard(str(self._ids.pop(index, "")).casefold())
                self._labels.discard(index)
                self._annotations.discard(index)
                self._records.pop(index, None)
            raise
        with self._lock:
            self._labels.add(index, labels)
            self._annotations.add(index, written.case_id, found)
        return written

    def _claim(self, index: int, written: CaseWritten, labels: dict[str, Any],
               found: dict[str, Any]) -> dict[str, Any]:
        if self._closed:
            raise StoreError(self.location, "the store writer is closed")
        if not isinstance(index, (int, np.integer)) or not 0 <= index < self.n_cases:
            raise StoreError(self.location,
                             f"case index {index!r} is outside 0..{self.n_cases - 1}")
        if written.index != index:
            raise StoreError(self.location, f"case {written.case_id!r} was written as "
                             f"index {written.index}, not {index}")
        case_id = check_case_id(written.case_id, self.location)
        with self._lock:
            if index in self._ids:
                raise StoreError(self.location, f"case index {index} was already written "
                                 f"(as {self._ids[index]!r})")
            if case_id.casefold() in self._taken_ids:
                raise StoreError(self.location, f"case id {case_id!r} is written twice",
                                 hint="case ids must be unique in a store, ignoring case")
            labels = self._labels.check(case_id, labels, self.location)
            self._annotations.check(case_id, found, self._vocabulary(), self.location)
            self._check_row(case_id, written.row)
            self._ids[int(index)] = case_id
            self._taken_ids.add(case_id.casefold())
        return labels

    def _taken_names(self) -> set[str]:
        return (set(self.reserved) | set(self._labels.names()) | GROUP_NAMES
                | {MANIFEST, PARQUET_KEY})

    def _vocabulary(self, attrs: dict[str, Any] | None = None) -> Any:
        attrs = self._attrs if attrs is None else attrs
        return attrs.get("labels", attrs.get("label_vocabulary"))

    def _check_row(self, case_id: str, row: dict[str, Any]) -> None:
        """Fail on the first case, not at close after the whole build, when the case's
        table row has a column that would clash with a store array."""
        clashes = sorted(set(map(str, row)) & self._taken_names())
        if clashes:
            raise StoreError(self.location, f"case {case_id!r}: table column(s) "
                             f"{', '.join(clashes)} clash with {self.layout.name} store "
                             "arrays",
                             hint="rename those columns of the case table")

    def _fit_template(self, written: CaseWritten) -> bool:
        """Check the case against the first case (call under the lock); True when it
        is the first and the arrays must be created."""
        case = ImageTemplate(written.template)
        if self._template is None:
            self._template = case
            return True
        error = misfit_error(self._template, case, written.case_id, self.location,
                             self.layout.name, self.layout.cases_share_arrays)
        if error is not None:
            raise error
        return False

    @abstractmethod
    def _write(self, index: int, written: CaseWritten, case: Case | None) -> None:
        """Write the pixels of ``case`` (None: a worker wrote them) and mark it complete."""

    def _discard(self, written: CaseWritten) -> None:
        """Remove what a refused case left in the store before the writer saw it; only
        a layout whose workers write cases leaves anything."""

    def worker_destination(self, first: dict[str, Any] | None = None
                           ) -> WorkerDestination | None:
        """None: this layout's cases are written by the build process only."""
        return None

    def cases_in_store(self) -> int:
        with self._lock:
            return len(self._ids)

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
        """Take the cases that are complete in a reopened store (``recovered``, from
        their journal records) as written; everything else is left for the build to
        redo."""
        records = self._complete_records(case_ids)
        for record in sorted(records, key=lambda r: r["index"]):
            written = CaseWritten(record["index"], record)
            index, case_id = written.index, written.case_id
            if case_ids[index] != case_id:
                raise StoreError(self.location, f"the journal has case {case_id!r} at index "
                                 f"{index}, the source {case_ids[index]!r}",
                                 hint="rebuild with --overwrite")
            labels = self._labels.check(case_id, written.labels(), self.location)
            self._labels.add(index, labels)
            self._annotations.add(index, case_id, {kind: written.annotation(kind)
                                                   for kind in GROUP_NAMES})
            self._ids[index] = case_id
            self._taken_ids.add(case_id.casefold())
            self.recovered[index] = written
        if records:
            self._template = ImageTemplate.from_records(records)
        self._after_resume()

    @abstractmethod
    def _complete_records(self, case_ids: list[str]) -> list[dict[str, Any]]:
        """The journal records of the cases complete in a reopened store; what an
        incomplete case left is removed."""

    def _after_resume(self) -> None:
        """Remove what ``close`` writes (a killed close may have left part of it) and
        what unfinished cases left behind, so those are written afresh."""
        keep = self._kept_on_resume()
        with beside_hierarchy():
            names = [name for name, _ in self._root.members()]
        for name in names:
            if name not in keep:
                del self._root[name]

    @abstractmethod
    def _kept_on_resume(self) -> set[str]:
        """Root nodes that hold complete cases (the rest is rewritten)."""

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
        """Write whatever is still buffered; only the stack buffers (partial shards)."""

    @abstractmethod
    def _arrays_info(self) -> dict[str, Any]:
        """The root attrs' ``arrays``: each array of the layout described."""

    # -- closing ---------------------------------------------------------------------
    def close(self, table: pd.DataFrame, attrs: dict[str, Any] | None = None) -> None:
        """Flush, write labels and the case table, then ``attrs`` (by default those the
        store was created with) and what the writer knows as the root attributes."""
        if self._closed:
            raise StoreError(self.location, "the store writer is already closed")
        attrs = self._attrs if attrs is None else attrs
        with self._lock:
            check_table(table, self.n_cases, dict(self._ids), self._taken_names(),
                        self.location)
        self._flush()
        with self._lock:
            vocabulary = self._vocabulary(attrs)
            self._labels.write(self._root, vocabulary, self.location)
            annotations = self._annotations.write(
                self._root, vocabulary,
                None if self._template is None else self._template.spatial_ndim)
            arrays = self._arrays_info()  # before the table: its columns are in `table`
            table_info = write_table(self._root, table)
            complete = np.isin(np.arange(self.n_cases), list(self._ids))
            self._closed = True
        failpoint("close")  # failpoint: killed with the table written, not finished
        medimg = dict(to_jsonable(attrs))
        medimg.update(
            schema_version=SCHEMA_VERSION, layout=self.layout.name, n_cases=self.n_cases,
            finished=True, table=table_info, arrays=arrays, annotations=annotations,
            image=None if self._template is None else self._template.to_attrs(
                self.layout.cases_share_arrays),
        )
        self._root.attrs["medimg"] = to_jsonable(medimg)
        from .table_arrow import stored_case_table  # pyarrow: at close, not on workers

        self._format.keep_case_table(
            self._root, lambda: stored_case_table(self._root, medimg, complete))
        self._format.finish(self._root)
        if self.journal is not None and len(self._ids) == self.n_cases:
            self.journal.remove()  # kept while cases failed: --resume retries them
        self.abort()

    def _root_arrays_info(self) -> dict[str, Any]:
        """Every root array written so far, sorted: directory listing order varies, and
        the same inputs must give the same bytes."""
        with beside_hierarchy():
            arrays = sorted(self._root.arrays())
        return {name: self._format.array_info(array) for name, array in arrays}


def misfit_error(store: ImageTemplate, case: ImageTemplate, case_id: str, location: str,
                 layout: str, stack: bool) -> StoreError | None:
    """The refusal of a case (its template) that does not fit the store's, or None:
    the same words whether the build process or a worker checks it."""
    problem = store.mismatch(case, stack)
    if not problem:
        return None
    # A stack's masks, one array: uint8 and uint16 (a label above 255) cannot share it.
    masks_differ = problem.startswith("mask dtype") and None not in (store.mask_dtype,
                                                                     case.mask_dtype)
    hint = ("declare the classes in labels.segmentation.classes: their largest value "
            "sets one mask dtype for all" if masks_differ
            else "harmonize every case to the same grid and dtype")
    return StoreError(location, f"case {case_id!r} does not fit the {layout} store: "
                      f"{problem}", hint=hint)


def check_case_geometry(case: Case, location: str) -> None:
    """A mask, boxes and landmarks must lie on their image's grid (the store keeps one
    grid per case): checked where the pixels are, in a worker that writes the case."""
    check_on_grid(case, location)
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


@contextmanager
def beside_hierarchy():
    """Silence Zarr on listing a store with the build lock and journal (journal.py) or
    the case table's Parquet file (table_arrow.py) in it: objects beside the hierarchy
    on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=BESIDE_HIERARCHY)
        yield


# Zarr's warning on listing a group that holds an object that is no node.
BESIDE_HIERARCHY = rf"Object at (\.medimg-build|{re.escape(PARQUET_KEY)})"
