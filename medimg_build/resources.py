"""Where the project's data files (recipes, JSON Schemas) and the reference data beside
the project (../shared/data) are found at run time."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from .errors import MedimgError

_PROJECT_ROOT = Path(__file__).resolve().parents[1]


def recipes_dir() -> Path:
    return Path(os.environ.get("MEDIMG_RECIPES_DIR", _packaged("recipes")))


def schema_dir() -> Path:
    return Path(os.environ.get("MEDIMG_SCHEMA_DIR", _packaged("schema")))


def _packaged(folder: str) -> Path:
    """A data folder shipped inside the package (package data of the wheel; the
    checkout's top-level recipes/ and schema/ are links to these). pip installs a
    package as plain files, where the resource is a Path; a zipped package is not
    supported."""
    resource = files(__package__) / folder
    if not isinstance(resource, Path):
        raise MedimgError(resource, "is not a folder on disk (a zipped medimg_build?)",
                          hint="install medimg-build with pip")
    return resource


def find_shared_data(explicit: str | os.PathLike | None = None) -> Path | None:
    """The reference data folder: ``explicit``, else $MEDIMG_SHARED_DATA, else
    ``shared/data`` beside the project or beside the current folder; None if absent.
    A folder that is named (argument or variable) is the only one looked at."""
    named = explicit or os.environ.get("MEDIMG_SHARED_DATA")
    candidates = [named] if named else [_PROJECT_ROOT.parent / "shared" / "data",
                                        Path.cwd().parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None
