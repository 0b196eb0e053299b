"""``create_store``: a new, empty store and the writer of its layout.

The layouts are described in the package docstring (``medimg_build.store``) and are
the classes of ``layouts.py`` (``layout_named``); their writers are in ``stack.py`` and
``volumes.py``, what they share in ``base.py``. Which format a store is, and how that
format creates it, is ``formats.pick_format``'s choice (``formats/``); resuming
(``reopen_store``) is Zarr's.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import zarr

from ..errors import StoreError
from ..provenance import to_jsonable
from .base import BaseWriter
from .contract import StoreWriter
from .formats import pick_format
from .formats.zarr_format import ZARR, only_build_files
from .layouts import Layout, layout_named
from .journal import BuildLock, Journal, remove_partial_writes
from .replace import Replacing, is_local, rebuilds_beside
from .results import CaseWritten
from .schema import CASES_GROUP, COMPLETE, IMAGE, SCHEMA_VERSION, default_compressor


def create_store(path: str | os.PathLike, layout: str, n_cases: int,
                 attrs: dict[str, Any] | None = None, cases_per_shard: int | None = None,
                 compressor=None, overwrite: bool = False,
                 format: str | None = None,
                 journal: dict[str, Any] | None = None,
                 pyramid_levels: int = 1) -> StoreWriter:
    """Create an empty store at ``path`` (a local path or an fsspec URL) and return the
    writer that fills it (``contract.StoreWriter``): ``write_case(index, case)`` for
    each case, then ``close(table, attrs)``.

    ``attrs`` is the root ``medimg`` attribute while the store is built (the writer adds
    the schema version, layout, table and array descriptions); the final one, a build
    report added say, is given to ``close``. ``cases_per_shard`` applies to the stack
    only (default: ~64 MiB of image per shard). ``compressor`` is a Zarr v3
    bytes-to-bytes codec for image and mask (default Blosc zstd-3 with byte shuffle).

    ``format`` is "zarr" or "hdf5" (one HDF5 file of the same schema, see
    ``formats/hdf5_backend.py``); by default HDF5 for a ``.h5``/``.hdf5`` path, else Zarr. An
    HDF5 ``compressor`` is a dict of h5py filter arguments (default gzip-4 + shuffle).

    ``pyramid_levels`` (volumes only) is the most resolution levels a case gets: 1, the
    default, writes the harmonized grid alone; more adds levels halved in-plane (and
    along z where that keeps voxels sensible), fewer where the image is too small to
    halve (``pyramid.py``).

    ``journal`` = {"recipe_sha256", "case_ids"} makes a Zarr build resumable
    (``reopen_store``) and locked against a second build (see ``journal.py``; an HDF5
    build is locked too, not resumable); the writer releases the lock at ``close`` or
    ``abort``.

    ``overwrite`` replaces an existing store without losing it first: the new one is
    built beside it and swapped in by ``close`` (``replace.py``); the writer is then a
    ``Replacing`` one.
    """
    location = os.fspath(path)
    store_layout = layout_named(layout, location)
    if not isinstance(n_cases, (int, np.integer)) or n_cases < 1:
        raise StoreError(location, f"a store needs at least one case, got n_cases={n_cases!r}")
    if cases_per_shard is not None and cases_per_shard < 1:
        raise StoreError(location, f"cases_per_shard must be >= 1, got {cases_per_shard}")
    attrs = {} if attrs is None else attrs
    new = NewStore(store_layout, int(n_cases), attrs, compressor,
                   _options(location, store_layout, cases_per_shard, pyramid_levels))
    return pick_format(location, format, writing=True).create_writer(
        location, new, overwrite, journal)


def reopen_store(path: str | os.PathLike, layout: str, n_cases: int,
                 attrs: dict[str, Any], journal: dict[str, Any],
                 cases_per_shard: int | None = None, compressor=None,
                 format: str | None = None, pyramid_levels: int = 1) -> StoreWriter:
    """Reopen the unfinished (or failed-case) store that a build of the same recipe
    and cases left at ``path``, for ``build_store(resume=True)``: the writer's
    ``recovered`` holds the journal records of the cases already complete; every other
    case is to be written again. A missing store is created as by ``create_store``;
    so is one killed before its first write (only its lock and journal are there).

    An ``--overwrite`` rebuild killed midway left its rebuild beside the old store
    (``replace.py``): that is what is resumed, and swapped in at close.

    ``journal["changed"]``, if given, is called with each journaled case record and
    returns why the case is stale (a source file changed since), or None; stale cases
    are rebuilt, and listed in the writer's ``rebuilt`` (case id -> why)."""
    location = os.fspath(path)
    store_layout = layout_named(layout, location)
    options = _options(location, store_layout, cases_per_shard, pyramid_levels)
    pick_format(location, format, writing=True).refuse_resume(location)
    new = NewStore(store_layout, int(n_cases), attrs, compressor, options)
    rebuilds = rebuilds_beside(location) if is_local(location) else []
    if len(rebuilds) > 1:
        raise StoreError(location, f"{len(rebuilds)} interrupted rebuilds lie beside it: "
                         f"{', '.join(rebuilds)}", hint="delete all but the one to resume")
    fs, fs_path = fsspec.core.url_to_fs(location)
    if not rebuilds and not fs.exists(fs_path):
        return create_store(location, layout, n_cases, attrs, cases_per_shard, compressor,
                            journal=journal, pyramid_levels=pyramid_levels)
    lock = BuildLock(location)
    lock.acquire()
    try:
        if not rebuilds:
            return _reopen(location, lock, new, journal)
        inner_lock = BuildLock(rebuilds[0])
        inner_lock.acquire()
        try:
            return Replacing(_reopen(rebuilds[0], inner_lock, new, journal), location, lock)
        except BaseException:
            inner_lock.release()
            raise
    except BaseException:
        lock.release()
        raise


