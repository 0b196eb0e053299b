"""A picture's pixel size from its row of the source table, where the file has none.

A PNG or JPEG states no pixel size (DPI tags describe printing: ``io/raster.py``), but a
dataset's table may: ChestX-ray14's ``Data_Entry_2017_v2020.csv`` (and the 2017 release)
gives each image's ``OriginalImagePixelSpacing[x,y]``, the pixel size in mm of the
original DICOM, and ``OriginalImage[Width,Height]``, that image's size in pixels; the
published PNGs are those images resized to 1024 x 1024. Their headers are not quoted,
so each bracket makes two columns (``OriginalImagePixelSpacing[x`` and ``y]``); checked
against NIH's own file as copied in sunlabuiuc/PyHealth
(``pyhealth/unittests/test_datasets/test_chestxray14.py``, "Source:
https://nihcc.app.box.com/v/ChestXray-NIHCC/file/219760887468"): e.g.
``00000001_000.png,...,PA,2682,2749,0.14300000000000002,0.14300000000000002,``.

A file resized from the measured image to its own size, axis by axis (NIH's PNGs are
square whatever the film's shape, and not letterboxed: torchxrayvision's copy of
00000001_000.png (512 x 512, of a 2682 x 2749 original) has film in its outer columns, where an aspect-keeping resize
would leave about 1 % of the width blank on each side), has pixels of
``spacing * measured size / file size`` along each axis: x along a row (columns), y
down a column (rows). A row that leaves the cells empty keeps the pixel size unknown,
as the file does (the case's ``spacing_unit`` stays ``pixel``): nothing is guessed. A
file that states its own pixel size (a DICOM radiograph) keeps it. A table without
the columns leaves every pixel size unknown, and the build report says so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..errors import RecipeError
from ..image import MedicalImage
from ..io.raster import file_grid
from .sections import TablePixelSpacing


def with_table_pixel_spacing(image: MedicalImage, spec: TablePixelSpacing | None,
                             row: dict[str, Any], where: str) -> MedicalImage:
    """``image`` with the pixel size its table ``row`` gives (``spec``: the recipe's
    ``source.pixel_spacing``), recorded as the step ``pixel_spacing_from_table``; as it
    is without a spec, for an image that is no picture or knows its pixel size, or when
    the row does not say."""
    if spec is None or not image.is_picture or image.meta.get("pixel_spacing_known"):
        return image
    spacing = _positive_pair(row, spec.columns, where)
    measured = _positive_pair(row, spec.measured_on, where) if spec.measured_on else None
    if spacing is None or (spec.measured_on and measured is None):
        return image
    size = np.asarray(file_grid(image)[0], dtype=np.float64)  # (columns, rows)
    per_pixel = spacing * (measured / size if measured is not None else 1.0)
    # The affine maps indices to the file's pixel grid (a reduced JPEG: blocks of it);
    # scaling that grid's two axes puts the picture in mm, its origin where it was.
    affine = np.diag([*per_pixel, 1.0, 1.0]) @ image.affine
    meta = {**image.meta, "pixel_spacing_known": True, "pixel_spacing_source": "table"}
    return image.replace(affine=affine, meta=meta).recorded(
        "pixel_spacing_from_table", columns=list(spec.columns),
        spacing=spacing.tolist(), measured_on=list(spec.measured_on or []),
        measured_size=None if measured is None else measured.tolist(),
        file_size=size.tolist(), pixel_spacing=per_pixel.tolist())


def require_pixel_size(image: MedicalImage, spacing, where) -> None:
    """Refuse to resample a picture whose pixel size is unknown to ``harmonize.spacing``
    (mm): its pixels would be taken for 1 mm, and a stack would hold it at another scale
    than its neighbours measured in mm, with nothing but ``spacing_unit`` to tell."""
    if spacing is None or not image.is_picture or image.meta.get("pixel_spacing_known"):
        return
    raise RecipeError(where, f"harmonize.spacing {list(spacing)} is in mm, but this "
                      "picture's pixel size is unknown (its file states none, and no table "
                      "gave it)", hint="give the pixel size in the image table "
                      "(source.pixel_spacing), or resize with harmonize.shape alone")


def _positive_pair(row: dict[str, Any], columns: tuple[str, ...], where: str
                   ) -> np.ndarray | None:
    """The two numbers of ``columns`` in ``row``; None when both cells are empty, or
    when the table lacks a column (``pixel_size_note`` reports that once)."""
    if any(column not in row for column in columns):
        return None
    cells = [row.get(column) for column in columns]
    empty = [_is_empty(cell) for cell in cells]
    if all(empty):
        return None
    try:
        values = np.array([float(cell) for cell in cells], dtype=np.float64)
    except (TypeError, ValueError):
        values = np.full(2, np.nan)
    if any(empty) or not (np.isfinite(values).all() and (values > 0).all()):
        shown = ", ".join(f"{column}={cell!r}" for column, cell in zip(columns, cells))
        raise RecipeError(where, f"{shown}: not two positive numbers",
                          hint="fix the table's row, or leave both cells empty where the "
                          "source does not know them")
    return values


def _is_empty(cell: Any) -> bool:
    if cell is None:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    return isinstance(cell, str) and not cell.strip()


def pixel_size_note(spec: TablePixelSpacing | None, table: pd.DataFrame, name: str
                    ) -> str | None:
    """The build report's note when the table has not the columns ``spec`` names: every
    picture then keeps its pixel size unknown (in pixels), which is labelled so in each
    case's ``spacing_unit`` -- said, not guessed, and not worth failing a build for."""
    if spec is None:
        return None
    absent = [column for column in (*spec.columns, *(spec.measured_on or ()))
              if column not in table.columns]
    if not absent:
        return None
    return (f"{name} has no column {', '.join(map(repr, absent))} (source.pixel_spacing): "
            "pixel sizes unknown, spacings in pixels")
