"""Pictures without a patient frame: PNG, JPEG, GIF, BMP (Pillow) and TIFF (tifffile).

Axis convention (MedicalImage): ``i`` runs along a row, ``j`` down the rows, so a picture
of H rows x W columns becomes an array of shape ``(W, H)`` (``(W, H, 3)`` for colour).
The affine is the identity: DPI/resolution tags describe printing, not the size of the
imaged object, so the pixel spacing is reported as unknown (1.0).
"""

from __future__ import annotations

import lzma
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import tifffile
from PIL import Image, UnidentifiedImageError

from ..errors import ImageReadError
from ..image import MedicalImage
from ..limits import OPTION, ImageTooLargeError, check_size
from .itk import itk_gist
from .read_options import current_picture_fit

PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
SUFFIXES = PILLOW_SUFFIXES + TIFF_SUFFIXES

_FORMAT_NAMES = {".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff"}

# Pillow modes that convert to 8-bit RGB without losing anything that matters here.
_TO_RGB = {"CMYK", "YCbCr", "LAB", "HSV", "RGBX"}
# TIFF compressions that tifffile inflates whole (zlib/lzma.decompress) when imagecodecs
# is absent, whatever the strip's size: a bounded decompressor for each.
_INFLATERS = {8: zlib.decompressobj, 32946: zlib.decompressobj, 34925: lzma.LZMADecompressor}
_PACKBITS = 32773  # tifffile's fallback decodes into a list of ints: 8 bytes per byte


def _packbits_length(data: bytes, limit: int) -> int:
    """Bytes a PackBits segment decodes to, counted from its run headers (TIFF 6.0,
    section 9) without decoding; counting stops past ``limit``."""
    total, i, end = 0, 0, len(data)
    while i < end and total <= limit:
        n = data[i]
        if n < 128:  # n + 1 literal bytes follow
            total, i = total + n + 1, i + n + 2
        elif n > 128:  # the next byte, 257 - n times
            total, i = total + 257 - n, i + 2
        else:  # 128: no operation
            i += 1
    return total


def read_pillow(path: Path) -> MedicalImage:
    notes: dict[str, Any] = {}
    try:
        with warnings.catch_warnings():
            # Past Image.MAX_IMAGE_PIXELS Pillow only warns: check_size decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as pil:
                notes["frames"] = int(getattr(pil, "n_frames", 1))
                pil.seek(0)  # GIF/APNG/multi-page: the first frame
                notes.update(_exif_orientation(pil))
                notes.update(_reduced_decoding(pil, current_picture_fit()))
                check_size(path, _decoded_shape(pil), "picture")
                if _deep_colour_png(pil):
                    pixels, notes = _deep_colour_pixels(path, pil, notes)
                else:
                    pil.load()  # decode now, so truncated files fail here
                    pixels, notes = _pillow_pixels(pil, notes)
                fmt = (pil.format or path.suffix.lstrip(".")).lower()
                if "dpi" in pil.info:
                    notes["dpi"] = [float(v) for v in pil.info["dpi"]]
    except Image.DecompressionBombError as error:
        # Twice MAX_IMAGE_PIXELS: Pillow refuses in Image.open, before check_size can.
        raise ImageTooLargeError(
            path, f"picture too large for Pillow, refused before decoding: {error}",
            hint=f"Pillow's own limit PIL.Image.MAX_IMAGE_PIXELS applies whatever "
            f"{OPTION} says; convert the picture to TIFF to read it under {OPTION}",
        ) from error
    except UnidentifiedImageError as error:
        raise ImageReadError(path, _unidentified(path),
                             hint="the file may be damaged or not what its suffix says"
                             ) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError(
            path, f"cannot read as {path.suffix.lstrip('.').upper()} image "
            f"({type(error).__name__}: {error})",
            hint="the file may be truncated, empty or not what its suffix says",
        ) from error
    return _picture(path, pixels, {"jpg": "jpeg"}.get(fmt, fmt),
                    reader=notes.pop("decoded_by", "pillow"), notes=notes)


# TIFF 6.0's Orientation (274), which EXIF took over: how the stored rows and columns are
# to be turned for display. Recorded, never applied: the pixels stay as stored, as the
# readers users compare against give them -- MONAI's PILReader and torchvision's
# pil_loader (Image.open, no ImageOps.exif_transpose), imageio (rotate=False by default),
# ITK's JPEG reader -- and as the masks and boxes made on them by those tools are.
ORIENTATION_TAG = 274


def _orientation_tag(value) -> dict[str, int]:
    """``{"orientation_tag": n}`` for a stored orientation other than 1 (as stored)."""
    try:
        tag = int(value)
    except (TypeError, ValueError):
        return {}
    return {"orientation_tag": tag} if tag != 1 else {}


