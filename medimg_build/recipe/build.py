"""Build a store from a recipe and a source folder: discover, harmonize (in parallel on
Dask when asked: ``parallel.py``), write, report. A bad case is reported and skipped,
never fatal."""

from __future__ import annotations

import platform
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from ..case import Case
from ..errors import MedimgError, RecipeError, StoreError, one_line, shown_items
from ..failpoints import failpoint
from ..labels import classification
from ..labels.segmentation import declared_classes, with_found_classes
from ..labels.splits import SplitPlan, plan_splits
from ..privacy import (
    deidentification_record, pseudonym_key, pseudonymize, scrub, warn_default_key,
)
from ..store import create_store
from ..store.contract import StoreWriter
from ..store.layouts import layout_named
from ..store.results import CaseFailed, CaseWritten
from ..store.replace import Replacing
from ..store.writer import reopen_store
from . import annotation_rows
from .annotation_rows import with_annotations
from .case_table import sha256_of
from .label_tables import chosen_table
from .model import Recipe
from .parallel import harmonized
from .paths import outside_problem, source_root, stored_text
from .pipeline import BuildContext, check_planned_size
from .scheduler import connect
from .scrubbed import (
    journal_names, journal_paths, source_identifiers, stored_failure, stored_skip_reasons,
)
from .sections import Classification
from .sources import CaseSource, list_sources

SHOWN_NAME_CHARS = 200  # of a skipped file's name in the summary
# pyarrow writes a Zarr store's cases.parquet, and names its version in the file.
_VERSIONED = ["medimg-build", "numpy", "pydicom", "nibabel", "SimpleITK", "Pillow",
              "tifffile", "zarr", "numcodecs", "xarray", "dask", "pandas", "pyarrow"]


@dataclass
class BuildReport:
    store: str
    built: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # found, not a case: path -> why
    # Built without something the recipe declares (its mask): image path -> what.
    incomplete: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    already_complete: int = 0  # --resume: cases found complete, not built again
    notes: list[str] = field(default_factory=list)  # e.g. a stale lock taken over
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)  # the case table
    # ``failed`` as the store keeps it (``stored_failure``); ``failed`` is for the console.
    stored_failed: dict[str, str] = field(default_factory=dict, repr=False)
    # The case of each ``incomplete`` entry (SourceListing.incomplete_cases).
    incomplete_cases: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.failed

    def settle(self) -> None:
        """Each case reported once, as what happened to it: a case listed as incomplete
        (to be built without its mask) that then failed is a failed case only."""
        self.incomplete = {where: why for where, why in self.incomplete.items()
                           if self.incomplete_cases.get(where) not in self.failed}

    def to_dict(self, source_dir: Path | None = None,
                key: bytes | None = None) -> dict[str, Any]:
        """The report as stored: errors as ``stored_failure`` made them, or else naming
        files relative to ``source_dir``, since the folders above it (a user's home, a
        patient-named download) are nobody's business and would make the content hash
        depend on where the source is."""
        failed = {case_id: self.stored_failed.get(case_id) or (
                  message if source_dir is None else
                  stored_text(message, source_dir, self.store))
                  for case_id, message in self.failed.items()}
        # Skipped files by reason only (reasons are relative since list_sources): their
        # paths (TCIA folders are patient IDs) stay on the console, out of the store.
        reported = {"built": len(self.built), "failed": failed,
                    "skipped": self._stored_counts(self.skipped, source_dir, key)}
        if self.incomplete:  # absent when none: stores built before it hash alike
            reported["incomplete"] = self._stored_counts(self.incomplete, source_dir, key)
        return {**reported, "seconds": round(self.seconds, 3)}

    @staticmethod
    def _stored_counts(found: dict[str, str], source_dir: Path | None,
                       key: bytes | None) -> dict[str, int]:
        reasons: dict[str, int] = {}
        for reason in (stored_skip_reasons(found, source_dir, key)
                       if source_dir is not None and key is not None else found.values()):
            reasons[reason] = reasons.get(reason, 0) + 1
        return reasons

    def summary(self) -> str:
        lines = [f"{self.store}: {len(self.built)} case(s) built, {len(self.failed)} failed "
                 f"in {self.seconds:.1f} s"
                 + (f"; {len(self.skipped)} source file(s) skipped" if self.skipped else "")
                 + (f"; {len(self.incomplete)} case(s) incomplete" if self.incomplete else "")]
        lines += _by_reason("skipped", self.skipped)
        lines += _by_reason("incomplete", self.incomplete)
        if self.already_complete:
            done = len(self.built) + len(self.failed)
            lines.append(f"  resumed: {self.already_complete} case(s) already complete"
                         + (" (all cases: nothing to redo)" if self.already_complete == done
                            else f", {done - self.already_complete} redone"))
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  failed {one_line(case_id, SHOWN_NAME_CHARS)}: {one_line(error)}"
                  for case_id, error in self.failed.items()]
        return "\n".join(lines)


