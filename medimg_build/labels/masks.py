"""Several binary masks of one image (a field of view and the vessels in it; the lungs,
heart and clavicles) as one label map, in a stated order where they overlap."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LabelError
from ..image import MedicalImage
from ..io import read_image


def combine_masks(layers: list[tuple[int, str | Path]]) -> MedicalImage:
    """Each layer's nonzero pixels set to its label value, in order, so a later layer
    wins where two overlap (list the enclosing region first: FOV, then vessels). All
    layers must share one grid."""
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
        combined[pixels != 0] = int(value)
    dtype = np.uint8 if combined.max(initial=0) < 256 else np.uint16
    return first.replace(array=np.asfortranarray(combined.astype(dtype)),
                         meta={**first.meta, "source_files": files}).recorded(
        "combine_masks", layers=[[int(v), Path(p).name] for v, p in layers])