def _exif_orientation(pil: Image.Image) -> dict[str, int]:
    """The orientation tag of the EXIF block read with the header (a JPEG's APP1, a PNG's
    eXIf before its pixels). Not ``getexif()``: for a PNG it decodes the whole picture
    to look after the pixels, before check_size has seen its size."""
    data = pil.info.get("exif")
    if not data:
        return {}
    exif = Image.Exif()
    try:
        exif.load(data)
    except (SyntaxError, ValueError, OSError, struct.error):  # a damaged block: no tag
        return {}
    return _orientation_tag(exif.get(ORIENTATION_TAG))


def _tiff_resolution(page) -> dict[str, Any]:
    """XResolution/YResolution (pixels per ResolutionUnit) where the page has them,
    recorded only: they describe output, not the imaged object (a 72 dpi default would
    claim 0.353 mm pixels, as ITK's TIFF reader then says), so the pixel size stays
    unknown unless a table gives it (``source.pixel_spacing``)."""
    if 282 not in page.tags or 283 not in page.tags:
        return {}
    try:
        unit = tifffile.RESUNIT(page.resolutionunit).name.lower()
    except ValueError:  # not one of TIFF's units
        unit = str(page.resolutionunit)
    return {"resolution": [float(v) for v in page.resolution], "resolution_unit": unit}


def _reduced_decoding(pil: Image.Image, fit: tuple[int, ...] | None) -> dict[str, Any]:
    """Set a JPEG to decode reduced by the largest factor (8, 4 or 2) that divides both sides
    and keeps at least twice the pixels a resize to fit ``fit`` keeps, along both axes
    whichever way they pair; ``{"reduced": scale, ...}`` when it does, else nothing.
    Pillow's ``draft``: the pixel at index i of the decoded picture is the block of
    original pixels ``scale * i .. scale * i + scale - 1`` (its box, as ``thumbnail``
    uses it)."""
    if fit is None or len(fit) != 2 or pil.format != "JPEG":
        return {}
    rows, columns = pil.height, pil.width
    kept = max(min(fit[0] / columns, fit[1] / rows), min(fit[0] / rows, fit[1] / columns))
    # Sides a whole number of blocks only: a partial last block would make the reduced
    # picture span past the file, and the resized grid would move.
    scale = next((s for s in (8, 4, 2)
                  if 2 * s * kept <= 1 and rows % s == 0 and columns % s == 0), 1)
    if scale == 1:
        return {}
    drafted = pil.draft(pil.mode, (columns // scale, rows // scale))
    if drafted is None:  # a progressive or multi-tile JPEG: Pillow decodes it whole
        return {}
    scale = round(columns / drafted[1][2])
    # The file's own size, for the case table's original_shape (the pixels are smaller).
    return {"reduced": scale, "full_size": [columns, rows]} if scale > 1 else {}


def _decoded_shape(pil: Image.Image) -> tuple[int, int, int]:
    """(rows, columns, channels) of the frame as _pillow_pixels will hold it: a palette
    may expand to RGB."""
    channels = 3 if pil.mode in ("P", "PA") else len(pil.getbands())
    return pil.height, pil.width, channels


# Leading bytes of the formats a picture folder may hold under a wrong name.
_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8": "JPEG", b"GIF8": "GIF",
          b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"\x1f\x8b": "gzip",
          b"%PDF": "PDF", b"PK\x03\x04": "ZIP"}


def _unidentified(path: Path) -> str:
    """What a file Pillow cannot identify is instead, from its first bytes: a damaged
    header of its own format, another format, text (an HTML error page, a list), or
    unknown bytes."""
    expected = _FORMAT_NAMES.get(path.suffix.lower(), path.suffix.lstrip(".")).upper()
    with open(path, "rb") as handle:
        head = handle.read(512)
    found = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)
    if found == expected:
        return f"corrupt {expected} header (the file starts like a {expected} but " \
            "Pillow cannot parse its header)"
    if found:
        return f"not a {expected} image: it is a {found} file"
    if head and not any(byte < 9 or 13 < byte < 32 for byte in head):
        shown = head[:40].decode("utf-8", "replace").split("\n")[0]
        return f"not a {expected} image: it is text ({shown!r}...)"
    return f"not a {expected} image: its first bytes {head[:8].hex(' ')} match no " \
        "picture format"