def _by_reason(what: str, found: dict[str, str]) -> list[str]:
    """One line per reason: how many, why, and the first names (the rest counted)."""
    by_reason: dict[str, list[str]] = {}
    for path, reason in found.items():
        by_reason.setdefault(reason, []).append(path)
    # Names and reasons quote the source's cells and file names: one short line.
    return [f"  {what} {len(paths)}: {one_line(reason)}: "
            f"{shown_items((one_line(p, SHOWN_NAME_CHARS) for p in paths), 3)}"
            for reason, paths in by_reason.items()]


def build_store(recipe: Recipe, source_dir: str | Path, out: str | Path, *,
                workers: int = 1, scheduler: str | None = None, overwrite: bool = False,
                key: str | None = None, progress: bool = True,
                format: str | None = None, resume: bool = False,
                pyramid_levels: int | None = None,
                allow_failures: bool = False) -> BuildReport:
    """``format``: "zarr" or "hdf5" (default: HDF5 for a .h5/.hdf5 ``out``, else Zarr).

    ``pyramid_levels`` (volumes layout): the most resolution levels of each case, for
    OME-Zarr viewers (``medimg_build.store.pyramid``); it sets the recipe's
    ``store.pyramid_levels``, so the store's recipe records it and a resume keeps it.

    ``resume``: finish the store that an interrupted build of the same recipe and
    cases left at ``out``, redoing only the cases not complete in it (the result is the
    store an uninterrupted build makes; see ``medimg_build.store.journal``). A complete
    case whose source files changed since (their sha256 differs) is rebuilt, and the
    report's notes say so.

    ``overwrite``: the new store is built beside the old one and replaces it only when
    every case is built -- or, with ``allow_failures``, at least one
    (``medimg_build.store.replace``); otherwise the old store stays, and the report's
    notes say where the rebuild is."""
    if resume and overwrite:
        raise StoreError(str(out), "--resume and --overwrite exclude each other",
                         hint="--resume continues a store, --overwrite replaces it")
    started = time.perf_counter()
    if pyramid_levels is not None:
        recipe = recipe.with_overrides({"store": {"pyramid_levels": pyramid_levels}})
    check_planned_size(recipe)  # before the store or any case is touched
    source_dir = source_root(source_dir)  # one spelling: what is stored is relative to it
    if scheduler is not None:
        connect(scheduler).close()  # before the store is touched: no skeleton left behind
    secret, key_is_secret = pseudonym_key(key)
    if not key_is_secret:
        warn_default_key()
    listing = list_sources(recipe, source_dir, secret)
    declared, recipe = recipe, with_data_classes(with_source_labels(recipe, listing),
                                                 listing.cases)
    cases = with_annotations(listing.cases, recipe.labels, source_dir)
    splits = plan_case_splits(recipe, cases, source_dir, secret)
    table = recipe.source.table
    stack_masks = layout_named(recipe.layout).cases_share_arrays and any(
        c.mask_path is not None or c.mask_loader for c in cases)
    context = BuildContext(recipe=recipe, source_dir=source_dir, pseudonym_key=secret,
                           splits=splits, stack_masks=stack_masks,
                           label_table=chosen_table(table, source_dir, "source.table")[0]
                           if table else None)
    attrs = store_attributes(recipe, key_is_secret)
    attrs["recipe"] = declared.describe()  # as written; the source's own labels are in "labels"
    attrs["split"] = splits.describe()
    writer = _open_writer(recipe, cases, attrs, out, overwrite, format, resume,
                          key_check=pseudonymize("medimg-build key check", secret),
                          changed=_changed_source(source_dir, cases, secret))
    if isinstance(writer, Replacing):
        writer.accept_failures = allow_failures
    try:
        report = _write_cases(writer, recipe, cases, context, workers, scheduler, progress,
                              BuildReport(store=str(out), skipped=listing.skipped,
                                          incomplete=listing.incomplete,
                                          incomplete_cases=listing.incomplete_cases,
                                          notes=list(listing.notes)))
        report.seconds = time.perf_counter() - started
        attrs["labels"] = with_found_classes(attrs["labels"], report.rows)
        attrs["build_report"] = report.to_dict(source_dir, secret)
        writer.close(pd.DataFrame(report.rows), attrs)
    except BaseException:
        writer.abort()  # release the lock; the store stays resumable
        raise
    if writer.kept_old:
        report.notes.append(writer.kept_old)
    return report


