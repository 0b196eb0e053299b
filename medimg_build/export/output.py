"""Where an export writes: a new folder, filled beside its final name and moved there
whole, so that a refused case or a full disk never leaves half an export under it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .intensity import ExportError


def check_free(target: Path, what: str) -> None:
    """Refuse a ``target`` that is a file, or a folder with anything in it: an export
    never mixes its files with others, nor replaces them."""
    if target.is_dir() and any(target.iterdir()):
        raise ExportError(target, f"{what} exists and is not empty",
                          hint="give a new --out, or empty or remove that folder")
    if target.exists() and not target.is_dir():
        raise ExportError(target, f"{what} exists and is not a folder",
                          hint="give --out a folder path")
    blocking = next((parent for parent in target.parents
                     if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:  # else mkdir fails with a bare FileExistsError
        raise ExportError(target, f"{what} would be inside {blocking}, which is a file",
                          hint="give --out a path whose parent folders are folders")


@contextmanager
def filled_then_moved(target: Path) -> Iterator[Path]:
    """A fresh folder beside ``target`` to write into; on success it becomes
    ``target``, or its files move into ``target`` where that is an existing empty folder
    (kept as it is: it may be the working directory, ``--out .``); on any error it is
    removed."""
    target = Path(os.path.abspath(target))  # "." and "x/.." have no name to put beside
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        yield partial
        if target.is_dir():  # empty: check_free allowed it
            for entry in sorted(partial.iterdir()):
                os.replace(entry, target / entry.name)
            partial.rmdir()
        else:
            os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