def _reopen(location: str, lock: BuildLock, new: NewStore, journal: dict[str, Any]
            ) -> StoreWriter:
    """``reopen_store`` of the store at ``location``, its lock held."""
    remove_partial_writes(location)
    if only_build_files(location):
        Journal(location).remove()  # killed before writing anything: start it afresh
        writer = new.writer(location, journal)
        writer.lock = lock
        return writer
    root, medimg = _open_for_resume(location)
    case_ids = list(journal["case_ids"])
    known = Journal(location).cases()
    if known is None and medimg.get("finished") and "case" in root:
        known = {"recipe_sha256": None, "case_ids": root["case"][:].tolist()}
    _check_same(location, medimg, new.layout.name, journal, known)
    if medimg.get("finished") and Journal(location).cases() is None:
        return FinishedStore(location, lock, case_ids)  # close removed the journal
    rebuilt = forget_changed(root, Journal(location), journal.get("changed"))
    root.attrs["medimg"] = new.initial()  # unfinished (and unconsolidated) while resuming
    writer = new.zarr_writer(root, location)
    writer.lock, writer.journal = lock, Journal(location)
    writer.journal.start(journal.get("recipe_sha256"), case_ids, journal.get("key_check"))
    writer.resume(case_ids)
    writer.rebuilt = rebuilt
    return writer


@dataclass(frozen=True)
class NewStore:
    """What ``create_store`` and ``reopen_store`` make a writer of (``options``: the
    layout's, from ``Layout.options``)."""

    layout: Layout
    n_cases: int
    attrs: dict[str, Any]
    compressor: Any
    options: dict[str, Any]

    def initial(self) -> dict[str, Any]:
        """The root attribute until close: a reader that finds finished=False knows
        the build was interrupted rather than mistaking the store for a whole one."""
        return dict(to_jsonable(self.attrs), schema_version=SCHEMA_VERSION,
                    layout=self.layout.name, n_cases=self.n_cases, finished=False)

    def writer(self, location: str, journal: dict[str, Any] | None) -> BaseWriter:
        """A new store at ``location`` (absent, or holding only the build's lock)."""
        # mode "a": "w" would delete the lock just taken.
        root = zarr.open_group(location, mode="a", zarr_format=3,
                               attributes={"medimg": self.initial()})
        writer = self.zarr_writer(root, location)
        if journal is not None:
            writer.journal = Journal(location)
            writer.journal.start(journal.get("recipe_sha256"), list(journal["case_ids"]),
                                 journal.get("key_check"))
        return writer

    def zarr_writer(self, root, location: str) -> BaseWriter:
        return self.layout.writer(ZARR, root, location, self.n_cases, self.attrs,
                                  self.compressor or default_compressor(), self.options)


