"""DeepLesion (Yan et al., NIH Clinical Center, 2018): CT key slices with lesion boxes.

The download, as NIH publishes it::

    SOURCE/DL_info.csv                                 one row per lesion
    SOURCE/Images_png/<patient>_<study>_<series>/<slice:03d>.png

``Images_png`` holds, for each key slice, the slices of its ``Slice_range`` as 16-bit
PNGs whose value minus 32768 is the Hounsfield unit. ``File_name`` (``000001_01_01_109.png``)
names a key slice: ``<patient>_<study>_<series>_<slice>``; slice numbers (the file name,
``Key_slice_index``, ``Slice_range``) are 1-based and the same numbers as the PNG names.

**One case per key slice** (a ``File_name``), not per lesion: lesions of the same key
slice share its slice range, so this stores each volume once, and it is the unit of
DeepLesion's detection benchmark (every lesion of the slice is a box on it). A case's
image is the stack of its slice range (``Slice_range`` "103, 115" -> 13 slices, k = 0 is
slice 103) with ``Spacing_mm_px_`` as voxel size, in HU (value - 32768), modality CT.

Each lesion is a key-slice box (format ``key_slice_corners``): the ``Bounding_boxes``
corners on volume slice ``k = Key_slice_index - first slice of Slice_range``, labelled
with its coarse lesion type name (``unknown`` for -1: the training set is untyped). The
case's ``lesion_type`` label (multilabel over the eight types) lists the known types of
its lesions; a slice whose lesions are all untyped has it unknown (-1).

Geometry: the PNGs carry no orientation. They are axial slices shown the radiological
way (image left = patient right, top = anterior), and the slice number grows towards
the feet, which is what the affine says (LPS index axes, like a DICOM axial series read
head first). The README does not say so; the table does: the z of
``Normalized_lesion_location`` grows with ``Key_slice_index`` within a series, and
mediastinal lesions have smaller z than liver ones, liver smaller than pelvic ones --
larger z is lower in the body. Rows of the real DL_info.csv (public copy: GitHub
donghwanseo/joint_conference, ``DL_info.csv``, commit
e83fd969542e0d6fd43626ce012733e3000ba3ed), File_name / type / z::

    000091_01_02_004.png  3 mediastinum  0.363289
    000091_01_02_006.png  3 mediastinum  0.368954
    000097_01_01_055.png  4 liver        0.593443
    000097_01_01_082.png  2 abdomen      0.693745
    000097_01_01_116.png  8 pelvis       0.828742

(the issue counted 140 of 141 same-series pairs of that copy with z growing with the
slice number; the exception, 000091_03_01 slices 57 -> 58, is a 0.001 step). The array
keeps the files' order (k = 0 is the first slice of ``Slice_range``), so key slices and
boxes index it as the table does; reorienting to RAS then puts the head at the top.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import ImageReadError, RecipeError
from ...image import MedicalImage
from ..paths import inside, outside_problem
from ..label_tables import read_label_table
from ..sources import CaseSource, SourceListing, case_id_problem
from . import loader, parser

COLUMNS = ["File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index",
           "Measurement_coordinates", "Bounding_boxes", "Lesion_diameters_Pixel_",
           "Normalized_lesion_location", "Coarse_lesion_type", "Possibly_noisy",
           "Slice_range", "Spacing_mm_px_", "Image_size", "DICOM_windows",
           "Patient_gender", "Patient_age", "Train_Val_Test"]
HU_OFFSET = 32768


def _numbers(text: str, n: int, where: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        values = []
    if len(values) != n:
        raise RecipeError(where, f"expected {n} comma-separated numbers, got {text!r}",
                          hint="check DL_info.csv is DeepLesion's table")
    return values


@parser("deeplesion", options={"table", "images", "lesion_types"})
def deeplesion(options: dict[str, Any], root: Path, key: bytes) -> SourceListing:
    table_path = inside(root, options.get("table", "DL_info.csv"), "source.options.table")
    images = inside(root, options.get("images", "Images_png"), "source.options.images")
    types: dict[str, str] = {str(k): v for k, v in options.get("lesion_types", {}).items()}
    table = read_label_table(table_path, "source.options.table")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise RecipeError(table_path, f"missing column(s) {missing}; it has "
                          f"{list(table.columns)}", hint="is this DeepLesion's DL_info.csv?")
    by_slice: dict[str, list[dict]] = defaultdict(list)
    for row in table.to_dict(orient="records"):
        by_slice[row["File_name"].strip()].append(row)
    cases, skipped = [], {}
    for name, rows in by_slice.items():
        where = f"{table_path} ({name})"
        series = name.rsplit("_", 1)[0]
        # File_name names the slice folder: a cell is never a way out of Images_png.
        problem = outside_problem(series) or case_id_problem(name.removesuffix(".png"))
        if problem is not None:
            skipped[f"DL_info.csv: {name}"] = f"File_name {name!r}: {problem}"
            continue
        first, last = (int(v) for v in _numbers(rows[0]["Slice_range"], 2, where))
        folder = images / series
        wanted = [folder / f"{n:03d}.png" for n in range(first, last + 1)]
        absent = [p for p in wanted if not p.is_file()]
        if absent:
            skipped[f"DL_info.csv: {name}"] = (f"row without its slices ({len(absent)} of "
                                               f"{len(wanted)} PNGs of Slice_range missing)")
            continue
        spacing = _numbers(rows[0]["Spacing_mm_px_"], 3, where)
        boxes = []
        for row in rows:
            x1, y1, x2, y2 = _numbers(row["Bounding_boxes"], 4, where)
            code = row["Coarse_lesion_type"].strip()
            boxes.append({**row, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                          "key_slice": int(row["Key_slice_index"]) - first,
                          "lesion_type": types.get(code, "unknown" if code == "-1" else code)})
        known = sorted({b["lesion_type"] for b in boxes if b["lesion_type"] != "unknown"},
                       key=list(types.values()).index if types else str)
        fields = {**rows[0], "lesion_types": "|".join(known), "n_lesions": len(rows),
                  "slice_range": rows[0]["Slice_range"]}
        cases.append(CaseSource(
            case_id=name.removesuffix(".png"),
            image_path=folder / f"{int(rows[0]['Key_slice_index']):03d}.png",
            patient_id=rows[0]["Patient_index"].strip(), fields=fields, loader="deeplesion",
            loader_args={"first": first, "last": last, "spacing": spacing},
            annotations={"boxes": boxes}))
    named = {name.rsplit("_", 1)[0] for name in by_slice}
    for folder in sorted(p for p in images.glob("*") if p.is_dir()):
        if folder.name not in named:
            skipped[f"Images_png/{folder.name}"] = "slice folder without a DL_info.csv row"
    return SourceListing(cases, skipped)


@loader("deeplesion")
def load_slices(path: Path, first: int, last: int, spacing: list[float]) -> MedicalImage:
    """The slices ``first..last`` (1-based file numbers) of the key slice ``path``'s
    folder as one CT volume in HU, voxel size ``spacing`` (x, y, slice interval)."""
    files = [path.parent / f"{n:03d}.png" for n in range(first, last + 1)]
    planes = []
    for file in files:
        try:
            with Image.open(file) as picture:
                pixels = np.asarray(picture)
        except OSError as error:
            raise ImageReadError(file, f"cannot be read as PNG ({error})") from error
        if pixels.dtype != np.uint16 and pixels.dtype != np.int32:
            raise ImageReadError(file, f"DeepLesion slices are 16-bit PNGs, this one is "
                                 f"{pixels.dtype}", hint="is this DeepLesion's Images_png?")
        if planes and pixels.shape != planes[0].shape:
            raise ImageReadError(file, f"slice of shape {pixels.shape} in a series of "
                                 f"{planes[0].shape}")
        planes.append(pixels)
    # (rows, cols) planes -> (i = column, j = row, k = slice), Fortran-ordered.
    volume = np.stack(planes, axis=0).astype(np.int32) - HU_OFFSET
    array = np.asfortranarray(volume.astype(np.int16).transpose(2, 1, 0))
    sx, sy, sz = spacing
    # LPS index axes in RAS+: slice number towards the feet (see the module doc). Slice
    # n of the series sits at S = -(n - 1) * sz, so all key slices of a series share one
    # frame whatever their Slice_range.
    affine = np.diag([-sx, -sy, -sz, 1.0])
    affine[2, 3] = -(first - 1) * sz
    meta = {"format": "png", "source_files": [str(f.resolve()) for f in files],
            "space": "image", "modality": "CT", "pixel_spacing_known": True,
            "intensity": {"unit": "HU", "offset": -HU_OFFSET, "bits_stored": 16,
                          "signed": False, "photometric": "MONOCHROME2"}}
    image = MedicalImage(array=array, affine=affine, spatial_ndim=3, meta=meta)
    return image.recorded("read", reader="deeplesion", path=str(path.parent),
                          slices=[first, last], hu_offset=-HU_OFFSET)