def _pillow_pixels(pil: Image.Image, notes: dict[str, Any]) -> tuple[np.ndarray, dict]:
    """Rows-first numpy pixels of the frame, in a mode that keeps the stored values."""
    mode = notes["mode"] = pil.mode
    if mode == "P" or mode == "PA":
        # Palette: expand it; a grey palette stays one channel (e.g. 8-bit X-rays saved
        # as palette PNG), a coloured one becomes RGB.
        rgb = np.asarray(pil.convert("RGB"))
        grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
        notes["palette"] = "grey" if grey else "colour"
        return (np.ascontiguousarray(rgb[..., 0]) if grey else rgb), notes
    if mode in ("RGBA", "LA", "La", "RGBa"):
        notes["alpha_dropped"] = True
        pil = pil.convert("RGB" if mode.startswith("RGB") else "L")
    elif mode == "1":
        pil = pil.convert("L")  # bilevel: 0/255
    elif mode in _TO_RGB:
        pil = pil.convert("RGB")
    pixels = np.asarray(pil)
    if mode == "I" and pixels.size and pixels.min() >= 0 and pixels.max() <= 0xFFFF:
        pixels = pixels.astype(np.uint16)  # 16-bit files that Pillow opens as 32-bit 'I'
    return pixels, notes


# 16-bit PNG colour types (PNG spec 11.2.2: truecolour, grey + alpha, truecolour + alpha)
# that Pillow decodes to 8 bits a channel, keeping the high byte: its PngImagePlugin maps
# them to RGB/RGBA ("LA;16B->LA not yet available"), without a word.
_DEEP_COLOUR = ("RGB;16B", "RGBA;16B", "LA;16B")


def _deep_colour_png(pil: Image.Image) -> bool:
    return pil.format == "PNG" and bool(pil.tile) and pil.tile[0][3] in _DEEP_COLOUR


def _deep_colour_pixels(path: Path, pil: Image.Image, notes: dict[str, Any]
                        ) -> tuple[np.ndarray, dict]:
    """Rows-first uint16 pixels of a 16-bit colour PNG, through ITK's PNG reader (libpng,
    all 16 bits), its alpha dropped. ITK has no grey + alpha pixel type: such a file is
    refused rather than read at half its depth. (imageio and MONAI's PILReader read
    through Pillow: 8 bits.)"""
    rawmode = notes["mode"] = pil.tile[0][3]
    if rawmode == "LA;16B":
        raise ImageReadError(path, "16-bit grey + alpha PNG: Pillow keeps only 8 of its 16 "
                             "bits and ITK has no such pixel type", hint="save it as a 16-bit "
                             "grey PNG without alpha (or a TIFF)")
    try:
        pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(path), imageIO="PNGImageIO"))
    except RuntimeError as error:
        raise ImageReadError(path, f"cannot read as 16-bit PNG ({itk_gist(error)})",
                             hint="the file may be truncated or damaged") from error
    notes["decoded_by"] = "simpleitk"
    if pixels.shape[-1] == 4:
        notes["alpha_dropped"] = True
    return np.ascontiguousarray(pixels[..., :3]), notes


def read_tiff(path: Path) -> MedicalImage:
    try:
        # Only this file's own pages: OME-XML (UUID FileName) and NDTiff.index name other
        # files, which tifffile would open wherever they point ('../', absolute).
        with tifffile.TiffFile(path, _multifile=False, is_ndtiff=False) as tif:
            series = tif.series[0]
            check_size(path, series.shape, f"TIFF series ({series.axes})")
            _check_inflated_segments(path, tif.filehandle, series)
            axes, pixels = series.axes, series.asarray()
            page = tif.pages.first
            photometric = getattr(page.photometric, "name", str(page.photometric))
            notes = {"axes": axes, "pages": len(tif.pages), "photometric": photometric,
                     **_orientation_tag(page.tags.valueof(ORIENTATION_TAG)),
                     **_tiff_resolution(page)}
    except ValueError as error:
        if "imagecodecs" not in str(error):
            raise _tiff_error(path, error) from error
        # Compressions that tifffile cannot decode without imagecodecs (JPEG, ...):
        # Pillow/libtiff can.
        return read_pillow(path)
    except (tifffile.TiffFileError, OSError, EOFError, IndexError, KeyError) as error:
        raise _tiff_error(path, error) from error
    samples = pixels.shape[axes.index("S")] if "S" in axes else 1
    pixels = _tiff_rows_first(path, pixels, axes)
    if samples in (2, 4):
        notes["alpha_dropped"] = True
    if photometric == "MINISWHITE" and pixels.dtype.kind == "u":
        # TIFF's MONOCHROME1: flip it so that higher = brighter, as for DICOM.
        pixels = np.iinfo(pixels.dtype).max - pixels
        notes["inverted"] = True
    return _picture(path, pixels, "tiff", reader="tifffile", notes=notes)


