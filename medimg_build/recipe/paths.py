"""Paths as a store holds them: relative to the source folder, whatever its name, its
place or the way ``--source`` was spelled.

The source folder is resolved once, where a build starts (``source_root``), so every
path the build meets starts with one spelling of it; whatever is stored (case table,
build report, skip reasons, error texts) then passes ``stored_value``, which writes those
paths relative to it. Another absolute path left in a text (a symbolic link's target, a
library's temporary file) keeps only its file name, and the store's own location is
called "the store": a store, and its content hash, never tell where a lab keeps its
data, under which user, or where the store was written.

**Nothing is read from outside the source folder.** A path that comes from the data or
the recipe -- a table cell, a header field (a MetaImage's ElementDataFile, a dataset.json
entry), a recipe setting (glob, template, table) -- is checked as text, before anything
is opened, by ``outside_problem``: it is refused when it is absolute (``/``, ``\\``,
``~`` or a drive letter), holds a ``..`` component (with ``/`` or ``\\`` as separator)
or a NUL byte. What is left, joined to the folder it is relative to, names an entry of
the tree. The check is lexical on purpose: ``link/..`` is the link's parent for the
operating system but the folder itself for a normalizing reader, so ``..`` is refused
outright rather than interpreted.

Symbolic links *inside* the tree are followed wherever they point (data farms link
folders and files in from other disks); the tree is trusted to be what its owner
built, the text in it is not. Folder walks follow links to folders but enter each real
folder once (``io.dicom_files.files_under``), so a link loop ends; ``Path.glob`` does not
descend into linked folders for ``**``, and other patterns are bounded by their own
depth."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any

from ..errors import RecipeError

# A POSIX absolute path inside a text: a '/' not preceded by a name character, ':', '}'
# (a template's "{case}/masks/x") or '/', and at least two components ("/tmp/x"), so
# that "1/2", "mm / s" or a URL are left alone. It ends at a space: the source folder
# itself is replaced before, whole, so only a path outside it with a space in a folder
# name keeps what follows the space.
_ABSOLUTE = re.compile(r"(?<![\w.~:/}-])/(?:[^\s/'\"`,;:()\[\]{}<>]+/)+[^\s/'\"`,;:()\[\]{}<>]*")
STORE_NAME = "the store"


_DRIVE = re.compile(r"^[A-Za-z]:")
_SEPARATORS = re.compile(r"[\\/]")
LINK_HINT = ("paths are relative to the source folder and stay inside it: to use data "
             "kept elsewhere, put a symbolic link to it inside the source folder")


def outside_problem(relative: str) -> str | None:
    """Why ``relative``, a path read from a table, a header or a recipe, could name
    something outside the folder it is relative to, or None when it cannot."""
    text = str(relative)
    if "\0" in text:
        return "holds a NUL byte"
    if text.startswith(("/", "\\", "~")) or _DRIVE.match(text):
        return "is an absolute path"
    if ".." in _SEPARATORS.split(text):
        return "leads outside the source folder ('..')"
    return None


def inside(base: Path, relative: str, setting: str) -> Path:
    """``base / relative`` for a path a recipe setting gives (``setting`` names it in
    the error); RecipeError when it could lead outside ``base``."""
    if (problem := outside_problem(relative)) is not None:
        raise RecipeError(None, f"{setting} {str(relative)!r} {problem}", hint=LINK_HINT)
    return base / relative


def inside_glob(base: Path, pattern: str, setting: str) -> list[Path]:
    """The matches of a recipe's glob under ``base``, sorted; RecipeError naming
    ``setting`` for a pattern that is absolute or climbs out."""
    inside(base, pattern, setting)
    return sorted(base.glob(pattern))


def from_template(base: Path, template: str, setting: str, **names: str) -> Path:
    """A recipe's path template filled with ``names`` (file and folder names of the
    case) under ``base``; RecipeError naming ``setting`` when the result could lead
    outside it.

    Wildcards written in the template itself (``*``, ``?``, ``[...]``; never those a
    filled-in name happens to hold) stand for the one file that matches them, for
    releases that differ in a suffix (BraTS 2020's ``.nii``, 2021's ``.nii.gz``):
    no match leaves the pattern as the path (reading it fails, naming the pattern);
    several matches are a RecipeError naming them, as picking one would be a guess."""
    wildcards = glob.has_magic(template)
    if wildcards:
        names = {key: glob.escape(str(value)) for key, value in names.items()}
    try:
        filled = template.format(**names)
    except (KeyError, IndexError, ValueError) as error:
        raise RecipeError(None, f"{setting} {template!r} cannot be filled ({error!r}); "
                          f"it may name {sorted(names)}",
                          hint="use {name} fields the recipe says it provides") from None
    path = inside(base, filled, setting)
    if not wildcards:
        return path
    return _the_one_match(base, filled, f"{setting} {template!r}") or path


def _the_one_match(base: Path, pattern: str, setting: str) -> Path | None:
    # glob, not Path.glob: '*' then skips hidden files (macOS '._x_seg.nii' copies).
    matches = sorted(glob.glob(pattern, root_dir=base))
    if len(matches) > 1:
        folder = os.path.commonpath([os.path.dirname(m) for m in matches]) or "."
        names = ", ".join(os.path.relpath(m, folder) for m in matches)
        raise RecipeError(base / folder, f"{len(matches)} files match {setting}: {names}",
                          hint="keep one of them (a copy unpacked beside its archive?)")
    return base / matches[0] if matches else None


def source_root(source_dir: str | os.PathLike) -> Path:
    """The source folder as one absolute path without symbolic links, '..' or '.', so
    that ``my_ct``, ``../a/my_ct/``, ``/abs/my_ct`` and a link to it all name it alike."""
    root = Path(source_dir).expanduser()
    if not root.is_dir():
        raise RecipeError(root, "source folder does not exist",
                          hint="pass the folder holding the downloaded dataset to --source")
    return root.resolve()


def relative_path(path: str | os.PathLike, root: Path) -> str:
    """``path`` relative to ``root`` (symbolic links are not followed, so a linked
    file keeps its name in the source tree); just the name when it lies elsewhere."""
    path = Path(path)
    for candidate, base in ((path, root), (path.resolve(), root.resolve())):
        try:
            return Path(candidate).relative_to(base).as_posix()
        except ValueError:
            continue
    return path.name


def stored_text(text: str, root: Path, store: str | None = None) -> str:
    """``text`` (an error message, a skip reason, a step's parameter) with every path
    under ``root`` relative to it, the store's location (``store``, as given to the
    writer) as "the store", and every other absolute path as its file name."""
    if store and "://" not in store:
        # A store error starts "<location as given>: "; a short relative name ("x")
        # is replaced there only, the absolute location wherever it stands.
        if text.startswith(f"{store}: "):
            text = STORE_NAME + text[len(store):]
        text = _replace_path(text, os.path.abspath(store), STORE_NAME, STORE_NAME + "/")
    text = _replace_path(text, str(root), ".", "")
    return _ABSOLUTE.sub(lambda match: relative_path(match.group(0), root), text)


def stored_path(path: str | os.PathLike, root: Path, store: str | None = None) -> str:
    """A path an error names (``MedimgError.given_path``) as the store keeps it: under
    the store's location (``store``, as given to the writer) after "the store",
    relative to ``root`` when under it, any other absolute path as its file name; a
    relative path or a URL as it is. The path itself is compared, not the message."""
    text = str(path)
    if store and "://" not in store:
        if text == store:
            return STORE_NAME
        location = Path(os.path.abspath(store))
        if os.path.isabs(text) and Path(text).is_relative_to(location):
            inside = Path(text).relative_to(location).as_posix()
            return STORE_NAME if inside == "." else f"{STORE_NAME}/{inside}"
    if not os.path.isabs(text):
        return text
    return relative_path(text, root)


def _replace_path(text: str, path: str, alone: str, as_parent: str) -> str:
    """``path`` in ``text`` replaced by ``alone``, and by ``as_parent`` where a path
    below it follows; "/a/my_ct2" and "/b/a/my_ct" are other paths than "/a/my_ct"."""
    if not path or path not in text:
        return text
    pattern = r"(?<![\w.~/-])" + re.escape(path) + r"(/|(?![\w.~-]))"
    return re.sub(pattern, lambda match: as_parent if match.group(1) else alone, text)


def stored_value(value: Any, root: Path, store: str | None = None) -> Any:
    """``value`` (a dict, list, text or path, nested) with ``stored_text`` applied to
    every text and ``relative_path`` to every path; other values as they are."""
    if isinstance(value, dict):
        return {k: stored_value(v, root, store) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [stored_value(v, root, store) for v in value]
    if isinstance(value, Path):
        return relative_path(value, root)
    if isinstance(value, str):
        return stored_text(value, root, store)
    return value
