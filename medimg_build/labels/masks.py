"""Several binary masks of one image (a field of view and the vessels in it; the lungs,
heart and clavicles) as one label map, by a stated rule where they overlap:

- ``higher_wins``: each layer's pixels take its value, the higher value winning where
  layers overlap -- for regions that exclude each other but were outlined with shared
  borders (a clavicle over a lung field). What the loser marked there is not kept.
- ``flags``: the values are distinct powers of two (1, 2, 4...) and a pixel holds the sum
  of the values of the layers that mark it, so every layer is kept whole and is read back
  as ``mask & value``. For annotations that may overlap anywhere, such as DRIVE's field
  of view and its vessel tracings, which cross the FOV border."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LabelError, RecipeError
from ..image import MedicalImage
from ..io import read_image

OVERLAP_RULES = ("higher_wins", "flags")


def combine_masks(layers: list[tuple[int, str | Path]],
                  overlap: str = "higher_wins") -> MedicalImage:
    """``layers``: (label value, mask file) pairs, whose nonzero pixels are combined by
    the rule ``overlap`` (module docstring); ``higher_wins`` applies them in the given
    order (list them by value), so the last wins. All layers must share one grid."""
    if overlap == "flags":
        check_flag_values([value for value, _ in layers])
    combined, first, files = None, None, []
    for value, path in layers:
        layer = read_image(path)
        files += layer.meta.get("source_files", [str(Path(path).resolve())])
        pixels = layer.array[..., 0] if layer.has_channels else layer.array
        if first is None:
            first, combined = layer, np.zeros(pixels.shape, np.uint16)
        elif layer.spatial_shape != first.spatial_shape or \
                not np.allclose(layer.affine, first.affine, atol=1e-3):
            raise LabelError(path, f"mask layer is not on the grid of {layers[0][1]}",
                             hint="combined masks must share one grid")
        if overlap == "flags":
            combined[pixels != 0] |= int(value)
        else:
            combined[pixels != 0] = int(value)
    dtype = np.uint8 if combined.max(initial=0) < 256 else np.uint16
    return first.replace(array=np.asfortranarray(combined.astype(dtype)),
                         meta={**first.meta, "source_files": files}).recorded(
        "combine_masks", layers=[[int(v), Path(p).name] for v, p in layers],
        **({"overlap": overlap} if overlap != "higher_wins" else {}))


def check_flag_values(values: list[int]) -> None:
    """Flags must be distinct powers of two, or two layers' sums could coincide
    (1 + 2 == 3) and a pixel would no longer say which layers mark it."""
    bad = [v for v in values if v <= 0 or v & (v - 1)]
    if bad or len(set(values)) != len(values):
        raise RecipeError(None, f"mask layer values {sorted(values)} are not distinct "
                          f"powers of two, which masks_overlap 'flags' needs",
                          hint="number the layers 1, 2, 4, 8...")
