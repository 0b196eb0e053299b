"""OME-NGFF 0.5 metadata of one volumes-layout case, so OME-Zarr tools can open it.

OME-NGFF 0.5 requires the axes names to equal the image array's ``dimension_names``;
ours are ``channel`` and the stored spatial axes. One resolution level only (``image``):
pyramids are for viewers, and a reader that wants one can build it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .axes import spatial_dims, stored_origin, stored_spacing
from .schema import CHANNEL, IMAGE

NGFF_VERSION = "0.5"


def ome_attrs(case_id: str, affine: np.ndarray, spatial_ndim: int) -> dict[str, Any]:
    """The group's ``ome`` attribute: axes, scale and translation in mm, stored order.

    NGFF transforms cannot express rotation, so the translation is the RAS+ origin
    component along each axis (exact for the harmonized, axis-aligned RAS+ grids);
    the full affine is in the group's ``medimg_case`` attribute.
    """
    names = spatial_dims(spatial_ndim)
    scale = [1.0] + [float(s) for s in stored_spacing(affine, spatial_ndim)]
    origin = stored_origin(affine)[3 - spatial_ndim:]
    translation = [0.0] + [float(v) for v in origin]
    axes = [{"name": CHANNEL, "type": "channel"}] + [
        {"name": name, "type": "space", "unit": "millimeter"} for name in names
    ]
    dataset = {
        "path": IMAGE,
        "coordinateTransformations": [
            {"type": "scale", "scale": scale},
            {"type": "translation", "translation": translation},
        ],
    }
    return {
        "version": NGFF_VERSION,
        "multiscales": [{"name": case_id, "axes": axes, "datasets": [dataset]}],
    }
