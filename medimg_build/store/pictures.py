"""Which cases of a store are pictures (``MedicalImage.is_picture``: a 2D image without a
patient frame -- a PNG, a JPEG, a radiograph without ImageOrientationPatient).

The case table says it: a picture is never reoriented (``harmonize.to_ras`` leaves it as
acquired), so the harmonized image is in picture space exactly when its source was, and
the table's ``original_orientation`` (the source's ``MedicalImage.orientation``) is then
``"column,row"``. The fact lives in that one place for both layouts and both formats,
and a store built since pictures were named (issue 19) has it without a rebuild.

Stores built before wrote a picture's anatomical-looking codes (``"RA"``); for them a 2D
source (two letters) whose pixel size was unknown (``spacing_unit`` ``"pixel"``: a PNG,
JPEG or TIFF, a CR without pixel spacing) is a picture too. Only these two short string
columns are read, never ``steps``: a table column is one chunk, and the steps of every
case of a large store are many megabytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..image import PICTURE_ORIENTATION

ORIENTATION, SPACING_UNIT = "original_orientation", "spacing_unit"
PICTURE_COLUMNS = (ORIENTATION, SPACING_UNIT)


def picture_flags(orientation: Sequence, spacing_unit: Sequence | None = None
                  ) -> np.ndarray:
    """Per case (rows of the case table's two columns; ``spacing_unit`` None where the
    table lacks it): whether it is a picture."""
    codes = np.array([str(code) for code in orientation], dtype=object)
    named = codes == PICTURE_ORIENTATION
    if spacing_unit is None:
        return named
    units = np.array([str(unit) for unit in spacing_unit], dtype=object)
    # A store of before: the source was 2D (two axis codes) and stated no pixel size.
    before = (units == "pixel") & np.array([len(code) == 2 for code in codes], dtype=bool)
    return named | before