class FinishedStore(StoreWriter):
    """A finished store whose every case is complete (close removed its journal only
    then): resuming it has nothing to do, and its close leaves the store untouched.
    Its journal is gone, so what it recovers is each case's index and id only."""

    def __init__(self, location: str, lock: BuildLock, case_ids: list[str]) -> None:
        super().__init__(location, len(case_ids), lock)
        self.recovered = {index: CaseWritten(index, {"index": index, "case_id": case_id,
                                                     "row": {}})
                          for index, case_id in enumerate(case_ids)}

    def write_case(self, index: int, case) -> CaseWritten:
        raise StoreError(self.location, "the store is finished; no case is left to write")

    def worker_destination(self, first=None) -> None:
        return None

    def cases_in_store(self) -> int:
        return len(self.recovered)

    def close(self, table=None, attrs=None) -> None:
        self.lock.release()

    def abort(self) -> None:
        self.lock.release()


def _options(location: str, layout: Layout, cases_per_shard: int | None,
             pyramid_levels: Any) -> dict[str, Any]:
    """The writer options of ``layout``, once the pyramid levels are a count."""
    if not isinstance(pyramid_levels, (int, np.integer)) or pyramid_levels < 1:
        raise StoreError(location, f"pyramid levels must be an integer >= 1, got "
                         f"{pyramid_levels!r}", hint="1 is no pyramid; e.g. --pyramid 4")
    return layout.options(location, cases_per_shard, pyramid_levels)


def _open_for_resume(location: str):
    """The root group without its consolidated metadata (stale once cases change),
    and its ``medimg`` attribute."""
    try:
        root = zarr.open_group(location, mode="a", zarr_format=3, use_consolidated=False)
        medimg = root.attrs.get("medimg")
    except Exception as error:
        raise StoreError(location, f"cannot reopen the store to resume it "
                         f"({type(error).__name__})",
                         hint="rebuild with --overwrite") from error
    if not isinstance(medimg, dict) or "layout" not in medimg:
        raise StoreError(location, "is not a medimg store; cannot resume it",
                         hint="choose another --out")
    return root, medimg


def _check_same(location: str, medimg: dict[str, Any], layout: str,
                journal: dict[str, Any], known: dict[str, Any] | None) -> None:
    """One line on what differs between the stored build and this one."""
    def refuse(problem: str) -> None:
        raise StoreError(location, f"cannot resume: {problem}",
                         hint="use --overwrite to rebuild it")

    if known is None:
        refuse("the store has no build journal (not built resumably, or already finished)")
    if medimg["layout"] != layout:
        refuse(f"the store's layout is {medimg['layout']}, the recipe's {layout}")
    stored_sha = (medimg.get("recipe") or {}).get("sha256")
    if stored_sha != journal.get("recipe_sha256"):
        refuse(f"the store was built by recipe {str(stored_sha)[:12]}, not by this "
               f"recipe {str(journal.get('recipe_sha256'))[:12]}")
    if known.get("key_check") and known["key_check"] != journal.get("key_check"):
        refuse("the pseudonymization key differs from the interrupted build's (patient "
               "ids and splits would mix two keys)")
    stored, ids = list(known["case_ids"]), list(journal["case_ids"])
    if len(stored) != len(ids):
        refuse(f"the store has {len(stored)} cases, the source {len(ids)}")
    for index, (old, new) in enumerate(zip(stored, ids)):
        if old != new:
            refuse(f"case {index} is {old!r} in the store but {new!r} in the source")


def forget_changed(root, journal: Journal, changed) -> dict[str, str]:
    """Mark incomplete every journaled case that ``changed(record)`` finds stale, so
    that the resume rebuilds it: a volumes case's group is deleted, a stack case's
    whole shard is marked incomplete (shards are rewritten whole). Case id -> why."""
    if changed is None:
        return {}
    records = journal.records()
    with ThreadPoolExecutor(max_workers=4) as pool:  # hashing reads every source file
        reasons = list(pool.map(changed, records))
    stale = {record["index"]: (record["case_id"], reason)
             for record, reason in zip(records, reasons) if reason is not None}
    cases = root[CASES_GROUP] if CASES_GROUP in root else None
    for index, (case_id, _) in sorted(stale.items()):
        if cases is not None and case_id in cases:
            del cases[case_id]
        elif cases is None and IMAGE in root and COMPLETE in root:
            per_shard = int(root[IMAGE].shards[0])
            start = index // per_shard * per_shard
            root[COMPLETE][start:start + per_shard] = False
    return {case_id: reason for case_id, reason in stale.values()}