def _open_writer(recipe: Recipe, cases: list[CaseSource], attrs: dict[str, Any],
                 out, overwrite: bool, format: str | None, resume: bool, key_check: str,
                 changed):
    """A new store's writer, or with ``resume`` the reopened store's. The journal
    identifies the build: a resume with another recipe, case list or pseudonymization
    key (``key_check``: a keyed hash of a constant, not the key) is refused; a case
    ``changed`` finds stale is rebuilt."""
    journal = {"recipe_sha256": attrs["recipe"]["sha256"],
               "case_ids": [c.case_id for c in cases], "key_check": key_check,
               "changed": changed}
    store = recipe.store
    options = dict(layout=recipe.layout, n_cases=len(cases), attrs=attrs, format=format,
                   cases_per_shard=store.cases_per_shard,
                   pyramid_levels=store.pyramid_levels)
    if resume:
        writer = reopen_store(out, journal=journal, **options)
    else:
        writer = create_store(out, overwrite=overwrite, journal=journal, **options)
    # Provenance is the part of the attrs that may differ between equal stores.
    if resume:
        attrs["provenance"]["resumed"] = {"already_complete": len(writer.recovered)}
    if writer.lock is not None and writer.lock.taken_over:
        # The note names the old holder's host: it stays on the console (report.notes).
        attrs["provenance"]["lock"] = "took over a stale lock"
    return writer


def _write_cases(writer: StoreWriter, recipe: Recipe, cases: list[CaseSource],
                 context: BuildContext,
                 workers: int, scheduler: str | None, progress: bool,
                 report: BuildReport) -> BuildReport:
    """Harmonize and write every case not recovered from a resumed store; the report's
    ``rows`` is the case table. Lists are in case order, not completion order."""
    rows: list[dict[str, Any]] = [{"case_id": c.case_id} for c in cases]
    built: dict[int, str] = {}
    failed: dict[int, tuple[str, str, str]] = {}
    for index, written in writer.recovered.items():
        rows[index] = {**written.row, "status": "built", "error": ""}
        built[index] = cases[index].case_id
    todo = {index: case for index, case in enumerate(cases) if index not in writer.recovered}
    if writer.lock is not None and writer.lock.taken_over:
        report.notes.append(writer.lock.taken_over)
    report.notes += [f"{case_id}: {why}; rebuilt" for case_id, why in writer.rebuilt.items()]
    report.already_complete = len(writer.recovered)
    bar = tqdm(total=len(cases), initial=len(built), unit="case", desc=recipe.name,
               disable=not progress)
    count = 0

    def record(result: CaseWritten | CaseFailed) -> None:
        nonlocal count
        index = result.index
        if isinstance(result, CaseWritten):
            rows[index] = {**result.row, "status": "built", "error": ""}
            built[index] = result.case_id
        else:
            stored = stored_failure(result, cases[index], context, report.store)
            rows[index].update(status="failed", error=stored)
            failed[index] = (result.case_id, result.message, stored)
        bar.set_postfix(failed=len(failed), refresh=False)
        bar.update()
        count += 1
        failpoint(str(count))  # failpoints.py: point "N" after N cases

    # One writer thread: a case is compressed and written while the next one is being
    # received or harmonized (the build process spent half its time writing); writes
    # stay one at a time and in arrival order, and at most two cases are held here.
    # Dask workers write Zarr cases (volumes) and shards (stack) themselves; those are
    # only recorded here.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medimg-writer") as pool:
        writing: Future | None = None
        for index, result in harmonized(todo, context, workers, scheduler,
                                        writer.worker_destination):
            if writing is not None:
                record(writing.result())
            writing = (_done(result) if isinstance(result, CaseFailed) else
                       pool.submit(_written, writer, index, result, cases[index],
                                   context.pseudonym_key))
        if writing is not None:
            record(writing.result())
    bar.close()
    report.built = [built[i] for i in sorted(built)]
    report.failed = {failed[i][0]: failed[i][1] for i in sorted(failed)}
    report.stored_failed = {failed[i][0]: failed[i][2] for i in sorted(failed)}
    report.rows = rows
    report.settle()
    return report


