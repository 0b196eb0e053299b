"""JSRT chest radiographs (headerless raw ``.IMG``) and the SCR masks drawn on them.

JSRT (Shiraishi et al. 2000, http://db.jsrt.or.jp/eng.php): 247 PA chest films
digitized to 2048 x 2048 pixels of 0.175 mm, 12 bits, stored as headerless big-endian
16-bit words (``JPCLN001.IMG`` ... with a nodule, ``JPCNN001.IMG`` ... without). The
values follow film density: higher is darker (air is bright in the raw numbers), so the
loader inverts them (``4095 - v``) to the MONOCHROME2 convention of every other image
here (higher = brighter, bone bright) and records ``inverted``.

SCR (van Ginneken et al. 2006, https://www.isi.uu.nl/Research/Databases/SCR/): for each
JSRT image, binary GIF masks of the left and right lung, the heart and the left and right
clavicle, drawn on the image subsampled to 1024 x 1024 (0.35 mm):
``scratch/fold1/masks/<structure>/JPCLN001.gif`` (SCR's two folds, ``fold1`` and
``fold2``, each image in one; field ``scr_fold``). So that masks and image share one grid, the
loader bins the image 2 x 2 (mean of each block, as SCR's subsampling) by default.

Combined label map (``scr_labels``): lungs 1, heart 2, clavicles 3. Clavicles overlap
the lung fields (they are drawn across the apices): where they do, the clavicle wins;
then heart over lung (SCR's lung outlines exclude the heart, so that is only a rim).
Priority = later in (lungs, heart, clavicles).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ImageReadError, RecipeError
from ...image import MedicalImage
from ...io import read_image
from ..paths import inside_glob
from ..source_report import system_file
from ..sources import CaseSource, SourceListing, safe_id
from . import loader, parser

PIXEL_MM = 0.175
SIZE = 2048
BITS = 12
STRUCTURES = {"left lung": 1, "right lung": 1, "heart": 2,
              "left clavicle": 3, "right clavicle": 3}  # in priority order (last wins)


@parser("scr", options={"images", "masks", "bin", "require_masks"})
def scr(options: dict[str, Any], root: Path, key: bytes) -> SourceListing:
    """One case per JSRT image; its SCR masks (found under any ``masks`` folder) are
    passed to the ``scr_labels`` loader. Options: ``images`` (glob, default
    ``**/*.IMG``), ``masks`` (glob of mask folders, default ``**/masks``), ``bin``
    (default 2: the SCR grid) and ``require_masks`` (default true: an image without all
    five masks is skipped, and reported)."""
    binning = int(options.get("bin", 2))
    found: dict[str, dict[str, Path]] = {}
    cases, skipped = [], {}
    for folder in inside_glob(root, options.get("masks", "**/masks"), "source.options.masks"):
        for structure in STRUCTURES:
            for path in _files(sorted((folder / structure).glob("*.gif")), root, skipped):
                found.setdefault(path.stem.upper(), {})[structure] = path
    images = _files([p for p in inside_glob(root, options.get("images", "**/*.IMG"),
                                            "source.options.images")
                     if p.is_file() and p.suffix.lower() == ".img"], root, skipped)
    for path in images:
        stem = path.stem.upper()
        masks = found.pop(stem, {})
        missing = [s for s in STRUCTURES if s not in masks]
        if missing and options.get("require_masks", True):
            skipped[str(path.relative_to(root))] = f"no SCR mask for {', '.join(missing)}"
            continue
        fold = _fold_of(masks)
        fields = {"nodule": "yes" if stem.startswith("JPCLN") else "no", "scr_fold": fold,
                  "scr_masks": {s: str(p) for s, p in masks.items()}}
        cases.append(CaseSource(safe_id(stem, path), path, None, stem, fields,
                                loader="jsrt_raw", loader_args={"bin": binning},
                                mask_loader="scr_labels" if masks else None,
                                mask_loader_args={"masks": fields["scr_masks"], "bin": binning}))
    for stem, masks in found.items():
        for path in masks.values():
            skipped[str(path.relative_to(root))] = "SCR mask without a JSRT image"
    if not images:
        raise RecipeError(root, f"no JSRT .IMG file found with {options.get('images', '**/*.IMG')!r}",
                          hint="pass the folder holding All247images/ and the SCR masks")
    return SourceListing(cases, skipped)


def _files(paths: list[Path], root: Path, skipped: dict[str, str]) -> list[Path]:
    """``paths`` without the macOS ``._JPCLN001.IMG`` / ``._JPCLN001.gif`` forks, which
    are reported in ``skipped`` (they are no image, and no mask of one)."""
    kept = []
    for path in paths:
        if (problem := system_file(path)) is not None:
            skipped[path.relative_to(root).as_posix()] = problem
        else:
            kept.append(path)
    return kept


def _fold_of(masks: dict[str, Path]) -> str:
    """SCR's fold of an image: the ``fold1`` / ``fold2`` folder above its ``masks`` folder
    (``scratch/fold1/masks/left lung/JPCLN001.gif``); "" when the masks lie elsewhere."""
    if not masks:
        return ""
    folder = next(iter(masks.values())).parent.parent.parent.name
    return folder if re.fullmatch(r"fold\d+", folder) else ""


@loader("jsrt_raw")
def jsrt_raw(path: Path, bin: int = 1, size: int = SIZE) -> MedicalImage:
    """A JSRT ``.IMG``: 2048 x 2048 big-endian 12-bit, inverted to higher = brighter,
    binned ``bin`` x ``bin`` (block mean, rounded); spacing 0.175 mm x ``bin``."""
    path = Path(path)
    expected = size * size * 2
    actual = path.stat().st_size
    if actual != expected:
        raise ImageReadError(path, f"{actual} bytes, not the {expected} of a {size}x{size} "
                             "16-bit JSRT image", hint="is it a JSRT .IMG file?")
    raw = np.fromfile(path, dtype=">u2").reshape(size, size)  # rows, columns
    if raw.max(initial=0) >= 1 << BITS:
        raise ImageReadError(path, f"values up to {int(raw.max())} do not fit 12 bits",
                             hint="JSRT images hold 12-bit values")
    rows = (1 << BITS) - 1 - raw.astype(np.int32)  # density -> brightness
    if bin > 1:
        n = size // bin
        rows = rows[: n * bin, : n * bin].reshape(n, bin, n, bin).mean(axis=(1, 3))
        rows = np.rint(rows)
    spacing = PIXEL_MM * bin
    return _picture(path, rows.astype(np.uint16), spacing, bin, "jsrt_raw",
                    {"bits_stored": BITS, "signed": False, "photometric": "MONOCHROME2",
                     "inverted": True}).recorded("read", reader="jsrt_raw", path=str(path),
                                                 format="jsrt-raw", bin=bin)


@loader("scr_labels")
def scr_labels(path: Path, masks: dict[str, str], bin: int = 2) -> MedicalImage:
    """The SCR masks of one image as one label map on the ``jsrt_raw`` grid of the same
    ``bin`` (SCR masks are drawn at bin 2): lungs 1, heart 2, clavicles 3 (later wins)."""
    labels = None
    for structure, value in STRUCTURES.items():
        if structure not in masks:
            continue
        mask = read_image(masks[structure])
        rows = np.asarray(mask.array[..., 0] if mask.has_channels else mask.array).T
        if labels is None:
            labels = np.zeros(rows.shape, np.uint8)
        if rows.shape != labels.shape:
            raise ImageReadError(masks[structure], f"mask of {rows.shape} differs from the "
                                 f"other SCR masks {labels.shape}", hint="SCR masks are 1024x1024")
        labels[rows > 0] = value
    if labels is None:
        raise ImageReadError(path, "no SCR mask for this image", hint="check the masks folder")
    if labels.shape[0] * bin != SIZE:
        raise ImageReadError(path, f"SCR masks of {labels.shape} do not match the image "
                             f"binned {bin}x{bin} ({SIZE // bin})", hint="use bin: 2")
    image = _picture(path, labels, PIXEL_MM * bin, bin, "scr_labels", {})
    files = sorted(str(Path(p).resolve()) for p in masks.values())
    return image.replace(meta={**image.meta, "source_files": files}).recorded(
        "read", reader="scr_labels", structures=sorted(masks))


def _picture(path: Path, rows: np.ndarray, spacing: float, bin: int, fmt: str,
             intensity: dict[str, Any]) -> MedicalImage:
    """A 2D image (``i`` along a row) with known pixel spacing; voxel 0's centre is the
    centre of the first ``bin`` x ``bin`` block of 0.175 mm pixels."""
    offset = (bin - 1) / 2 * PIXEL_MM
    affine = np.diag([spacing, spacing, 1.0, 1.0])
    affine[:2, 3] = offset
    meta = {"format": fmt, "source_files": [str(Path(path).resolve())], "space": "image",
            "modality": None, "intensity": intensity,
            "pixel_spacing_known": True, "raster": {"bin": bin}}
    return MedicalImage(array=np.asfortranarray(rows.T), affine=affine, spatial_ndim=2,
                        meta=meta)
