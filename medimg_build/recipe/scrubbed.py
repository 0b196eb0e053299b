"""What a build stores about its source files, scrubbed of the identifiers of the
cases' own DICOM headers (``privacy.scrub``): a failed case's error, why a file was
skipped, the names its journal gives a case's files -- and where those identifiers are
read from, for a case that may have failed before any header was read.

The case table's own row is scrubbed where it is made (``case_table.case_row``)."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import located, printable
from ..privacy import identifying_values_of_files, scrub
from .paths import relative_path, stored_path, stored_text

if TYPE_CHECKING:
    from ..store.results import CaseFailed
    from .pipeline import BuildContext
    from .sources import CaseSource


def stored_failure(failed: CaseFailed, source: CaseSource, context: BuildContext,
                   store: str) -> str:
    """A failed case's error as the store keeps it (the table's ``error`` column, the
    build report, so the QC report): the file it names relative to the source folder
    (``stored_path``, by the path itself), and the files its text quotes
    (``stored_text``); the case's own file or folder called by its case id where that
    file does not name the case (a DICOM series, a folder named after its patient,
    whose id is a pseudonym); and every identifying value of the case's headers, in any
    spelling, scrubbed (a SeriesDescription quoted). The console shows the message as
    it was."""
    error = failed.error
    path = None if error.given_path is None else \
        stored_path(error.given_path, context.source_dir, store)
    detail = stored_text(error.detail(), context.source_dir, store)
    if source.case_id not in source.image_path.name:
        where = relative_path(source.image_path, context.source_dir)
        detail = re.sub(rf"(?<![\w.~/-]){re.escape(where)}(?![\w.~-])",
                        lambda _: source.case_id, detail)
        if path is not None and (path == where or path.startswith(f"{where}/")):
            path = source.case_id + path[len(where):]
    text = located(None if path is None else printable(path), detail)
    return scrub(text, source_identifiers(source), context.pseudonym_key)


def stored_skip_reason(reason: str, path: Path, key: bytes) -> str:
    """Why a file was skipped, as the store counts it: scrubbed of the identifying
    values of its own headers where the reason quotes a name (a case id that is no safe
    name, the file it duplicates). A skipped file's own path stays on the console."""
    if not _quotes_a_name(reason):
        return reason  # spare the header read
    return scrub(reason, path_identifiers(path), key)


def stored_skip_reasons(skipped: dict[str, str], source_dir: Path, key: bytes) -> list[str]:
    """``stored_skip_reason`` of each skipped file (relative name -> why). An image
    table's row ("table.csv: name.dcm") is read as the image it names, found by its file
    name under the source folder as image tables find it: the reason quotes that name
    (a case id that is no safe name, the row's mask)."""
    by_name: dict[str, Path] | None = None
    reasons = []
    for where, reason in skipped.items():
        path = source_dir / where
        _, row, name = where.partition(": ")
        if row and _quotes_a_name(reason) and not path.exists():
            by_name = _files_by_name(source_dir) if by_name is None else by_name
            path = by_name.get(name, path)
        reasons.append(stored_skip_reason(reason, path, key))
    return reasons


def _quotes_a_name(reason: str) -> bool:
    return "'" in reason or "/" in reason


def _files_by_name(root: Path) -> dict[str, Path]:
    """Each file name under ``root`` -> its first file (links to folders not followed)."""
    found: dict[str, Path] = {}
    for folder, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            found.setdefault(name, Path(folder) / name)
    return found


def journal_names(sources: dict[str, str], identifiers: set[str],
                  key: bytes) -> dict[str, str]:
    """A case's source files (relative name -> sha256) as its journal record keeps
    them: scrubbed of ``identifiers``, those of the case's headers as
    ``source_identifiers`` reads them at the build and at a resume alike (a TCIA folder
    is named by PatientID), since a store with failed cases keeps its journal."""
    return {scrub(name, identifiers, key): digest for name, digest in sources.items()}


def journal_paths(case: CaseSource, root: Path, identifiers: set[str],
                  key: bytes) -> dict[str, Path]:
    """Each file a case is made of (its series, file or folder, channels, mask) by its
    ``journal_names`` name. Files only a parser's loader knows are not among them: a
    case built from such a file with an identifying name is rebuilt by a resume."""
    files = list(case.series.files) if case.series is not None else []
    for path in [case.image_path, *case.channels, case.mask_path]:
        files += files_under(path) if path is not None else []
    paths = {}
    for path in files:
        try:
            name = path.resolve().relative_to(root).as_posix()
        except ValueError:
            continue  # outside the source folder: never journaled (source_digests)
        paths[scrub(name, identifiers, key)] = path
    return paths


def source_identifiers(source: CaseSource) -> set[str]:
    """Identifying values of the first readable DICOM header among the files a case is
    made of (its series, file or folder, then its channels and mask): what a case that
    failed, maybe before any header was read, is scrubbed of. Empty when none is
    readable (a folder of corrupt files)."""
    files = source.series.files if source.series is not None else \
        files_under(source.image_path)
    more = [*source.channels, *([source.mask_path] if source.mask_path else [])]
    return identifying_values_of_files(
        itertools.islice(itertools.chain(files, (p for p in more if p.is_file())), 20))


def path_identifiers(path: Path) -> set[str]:
    """Identifying values of the first readable DICOM header of a file, or among the
    first 20 files of a folder (a skipped one, whose reason may quote its name)."""
    return identifying_values_of_files(itertools.islice(files_under(path), 20))


def files_under(path: Path) -> Iterator[Path]:
    """``path`` if it is a file, else the files under it in name order."""
    if path.is_dir():
        return (p for p in sorted(path.rglob("*")) if p.is_file())
    return iter([path] if path.is_file() else [])
