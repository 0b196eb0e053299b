"""Loaders every source kind may use."""

from __future__ import annotations

from pathlib import Path

from ...image import MedicalImage
from ...labels.masks import combine_masks
from . import loader


@loader("combined_masks")
def combined_masks(path: Path, layers: list[list], overlap: str = "higher_wins"
                   ) -> MedicalImage:
    """``layers``: [label value, mask file] pairs, combined by the rule ``overlap``
    (labels/masks.py)."""
    return combine_masks([(int(value), file) for value, file in layers], overlap)
