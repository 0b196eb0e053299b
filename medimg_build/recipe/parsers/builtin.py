"""Loaders every source kind may use."""

from __future__ import annotations

from pathlib import Path

from ...image import MedicalImage
from ...labels.masks import combine_masks
from . import loader


@loader("combined_masks")
def combined_masks(path: Path, layers: list[list]) -> MedicalImage:
    """``layers``: [label value, mask file] pairs, combined in order (later wins)."""
    return combine_masks([(int(value), file) for value, file in layers])