def _check_inflated_segments(path: Path, handle, series) -> None:
    """Refuse a deflate, LZMA or PackBits strip or tile that inflates past its page:
    tifffile inflates each one whole, whatever the tags say, so a 1 MB page can hide
    gigabytes of zeros. Each segment is inflated here at most one page's bytes (plus
    one); a PackBits one is counted from its run headers."""
    for page in series.pages:
        compression = None if page is None else page.keyframe.compression
        inflater = _INFLATERS.get(compression)
        if inflater is None and compression != _PACKBITS:
            continue
        page_bytes = page.keyframe.nbytes
        for offset, count in zip(page.dataoffsets, page.databytecounts):
            handle.seek(offset)
            try:
                inflated = _packbits_length(handle.read(count), page_bytes) \
                    if inflater is None else \
                    len(inflater().decompress(handle.read(count), page_bytes + 1))
            except (zlib.error, lzma.LZMAError):
                continue  # tifffile reports the damage in its own words
            if inflated > page_bytes:
                raise ImageReadError(
                    path, f"a compressed segment at byte {offset:,} inflates past the "
                    f"{page_bytes:,} bytes of its page (a decompression bomb)",
                    hint="the file is forged or damaged; re-export it")


def _tiff_error(path: Path, error: Exception) -> ImageReadError:
    return ImageReadError(
        path, f"cannot read as TIFF ({type(error).__name__}: {error})",
        hint="the file may be truncated or not a TIFF",
    )


def _tiff_rows_first(path: Path, pixels: np.ndarray, axes: str) -> np.ndarray:
    """``(rows, cols[, samples])`` from tifffile's series axes, or an ImageReadError.

    Only single 2D images are accepted: a multi-page stack could be a volume, a time
    series or unrelated pages, and guessing would give a wrong image without a word.
    """
    if axes == "YX":
        return pixels
    if axes in ("YXS", "SYX"):
        if axes == "SYX":  # planar (separate) colour planes
            pixels = np.moveaxis(pixels, 0, -1)
        samples = pixels.shape[-1]
        if samples in (3, 4):
            return np.ascontiguousarray(pixels[..., :3])  # RGB(A): alpha dropped
        if samples == 2:
            return np.ascontiguousarray(pixels[..., 0])  # grey + alpha
        if samples == 1:
            return pixels[..., 0]
    raise ImageReadError(
        path, f"TIFF holds a {axes} series of shape {pixels.shape}, not one 2D image",
        hint="multi-page TIFF stacks are not supported; save one image per file "
        "or convert the stack to NIfTI with its spacing",
    )


def block_grid(scale: int) -> np.ndarray:
    """The affine from the pixels of a picture decoded at a reduced scale k
    (``_reduced_decoding``; 1: decoded whole) to its file's pixels: pixel i is the block
    of file pixels k*i .. k*i + k - 1, centred at k*i + (k - 1)/2."""
    affine = np.diag([scale, scale, 1.0, 1.0])
    affine[:2, 3] = (scale - 1) / 2
    return affine


def file_grid(image: MedicalImage) -> tuple[list[int], np.ndarray]:
    """The spatial shape and affine of a picture's file: those of the image itself, or
    for a JPEG decoded reduced (``meta["raster"]``), those of its file's own pixels, in
    whatever units the image's affine is (mm once a table gave the pixel size)."""
    raster = image.meta.get("raster") or {}
    if not raster.get("full_size"):
        return list(image.spatial_shape), image.affine
    reduced = block_grid(int(raster["reduced"]))
    return list(raster["full_size"]), image.affine @ np.linalg.inv(reduced)


def _picture(path: Path, pixels: np.ndarray, fmt: str, reader: str,
             notes: dict[str, Any]) -> MedicalImage:
    if pixels.ndim not in (2, 3) or pixels.size == 0:
        raise ImageReadError(path, f"unexpected pixel array of shape {pixels.shape}",
                             hint="expected a 2D grey or colour picture")
    colour = pixels.ndim == 3
    # (rows, cols[, c]) -> (cols, rows[, c]): i along a row, j down the rows.
    array = pixels.transpose((1, 0, 2)) if colour else pixels.T
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if colour or not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = np.ascontiguousarray(array)
    intensity = {
        "bits_stored": int(array.dtype.itemsize * 8) if array.dtype.kind in "ui" else None,
        "signed": array.dtype.kind == "i" if array.dtype.kind in "ui" else None,
        "photometric": "RGB" if colour else "MONOCHROME2",
        "inverted": bool(notes.pop("inverted", False)),
    }
    if notes.get("alpha_dropped"):
        intensity["alpha_dropped"] = True
    meta = {
        "format": fmt,
        "source_files": [str(path.resolve())],
        "space": "image",
        "modality": None,
        "intensity": intensity,
        "pixel_spacing_known": False,
        "raster": notes,
    }
    scale = int(notes.get("reduced", 1))
    image = MedicalImage(array=array, affine=block_grid(scale), spatial_ndim=2, meta=meta)
    reduced = {"reduced": scale} if scale > 1 else {}
    turned = {key: notes[key] for key in ("orientation_tag",) if key in notes}
    return image.recorded("read", reader=reader, path=str(path), format=fmt,
                          mode=notes.get("mode") or notes.get("axes"), **reduced, **turned)
