"""Intel & MobileODT Cervical Cancer Screening (Kaggle, 2017) as the Kaggle download
unpacks, with Kaggle's own label corrections and removals applied.

Each archive holds its own top folder, so unpacking ``train.7z`` into ``train/`` gives
``train/train/Type_k/<n>.jpg`` (a flattened ``train/Type_k/`` is read too); the extra
images give ``additional_Type_k_v2/Type_k/<n>.jpg``; ``test/test/<n>.jpg`` is the stage-1
test set and ``test_stg2/<name>.jpg`` the stage-2 one. The type is the folder's.

Beside them, three tables of the competition's data page (each optional):

- ``fixed_labels_v2.csv`` -- ``filename,old_label,new_label`` (``1002.jpg,Type_3,Type_2``):
  relabels. A row applies to the image named ``filename`` in a ``Type_<old_label>``
  folder of the folders named by ``corrected_folders`` (default: the additional
  images; the file names run up to 6923, past the training set's, and numbers repeat
  across folders, so the old label is part of the key).
- ``removed_files.csv`` -- the same header, ``new_label`` = ``remove``: images Kaggle
  withdrew. One present is skipped as removed; the _v2 folders already lack most.
- ``solution_stg1_release.csv`` -- ``image_name,Type_1,Type_2,Type_3``, one-hot: the
  labels of the stage-1 test images, released after stage 1.

Every correction row that finds no image, every removal, and every test image without a
label is reported among the build's skipped files; each case records its folder's type
and where its label comes from. (Real copies of both correction tables:
surajK610/CervicalCancerClassification@81fc32f7; layout: see
tests/fixtures/cervical_screening.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import RecipeError
from ..paths import inside
from ..source_report import system_file, with_system_files_beside
from ..label_tables import read_label_table, require_columns
from ..sources import CaseSource, SourceListing, private_case_id
from . import parser

TYPES = ("Type_1", "Type_2", "Type_3")
_LAYOUT = {
    "train": re.compile(r"(?:train/)?train/(?P<type>Type_[123])/(?P<name>\d+\.jpg)"),
    "additional": re.compile(r"additional_(?P<outer>Type_[123])_v2/(?P<type>Type_[123])/"
                             r"(?P<name>\d+\.jpg)"),
    "test": re.compile(r"(?:test/)?test/(?P<name>\d+\.jpg)"),
    "test_stg2": re.compile(r"test_stg2/(?P<name>[^/]+\.jpg)"),
}
CORRECTION_COLUMNS = ["filename", "old_label", "new_label"]
RELABEL, REMOVE, TEST_LABELS = ("fixed_labels_v2.csv", "removed_files.csv",
                                "solution_stg1_release.csv")


@parser("kaggle_cervix", options={"relabel", "remove", "test_labels",
                                    "corrected_folders"})
def kaggle_cervix(options: dict[str, Any], root: Path, key: bytes) -> SourceListing:
    """Options: ``relabel`` (default ``fixed_labels_v2.csv``), ``remove`` (default
    ``removed_files.csv``), ``test_labels`` (default ``solution_stg1_release.csv``),
    ``corrected_folders`` (default ``[additional]``: which of train/additional the two
    correction tables apply to)."""
    corrected = set(options.get("corrected_folders", ["additional"]))
    relabel = _corrections(root, options.get("relabel", RELABEL), "relabel")
    remove = _corrections(root, options.get("remove", REMOVE), "remove")
    test_labels = _test_labels(root, options.get("test_labels", TEST_LABELS))
    cases, skipped, used = [], {}, set()
    found = sorted(root.rglob("*.jpg"))
    for path in found:
        where = path.relative_to(root).as_posix()
        folder, match = _place(where)
        problem = _problem(path, folder, match, test_labels)
        if problem:
            skipped[where] = problem
            continue
        name, folder_type = match["name"], match.groupdict().get("type")
        number = name.removesuffix(".jpg")
        fields = {"folder": folder, "folder_type": folder_type or "", "type": folder_type,
                  "type_source": "folder"}
        if folder in corrected:
            if (name, folder_type) in remove:
                used.add(("remove", name, folder_type))
                skipped[where] = f"removed by Kaggle ({remove[name, folder_type][1]})"
                continue
            if (name, folder_type) in relabel:
                used.add(("relabel", name, folder_type))
                fields["type"], fields["type_source"] = relabel[name, folder_type]
        if folder == "test":
            fields["type"], fields["type_source"] = test_labels[name]
        case_id = f"{folder}_{folder_type}_{number}" if folder_type else f"{folder}_{number}"
        cases.append(CaseSource(private_case_id(case_id, path, key), path, None, case_id,
                                fields))
    for kind, table in (("relabel", relabel), ("remove", remove)):
        for (name, old), (_, source) in table.items():
            if (kind, name, old) not in used:
                skipped[f"{source}: {name} {old}"] = (
                    f"{source} row for an image not in this download's "
                    f"{' or '.join(sorted(corrected))} {old} folder")
    skipped = with_system_files_beside(skipped, found, root)
    return SourceListing(cases, skipped, notes=_applied(cases, used, options))


def _applied(cases: list[CaseSource], used: set, options: dict[str, Any]) -> list[str]:
    """What each table changed, counted, for the build report."""
    counts = [
        (options.get("relabel", RELABEL), sum(kind == "relabel" for kind, *_ in used),
         "image(s) relabelled"),
        (options.get("remove", REMOVE), sum(kind == "remove" for kind, *_ in used),
         "image(s) of the download removed"),
        (options.get("test_labels", TEST_LABELS), sum(c.fields["folder"] == "test" for c in cases),
         "stage-1 test image(s) labelled"),
    ]
    return [f"{table}: {number} {what}" for table, number, what in counts if number]


def _place(where: str) -> tuple[str | None, re.Match | None]:
    for folder, pattern in _LAYOUT.items():
        if (match := pattern.fullmatch(where)) is not None:
            return folder, match
    return None, None


def _problem(path: Path, folder: str | None, match: re.Match | None,
             test_labels: dict[str, tuple[str, str]]) -> str | None:
    """Why a .jpg under the source is not a labelled case, or None."""
    if (problem := system_file(path)) is not None:
        return problem
    if folder is None:
        return ("not in the Kaggle layout (train/train/Type_k, additional_Type_k_v2/Type_k, "
                "test/test, test_stg2)")
    if folder == "test_stg2":
        return "stage-2 test image: unlabelled"
    if folder == "test" and match["name"] not in test_labels:
        return "stage-1 test image without a label (solution_stg1_release.csv absent or silent)"
    if folder == "additional" and match["outer"] != match["type"]:
        return (f"a {match['type']} folder inside additional_{match['outer']}_v2: which "
                "type is meant is unclear")
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"  # five of the real additional images are
    return None


def _corrections(root: Path, name: str, kind: str) -> dict[tuple[str, str], tuple[str, str]]:
    """{(file name, old label): (new label, table name)} of a correction table, {} when
    the download lacks it. The real removed_files.csv repeats a row (6821.jpg): equal
    rows are one; rows that disagree are the table's error."""
    path = inside(root, name, f"source.options.{kind}")
    if not path.is_file():
        return {}
    table = read_label_table(path)
    require_columns(table, CORRECTION_COLUMNS, path)
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for number, row in enumerate(table.to_dict(orient="records"), start=2):
        key = (row["filename"].strip(), row["old_label"].strip())
        new = row["new_label"].strip()
        wanted = ("remove",) if kind == "remove" else TYPES
        if key[1] not in TYPES or new not in wanted:
            raise RecipeError(path, f"line {number}: {key[1]!r} -> {new!r} is not a change "
                              f"from one of {list(TYPES)} to one of {list(wanted)}",
                              hint="check the file is Kaggle's table")
        if found.setdefault(key, (new, name))[0] != new:
            raise RecipeError(path, f"line {number}: {key[0]} {key[1]} is changed to both "
                              f"{found[key][0]} and {new}", hint="keep one of the rows")
    return found


def _test_labels(root: Path, name: str) -> dict[str, tuple[str, str]]:
    """{image name: (type, table name)} from the one-hot stage-1 solution, {} without it."""
    path = inside(root, name, "source.options.test_labels")
    if not path.is_file():
        return {}
    table = read_label_table(path)
    require_columns(table, ["image_name", *TYPES], path)
    labels = {}
    for number, row in enumerate(table.to_dict(orient="records"), start=2):
        hot = [kind for kind in TYPES if _is_one(row[kind])]
        if len(hot) != 1:
            raise RecipeError(path, f"line {number}: {row['image_name']} is not one-hot over "
                              f"{list(TYPES)}", hint="check the file is Kaggle's solution table")
        labels[row["image_name"].strip()] = (hot[0], name)
    return labels


def _is_one(cell: str) -> bool:
    try:
        return float(cell) == 1.0
    except ValueError:
        return False

