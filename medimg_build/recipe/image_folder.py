"""The ``image_folder`` source kind: images found by a glob, with facts read from their
paths by a regular expression (class folders, MURA's patient/study/label folders,
cervix types...). Paths that do not match, files that are no images and masks that pair
with no image are reported, never guessed at or dropped (``source_report``)."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import RecipeError
from .paths import inside_glob
from .sections import ImageFolder
from .source_report import not_an_image, with_masks_reported, with_system_files_beside
from .sources import (
    CaseSource, SourceListing, case_id_from_name, case_id_problem, mask_candidates, masks_of,
    private_case_id,
)


def image_folder(source: ImageFolder, root: Path, key: bytes) -> SourceListing:
    pattern = _compiled(source.path_pattern)
    cases, skipped, looked_for = [], {}, []
    for path in inside_glob(root, source.images, "source.images"):
        relative = path.relative_to(root).as_posix()
        if (problem := not_an_image(path)) is not None:
            skipped[relative] = problem  # reported: a Thumbs.db is no failed case
            continue
        if path.is_dir():
            skipped[relative] = "folder, not an image file"
            continue
        match = pattern.fullmatch(relative) if pattern else None
        if pattern and match is None:
            skipped[relative] = "path does not match source.path_pattern"
            continue
        fields = {k: v for k, v in (match.groupdict() if match else {}).items() if v is not None}
        case_id = _case_id(source.case_id, path, relative, fields)
        if (problem := case_id_problem(case_id)) is not None:
            skipped[relative] = problem  # one oddly named file must not stop the build
            continue
        patient = fields.get(source.patient_field) if source.patient_field else None
        mask, layers = masks_of(source.masks, root, "source.masks", source.masks_overlap,
                                case_id=case_id, **fields)
        looked_for += mask_candidates(source.masks, root, "source.masks",
                                      case_id=case_id, **fields)
        cases.append(CaseSource(private_case_id(case_id, path, key), path, mask, patient,
                                fields, **layers))
    skipped = with_system_files_beside(skipped, [case.image_path for case in cases], root)
    return with_masks_reported(SourceListing(cases, skipped), root, source.masks,
                               looked_for)


def _case_id(rule: str, path: Path, relative: str, fields: dict[str, str]) -> str:
    if rule == "stem":
        return case_id_from_name(path)
    if rule == "path":  # unique wherever the same file name repeats (image1.png...)
        return case_id_from_name(Path(relative.replace("/", "_")))
    try:
        return rule.format(**fields)
    except KeyError as error:
        raise RecipeError(relative, f"source.case_id {rule!r} names {error}, which "
                          f"source.path_pattern did not capture (it has {sorted(fields)})",
                          hint="use named groups (?P<name>...) of path_pattern") from None


def _compiled(text: str | None) -> re.Pattern | None:
    if not text:
        return None
    try:
        return re.compile(text)
    except re.error as error:
        raise RecipeError(None, f"source.path_pattern is not a valid regular expression "
                          f"({error})", hint="see Python's re syntax") from None
