"""One harmonized case as it travels from the recipe engine to a store writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .image import MedicalImage
from .labels.boxes_landmarks import Boxes, Landmarks


@dataclass(eq=False)
class Case:
    """A harmonized image with what the store keeps beside it.

    ``mask`` is on the grid of ``image`` (same spatial shape and affine).
    ``labels`` maps a label name of the recipe's vocabulary to its value for this case
    (an int for binary/multi-class/ordinal, an int8 vector for multi-label, with -1 for
    "unknown"). ``row`` is the case's row of the case table.
    ``boxes`` / ``landmarks`` are on the grid of ``image`` too (``Boxes.onto(image)``);
    their ``source`` keeps the coordinates as given on the source image.
    ``sources`` maps each source file read (relative to the source folder) to its
    sha256; the build journal keeps it so that ``--resume`` rebuilds a case whose
    source changed. It is not a table column.
    """

    case_id: str
    image: MedicalImage
    mask: MedicalImage | None = None
    labels: dict[str, int | np.ndarray] = field(default_factory=dict)
    row: dict[str, Any] = field(default_factory=dict)
    boxes: Boxes | None = None
    landmarks: Landmarks | None = None
    sources: dict[str, str] = field(default_factory=dict)
