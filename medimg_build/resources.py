"""Where the project's data files (recipes, JSON Schemas) are found at run time."""

from __future__ import annotations

import os
from pathlib import Path

_PROJECT_ROOT = Path(__file__).resolve().parents[1]


def recipes_dir() -> Path:
    return Path(os.environ.get("MEDIMG_RECIPES_DIR", _PROJECT_ROOT / "recipes"))


def schema_dir() -> Path:
    return Path(os.environ.get("MEDIMG_SCHEMA_DIR", _PROJECT_ROOT / "schema"))
