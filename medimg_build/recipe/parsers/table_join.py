"""``table_join``: images found by a glob, each joined to the row of a table through a
key read from its path -- for datasets whose files are named by a subject or session id
with more around it (OASIS' ``OAS1_0001_MR1_mpr_n4_anon_111_t88_gfc.img`` for the row
``OAS1_0001_MR1``; an ADNI download's ``ADNI_..._I45108.nii`` for ``Image Data ID``
``I45108``), where ``image_table``'s exact file names do not apply.

Options (all paths relative to the source folder):

- ``table``: the CSV; ``key_column``: its column holding the key.
- ``images``: glob finding the image files.
- ``path_pattern``: regular expression matched against the whole relative path; its
  named group ``key`` is the key, other named groups become fields too.
- ``patient_column`` (a table column) or ``patient_field`` (a named group): the patient.
- ``case_id``: ``key`` (default), ``stem``, or a template of named groups.
- ``masks``: optional mask path template with {case_id} and the named groups; a case
  without the file is built without a mask and reported as incomplete.
- ``key_prefix``: a prefix the key may carry or not, in the table and in the path alike
  (ADNI's ``Image Data ID`` is ``I45108`` in some IDA exports, ``45108`` in others,
  while the file names say ``_I45108``): keys are compared without it.

Each case's fields are its table row plus the named groups, so that a recipe's labels
and ``columns`` name table columns as for ``image_table``. Paths that do not match the
pattern, files that are no image (``._`` forks, ``Thumbs.db``), images whose key has no row, rows without an image, and second images of one
key, and second rows of one key are reported as skipped, each with its reason."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import RecipeError
from ..paths import from_template, inside, inside_glob
from ..source_report import not_an_image, with_masks_reported
from ..label_tables import read_label_table, require_columns
from ..sources import CaseSource, SourceListing, case_id_from_name, safe_id
from . import parser

_OPTIONS = {"table", "key_column", "images", "path_pattern", "patient_column",
            "patient_field", "case_id", "masks", "key_prefix"}


@parser("table_join", options=_OPTIONS,
        required=("table", "key_column", "images", "path_pattern"))
def table_join(options: dict[str, Any], root: Path, key: bytes) -> SourceListing:
    try:
        pattern = re.compile(options["path_pattern"])
    except re.error as error:
        raise RecipeError(None, f"table_join: path_pattern is not a valid regular "
                          f"expression ({error})", hint="see Python's re syntax") from None
    if "key" not in pattern.groupindex:
        raise RecipeError(None, "table_join: path_pattern has no named group (?P<key>...)",
                          hint="the key group is matched against options.key_column")
    table_path = inside(root, options["table"], "source.options.table")
    if not table_path.is_file():
        raise _table_not_found(table_path)
    table = read_label_table(table_path)
    require_columns(table, [options["key_column"]]
                     + [c for c in [options.get("patient_column")] if c], table_path)
    prefix = str(options.get("key_prefix") or "")
    rows, skipped = _rows_by_key(table, options["key_column"], prefix, options["table"])

    cases, used, looked_for = [], {}, []
    for path in inside_glob(root, options["images"], "source.options.images"):
        if not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        if (problem := not_an_image(path)) is not None:
            skipped[relative] = problem  # a macOS ._ fork beside the image: said, not read
            continue
        match = pattern.fullmatch(relative)
        if match is None:
            skipped[relative] = "path does not match options.path_pattern"
            continue
        groups = {k: v for k, v in match.groupdict().items() if v is not None}
        found = _join_key(groups["key"], prefix)
        if found not in rows:
            skipped[relative] = f"image without a row in {options['table']}"
            continue
        if found in used:
            skipped[relative] = f"second image for {options['key_column']} " \
                                f"{groups['key']!r} (the first is {used[found]})"
            continue
        used[found] = relative
        fields = {**rows[found], **groups}
        case_id = safe_id(_case_id(options.get("case_id", "key"), path, groups), path)
        patient = (fields.get(options["patient_field"]) if options.get("patient_field")
                   else rows[found].get(options.get("patient_column", ""))) or None
        mask = None
        if options.get("masks"):
            candidate = from_template(root, options["masks"], "source.options.masks",
                                      case_id=case_id, **groups)
            mask = candidate if candidate.exists() else None
            looked_for.append(candidate)
        cases.append(CaseSource(case_id, path, mask, patient, fields))
    for name, row in rows.items():
        if name not in used:
            value = str(row[options["key_column"]]).strip()
            skipped[f"{options['table']}: {value}"] = "row without an image file"
    # A case whose mask file is absent is built without one, and said so (an OASIS
    # session without its FSL_SEG folder).
    return with_masks_reported(SourceListing(cases, skipped), root, options.get("masks"),
                               looked_for, "source.options.masks")


def _table_not_found(path: Path) -> RecipeError:
    """The refusal of a missing table, naming the CSVs that are there: an ADNI
    collection's CSV is named after the user's collection and its date
    (``ADNI1_Complete_1Yr_1.5T_10_13_2019.csv``), never the recipe's example."""
    present = sorted(p.name for p in path.parent.glob("*.csv"))
    if len(present) == 1:
        hint = f"name it: --set source.options.table={present[0]}"
    elif present:
        hint = f"name one of {present} with --set source.options.table=NAME"
    else:
        hint = "check --source (the folder holding the table) and source.options.table"
    return RecipeError(path, "label table not found", hint=hint)


def _join_key(value: str, prefix: str) -> str:
    """The key as compared: without ``prefix`` when it carries it."""
    value = str(value).strip()
    return value[len(prefix):] if prefix and value.startswith(prefix) else value


def _rows_by_key(table, column: str, prefix: str,
                 name: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The table's rows by join key (the first row of a key), and its later rows of an
    already seen key, reported: a key names one image, so they could never be joined."""
    rows: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for number, row in enumerate(table.to_dict(orient="records"), start=1):
        key, value = _join_key(row[column], prefix), str(row[column]).strip()
        if not key:
            skipped[f"{name}: row {number}"] = f"row without a value in {column}"
            continue
        if key in rows:
            first = str(rows[key][column]).strip()
            skipped[f"{name}: {value} (row {number})"] = (
                f"second row for {column} {value!r} (the first is {first!r})")
            continue
        rows[key] = row
    return rows, skipped


def _case_id(rule: str, path: Path, groups: dict[str, str]) -> str:
    if rule == "stem":
        return case_id_from_name(path)
    try:
        return groups["key"] if rule == "key" else rule.format(**groups)
    except KeyError as error:
        raise RecipeError(path, f"options.case_id {rule!r} names {error}, which "
                          f"path_pattern did not capture (it has {sorted(groups)})",
                          hint="use named groups (?P<name>...) of path_pattern") from None
