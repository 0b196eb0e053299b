"""What a source holds that the build will not use, said aloud: every source kind
reports through these functions, so the build report names the same things alike.

- ``not_an_image``: an entry an image glob found that is no image (``notes.txt``,
  ``Thumbs.db``, a macOS ``._`` fork): skipped and reported, never a failed case.
- ``with_masks_reported``: every mask file no case looks for is reported as skipped
  (``UNPAIRED_MASK``), every case without its declared mask as incomplete (it is built
  without one), and a source whose mask files pair with none of its images is refused:
  a store without masks is not what the recipe asked for.

A source kind (a parser too) gives ``with_masks_reported`` its listing, the recipe's
mask templates (or, with ``mask_files``, every mask file it found itself) and the mask
files its cases looked for (``sources.mask_candidates`` fills the templates)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ImageReadError, RecipeError, shown_items
from ..io import reader_for
from .paths import inside_glob

# What operating systems and file managers leave beside data: macOS Finder's
# .DS_Store and AppleDouble forks (._name, copied onto FAT/exFAT disks or out of zips),
# Windows Explorer's Thumbs.db and desktop.ini, zip's __MACOSX folder.
SYSTEM_FOLDERS = frozenset({"__macosx", ".spotlight-v100", ".trashes", ".fseventsd"})
SYSTEM_FILES = SYSTEM_FOLDERS | {".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini"}
SYSTEM_FILE = ("file the operating system or a file manager left (.DS_Store, ._*, "
               "Thumbs.db, desktop.ini, __MACOSX), not an image")
HIDDEN_FILE = "hidden file (name starts with '.'), not read as a case"
UNPAIRED_MASK = "mask file paired with no image (no case's mask path names it)"
# nnU-Net names each channel file <case>_<4 digits> (imagesTr/la_003_0000.nii.gz).
_NNUNET_CHANNEL = re.compile(r"_\d{4}$")
_FIELD = re.compile(r"\{[^{}]*\}")


def not_an_image(path: Path) -> str | None:
    """Why ``path``, found by a recipe's image glob, is not read as a case, or None. A
    folder may be a DICOM series; a file must be of a format some reader reads (by its
    suffix, or DICOM's preamble). A file that cannot be opened is left to fail as its
    case, with its own error."""
    if (problem := system_file(path)) is not None:
        return problem
    if path.is_dir() or not path.is_file():
        return None
    try:
        reader_for(path)
    except (ImageReadError, OSError):
        return f"not an image file medimg-build reads ({path.suffix.lower() or 'no suffix'})"
    return None


def system_file(path: Path) -> str | None:
    """Why ``path``, by its name alone, is what a system left or hidden (SYSTEM_FILE,
    HIDDEN_FILE), or None: the first check of every source, so that each reports such
    files under one reason (parsers that test names themselves call it first)."""
    name = path.name
    # Inside them too: a zip made on a Mac unpacks __MACOSX/<the same folders>/._<name>,
    # which a recursive glob (BraTS' **/BraTS20*_001/) finds as a second copy of a case.
    in_system_folder = any(part.lower() in SYSTEM_FOLDERS for part in path.parts[:-1])
    if name.lower() in SYSTEM_FILES or name.startswith("._") or in_system_folder:
        return SYSTEM_FILE
    if name.startswith("."):
        return HIDDEN_FILE
    return None


def with_system_files_beside(skipped: dict[str, str], found: Iterable[Path],
                             root: Path) -> dict[str, str]:
    """``skipped`` plus the system files beside what a source's glob ``found`` (in the
    folder of each file found, inside each folder found: a BraTS case folder), which a
    narrow glob (NIH's **/*.png, DRIVE's */images/*.tif) never meets: a Thumbs.db among
    the images is said, not ignored."""
    folders = {path if path.is_dir() else path.parent for path in found}
    reported = dict(skipped)
    for folder in sorted(folders):
        for path in sorted(folder.iterdir()):
            if (problem := system_file(path)) is not None and path.is_file():
                reported.setdefault(_relative(path, root), problem)
    return reported


def template_glob(template: str) -> str:
    """A glob of every file a mask template can name: each {field} a wildcard, and a
    whole folder part ``{path}`` (an image's relative path) any number of folders."""
    parts = ["**" if part == "{path}" else _FIELD.sub("*", part) for part in template.split("/")]
    return "/".join(parts)


def with_masks_reported(listing, root: Path, spec: str | Mapping[str, str] | None,
                        looked_for: Iterable[Path], setting: str = "source.masks",
                        mask_files: Iterable[Path] | None = None):
    """``listing`` (a SourceListing) with its masks accounted for: the mask files that
    no case looked for (``looked_for``) are skipped as ``UNPAIRED_MASK``; each case
    without a mask is incomplete. RecipeError when mask files exist and none of them
    pairs. The mask files are those the templates of ``spec`` (the recipe key
    ``setting``: one, or {label value: template}) can name, or ``mask_files`` when a
    parser lists them itself (a labelsTr/ folder); ``spec`` then only names them in
    messages."""
    if not spec:
        return listing
    templates = [spec] if isinstance(spec, str) else list(spec.values())
    if mask_files is None:
        mask_files = [path for template in templates
                      for path in inside_glob(root, template_glob(template), setting)]
    found = {path: not_an_image(path) for path in mask_files if path.is_file()}
    masks = sorted(path for path, problem in found.items() if problem is None)
    looked = set(looked_for)
    unpaired = [path for path in masks if path not in looked]
    if masks and len(unpaired) == len(masks) and listing.cases:
        raise _pairing_failed(listing.cases, masks, sorted(looked), root, setting, spec)
    skipped = dict(listing.skipped)
    for path, problem in found.items():
        if problem is not None or path in unpaired:
            skipped.setdefault(_relative(path, root), problem or UNPAIRED_MASK)
    missing = (f"none found at {setting} {spec!r}" if isinstance(spec, str)
               else f"not every layer of {setting} found")
    incomplete, cases = dict(listing.incomplete), dict(listing.incomplete_cases)
    for case in listing.cases:
        if case.mask_path is None and not case.mask_loader:
            where = _relative(case.image_path, root)
            incomplete.setdefault(where, f"built without a mask: {missing}")
            cases.setdefault(where, case.case_id)
    return dataclasses.replace(listing, skipped=skipped, incomplete=incomplete,
                               incomplete_cases=cases)


def _pairing_failed(cases: list[Any], masks: list[Path], looked: list[Path], root: Path,
                    setting: str, spec: str | Mapping[str, str]) -> RecipeError:
    """The refusal of a source whose masks pair with none of its images, naming an
    example of each and, for nnU-Net's channel-file names, the recipe that reads them."""
    example = f"; it looked for {_relative(looked[0], root)}" if looked else ""
    shown = shown_items((_relative(mask, root) for mask in masks), 3)
    written = spec if isinstance(spec, str) else dict(spec)  # as the YAML, not mappingproxy(..)
    problem = (f"none of its {len(masks)} mask file(s) ({shown}) pairs with any of its "
               f"{len(cases)} image(s) by {setting} {written!r}: image "
               f"{_relative(cases[0].image_path, root)}{example}")
    stems = [_stem(case.image_path) for case in cases]
    if any(_NNUNET_CHANNEL.search(stem) for stem in stems):
        hint = ("images named <case>_0000 are nnU-Net's channel files: build with the "
                "nnunet recipe (medimg-build build nnunet ...)")
    else:
        hint = ("fix the recipe's source.masks to name each image's mask (see "
                "`medimg-build recipes show NAME`), or move the masks away to build "
                "without them")
    return RecipeError(root, problem, hint=hint)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".gz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name
