"""Harmonization steps: small pure functions ``MedicalImage -> MedicalImage``.

Each returns ``image.recorded(name, **params)``: its history says exactly what was done,
with JSON-serializable parameters (enough to map coordinates and undo intensities).
A typical chain: ``to_ras`` -> ``resample_to_spacing`` or ``resize_with_pad`` ->
``normalize``; masks follow with ``resample_to_grid`` / ``resize_with_pad(..., "nearest")``.
"""

from .normalize import (
    PRESETS,
    IntensityError,
    denormalize,
    normalize,
    normalize_ct,
    normalize_mr,
    normalize_unit_range,
)
from .orient import to_ras
from .resample import INTERPOLATORS, resample_to_grid, resample_to_spacing
from .resize import resize_with_pad

__all__ = [
    "INTERPOLATORS",
    "PRESETS",
    "IntensityError",
    "denormalize",
    "normalize",
    "normalize_ct",
    "normalize_mr",
    "normalize_unit_range",
    "resample_to_grid",
    "resample_to_spacing",
    "resize_with_pad",
    "to_ras",
]