def with_data_classes(recipe: Recipe, cases: list[CaseSource]) -> Recipe:
    """``classes: from_data`` replaced by the sorted distinct values the source holds
    (a folder-per-class dataset names its classes only by its folders)."""
    specs = recipe.labels.classification
    if not any(spec.classes == "from_data" for spec in specs):
        return recipe
    written_labels = recipe.data["labels"]  # the YAML's, parsed again with the classes
    resolved = []
    for spec, written in zip(specs, written_labels["classification"]):
        if spec.classes == "from_data":
            unknown = set(spec.missing) | set(spec.none)
            found = {str(c.fields.get(spec.column, "")).strip() for c in cases}
            written = {**written, "classes": sorted(found - unknown)}
        resolved.append(written)
    return Recipe.from_dict({**recipe.data, "labels": {**written_labels,
                                                       "classification": resolved}},
                            recipe.path)


def with_source_labels(recipe: Recipe, listing) -> Recipe:
    """The recipe with the label vocabulary its source declares (a parser's
    ``ParsedListing.labels``, e.g. a Decathlon dataset.json's label names): each label
    kind's keys replace the recipe's, and the result is validated like a recipe."""
    found = getattr(listing, "labels", None)
    if not found:
        return recipe
    labels = {**recipe.data.get("labels", {})}
    for kind, spec in found.items():
        labels[kind] = {**labels.get(kind, {}), **spec} if isinstance(spec, dict) else spec
    return Recipe.from_dict({**recipe.data, "labels": labels}, recipe.path)


