"""Paths as a store holds them: relative to the source folder, whatever its name, its
place or the way ``--source`` was spelled.

The source folder is resolved once, where a build starts (``source_root``), so every
path the build meets starts with one spelling of it; whatever is stored (case table,
build report, skip reasons, error texts) then passes ``stored_value``, which writes those
paths relative to it. Another absolute path left in a text (a symbolic link's target, a
library's temporary file) keeps only its file name, and the store's own location is
called "the store": a store, and its content hash, never tell where a lab keeps its
data, under which user, or where the store was written."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import RecipeError

# A POSIX absolute path inside a text: a '/' not preceded by a name character, ':' or
# '/', and at least two components ("/tmp/x"), so that "1/2", "mm / s" or a URL are
# left alone. It ends at a space: the source folder itself is replaced before, whole,
# so only a path outside it with a space in a folder name keeps what follows the space.
_ABSOLUTE = re.compile(r"(?<![\w.~:/-])/(?:[^\s/'\"`,;:()\[\]{}<>]+/)+[^\s/'\"`,;:()\[\]{}<>]*")
STORE_NAME = "the store"


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