def store_attributes(recipe: Recipe, key_is_secret: bool) -> dict[str, Any]:
    """The root ``medimg`` attributes: what the store is and how it was made."""
    data = recipe.data  # recorded as written
    labels: dict[str, Any] = {
        "classification": {s.name: classification.vocabulary(s)
                           for s in recipe.labels.classification}}
    if recipe.labels.segmentation is not None:
        # nnU-Net's region definitions go with the classes: they say what a value means.
        segmentation = data["labels"]["segmentation"]
        labels["segmentation"] = {
            "classes": declared_classes(segmentation["classes"]),
            **{k: segmentation[k] for k in ("regions", "regions_class_order")
               if k in segmentation}}
    labels.update(annotation_rows.vocabulary(recipe.labels))
    return {
        "dataset": recipe.name,
        "title": recipe.name if recipe.title is None else recipe.title,
        "modality": recipe.modality,
        "organ": recipe.organ,
        "license": recipe.license or "",
        "citation": recipe.citation or "",
        "recipe": recipe.describe(),
        "harmonization": data["harmonize"],
        "labels": labels,
        "software": _versions(),
        "deidentification": deidentification_record(key_is_secret),
        # Excluded from content hashes: the only part that differs between two builds.
        "provenance": {"built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "python": platform.python_version(), "platform": platform.platform()},
    }


def plan_case_splits(recipe: Recipe, cases: list[CaseSource], source_dir: Path,
                     key: bytes) -> SplitPlan:
    """The recipe's split section applied to the discovered cases (patients known at
    discovery are pseudonymized exactly as the case table will be)."""
    spec = recipe.split
    stratify = spec.stratify
    label = next((s for s in recipe.labels.classification
                  if s.name == stratify), None)
    if stratify and label is None:
        raise RecipeError(recipe.path, f"split.stratify names {stratify!r}, which is not a "
                          "classification label of the recipe",
                          hint="use the name of one of labels.classification")
    strata = classification.strata(label, [_encoded(label, c) for c in cases]) \
        if label else [None] * len(cases)
    described = [(c.case_id, pseudonymize(str(c.patient_id), key) if c.patient_id else None,
                  c.image_path.name, stratum) for c, stratum in zip(cases, strata)]
    official = [c.fields.get(spec.column) for c in cases] if spec.column else None
    return plan_splits(spec, described, source_dir, official)


def _done(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def _written(writer: StoreWriter, index: int, case: Case | CaseWritten,
             source: CaseSource, key: bytes) -> CaseWritten | CaseFailed:
    """The case once written (by this process, or recorded when a worker wrote it), or
    why the store refused it (a stack case without the mask the others have, say):
    that case fails, the build goes on. Its source files are journaled by
    ``journal_names``."""
    try:
        if isinstance(case, CaseWritten):
            names = journal_names(case.record["sources"], source_identifiers(source), key)
            return writer.write_case(index, case.with_record(sources=names))
        case.sources = journal_names(case.sources, source_identifiers(source), key)
        return writer.write_case(index, case)
    except MedimgError as error:
        return CaseFailed(index, source.case_id, error)


def _encoded(label: Classification, case: CaseSource) -> int | Any:
    """A case's label for stratification; a bad cell is the case's own failure later,
    here it only counts as unknown."""
    try:
        return classification.encode(label, case.fields.get(label.column), case.case_id)
    except MedimgError:
        return classification.encode(label, None, case.case_id)


def _changed_source(source_dir: Path, cases: list[CaseSource], key: bytes):
    """For ``--resume``: a journaled case record -> why it is stale, or None. Stale: a
    file it was built from changed or is gone, or the case now has a file it was built
    without (a mask added since). A journal name that is no file (``journal_names``
    scrubbed it) is looked for among the case's files, named the same way."""
    root = source_dir.resolve()
    by_id = {case.case_id: case for case in cases}

    def changed(record: dict[str, Any]) -> str | None:
        built_from = record.get("sources") or {}
        case = by_id.get(record.get("case_id"))
        named = _files_named(case, root) if case is not None else []
        # Names come from the store's journal: one naming '../x' is never looked at.
        found = {name: root / name for name in built_from
                 if outside_problem(name) is None and (root / name).is_file()}
        if case is not None and (len(found) < len(built_from)
                                 or any(n not in built_from for n in named)):
            identifiers = source_identifiers(case)
            named = [scrub(name, identifiers, key) for name in named]
            found.update({name: path for name, path in
                          journal_paths(case, root, identifiers, key).items()
                          if name in built_from and name not in found})
        for name in named:
            if name not in built_from:
                return f"source added since it was built ({name})"
        for name, digest in built_from.items():
            if name not in found:
                return f"source gone since it was built ({name})"
            if sha256_of(found[name]) != digest:
                return f"source changed since it was built ({name})"
        return None

    return changed


def _files_named(case: CaseSource, root: Path) -> list[str]:
    """The mask and channel files discovery gives ``case`` (read as they are, not
    through a loader), relative to the resolved source folder ``root``: each one is
    among the sources of the case once built. (The image file names the case itself.)"""
    files = [] if case.loader else list(case.channels)
    if case.mask_path is not None and not case.mask_loader:
        files.append(case.mask_path)
    found = []
    for path in files:
        try:
            if path.is_file():
                found.append(path.resolve().relative_to(root).as_posix())
        except ValueError:
            continue  # outside the source folder: never recorded (source_digests)
    return found


def _versions() -> dict[str, str]:
    found = {}
    for name in _VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found
