"""Pixel values of DICOM frames: decoding, stacking, MONOCHROME1 and the modality LUT."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import as_pixel_options, get_decoder, pixel_array
from pydicom.pixels.utils import _get_jpg_parameters, get_nr_frames

from ..errors import DicomSeriesError, ImageReadError
from ..limits import check_size
from .dicom_frames import Frame, frame_stack

PIXEL_KEYWORDS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData",
                  0x7FE00009: "DoubleFloatPixelData"}


def _decode(path: Path, dataset: Dataset) -> np.ndarray:
    _check_codestreams(path, dataset)
    deferred = _deferred_pixels(dataset)
    try:
        with _decoding(path, dataset):
            # pydicom decodes compressed transfer syntaxes through its plugins
            # (pylibjpeg, Pillow) and converts YBR colour to RGB; nothing else is applied
            # here. Its function, not Dataset.pixel_array, which keeps a copy of the
            # array on the dataset as long as the dataset lives.
            pixels = pixel_array(dataset)
    finally:
        if deferred is not None:
            # Back to "in the file": the bytes just read are freed once decoded and the
            # next file reuses the memory (kept on every dataset, they would cost a
            # fresh allocation per file and the whole series' bytes at once).
            dataset[deferred.tag] = deferred
    photometric = str(dataset.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        pixels = apply_color_lut(pixels, dataset)
    return pixels


@contextmanager
def _decoding(path: Path, dataset: Dataset) -> Iterator[None]:
    """Any failure of the decoder as one ImageReadError naming the file."""
    try:
        yield
    except MemoryError:
        raise  # not a decoding problem: read_image names the file and the size limit
    except Exception as error:  # noqa: BLE001 - plugin errors have no common base class
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        raise ImageReadError(
            path, f"cannot decode pixel data ({name}; {type(error).__name__}: {error})",
            hint="the file may be truncated, or needs a pylibjpeg/gdcm plugin",
        ) from error


def _deferred_pixels(dataset: Dataset) -> RawDataElement | None:
    """The pixel data element when the header parse left its value in the file."""
    for tag in PIXEL_KEYWORDS:
        if tag in dataset:
            element = dataset.get_item(tag, keep_deferred=True)
            return element if isinstance(element, RawDataElement) and element.value is None \
                else None
    return None


def _read_into(slot: np.ndarray, path: Path, dataset: Dataset) -> bool:
    """Decode a single-frame file's uncompressed little-endian pixels in place: the
    bytes go from the file straight into ``slot`` (a C-ordered 2D slice of the stack),
    which is then handed to pydicom's decoder as the pixel data, so its checks (length,
    Bits Allocated/Stored...) and corrections (unused bits) apply exactly as in
    ``pixel_array``, without the two copies of the bytes that path makes.

    False when the file is not such a case, or decodes to another shape or type than
    ``slot``: the general path then decodes it and names any mismatch."""
    element = _deferred_pixels(dataset)
    if (element is None or not element.is_little_endian or slot.ndim != 2
            or element.length > slot.nbytes + slot.nbytes % 2):  # excess data: pydicom's call
        return False
    # As pydicom's pixel_array(file) describes pixels it reads from a file (the VR it
    # adds matters for big-endian data only).
    options = as_pixel_options(dataset, pixel_keyword=PIXEL_KEYWORDS[element.tag])
    if options["number_of_frames"] != 1 or str(options.get(
            "photometric_interpretation", "")).upper() not in ("MONOCHROME1", "MONOCHROME2"):
        return False  # frames to split, or colour: a palette, YBR...
    buffer = memoryview(slot).cast("B")
    with _decoding(path, dataset):
        with open(path, "rb") as handle:
            handle.seek(element.value_tell)
            count = handle.readinto(buffer[:min(element.length, buffer.nbytes)])
        # A writeable buffer: pydicom returns a view on it, or corrects it in place.
        pixels = get_decoder(dataset.file_meta.TransferSyntaxUID).as_array(
            buffer[:count], **options)[0]
    if pixels.shape != slot.shape or pixels.dtype != slot.dtype:
        return False
    if not _same_memory(pixels, slot):  # pydicom corrected the values into a new array
        slot[...] = pixels
    return True


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.strides == b.strides)


def _check_codestreams(path: Path, dataset: Dataset) -> None:
    """Refuse a compressed frame whose codestream declares a larger image than the
    dataset's Rows x Columns x SamplesPerPixel, which ``check_size`` counted: the JPEG
    and JPEG 2000 decoders allocate what the codestream declares before pydicom compares
    it with the header (a 5 KB JPEG Lossless frame declaring 30000^2 took 5.3 GB)."""
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_encapsulated or "PixelData" not in dataset:
        return
    header = (int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0),
              int(dataset.get("SamplesPerPixel") or 1))
    try:
        frames = list(generate_frames(dataset.PixelData,
                                      number_of_frames=get_nr_frames(dataset, warn=False)))
    except Exception:  # noqa: BLE001 - damaged encapsulation: the decoder reports it
        return
    for k, frame in enumerate(frames):
        declared = _codestream_shape(frame)
        if declared and any(d > h for d, h in zip(declared, header)):
            raise ImageReadError(
                path, f"frame {k} holds a codestream of {declared[0]}x{declared[1]}x"
                f"{declared[2]} (rows x columns x components), larger than the header's "
                f"{header[0]}x{header[1]}x{header[2]}", hint="the file is forged or "
                "damaged: its compressed frames do not match its header")


def _codestream_shape(frame: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) a JPEG, JPEG-LS or JPEG 2000 codestream declares
    (pydicom's own JPEG header parser; the J2K SIZ marker, ISO/IEC 15444-1 A.5.1), or
    None for another or unparsable codestream."""
    jpeg = _get_jpg_parameters(frame)
    if jpeg:
        return jpeg["height"], jpeg["width"], jpeg["components"]
    siz = frame.find(b"\xff\x4f\xff\x51", 0, 2**16)  # SOC then SIZ, after any JP2 boxes
    if siz < 0 or len(frame) < siz + 42:
        return None
    x, y, x0, y0 = struct.unpack(">IIII", frame[siz + 8:siz + 24])
    components = struct.unpack(">H", frame[siz + 40:siz + 42])[0]
    return max(y - y0, 0), max(x - x0, 0), components


def stack_pixels(where: Path, frames: list[Frame]) -> np.ndarray:
    """Stored values of the (sorted) frames as one ``(n, rows, cols[, samples])`` array."""
    check_size(where, _decoded_shape(frames), "DICOM pixel data")
    stack = None
    decoded: dict[Path, np.ndarray] = {}
    for k, frame in enumerate(frames):
        if frame.index is None and stack is not None and \
                _read_into(stack[k], frame.path, frame.dataset):
            continue
        if frame.index is None:
            pixels = _decode(frame.path, frame.dataset)
        else:
            if frame.path not in decoded:
                all_frames = _decode(frame.path, frame.dataset)
                decoded[frame.path] = frame_stack(frame.path, frame.dataset, all_frames)
            pixels = decoded[frame.path][frame.index]
        if stack is None:
            stack = np.empty((len(frames),) + pixels.shape, dtype=pixels.dtype)
        elif pixels.shape != stack.shape[1:]:
            raise DicomSeriesError(
                where, f"slices of different sizes: {frame.path.name} is "
                f"{pixels.shape} while the first slice is {stack.shape[1:]}",
                hint="the folder mixes images of different series or matrix sizes",
            )
        elif pixels.dtype != stack.dtype:
            stack = stack.astype(np.result_type(stack.dtype, pixels.dtype))
        stack[k] = pixels
    return stack


def _decoded_shape(frames: list[Frame]) -> tuple[int, int, int, int]:
    """(frames, rows, columns, samples) the decoder will produce for all the files, from
    their headers: NumberOfFrames summed, the largest matrix (a series of mixed sizes is
    refused later anyway). A palette image decodes to RGB."""
    datasets = {frame.path: frame.dataset for frame in frames}.values()

    def samples(dataset: Dataset) -> int:
        palette = str(dataset.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR"
        return 3 if palette else int(dataset.get("SamplesPerPixel", 1) or 1)

    return (sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in datasets),
            max(int(ds.Rows) for ds in datasets), max(int(ds.Columns) for ds in datasets),
            max(samples(ds) for ds in datasets))


def invert_monochrome1(stack: np.ndarray, bits_stored: int, signed: bool) -> tuple[np.ndarray, int]:
    """MONOCHROME1 shows low values bright; flip it so that higher = brighter everywhere.

    Unsigned: ``(2**bits_stored - 1) - v``. Signed: ``-1 - v`` (bitwise NOT), which maps the
    stored range ``[-2**(b-1), 2**(b-1) - 1]`` onto itself reversed, without overflow.
    """
    if signed:
        return np.invert(stack), -1
    top = (1 << bits_stored) - 1
    if stack.size and int(stack.max()) > top:  # header understates the bits in use
        top = (1 << (stack.dtype.itemsize * 8)) - 1
    return (top - stack).astype(stack.dtype), top


def rescale(stack: np.ndarray, frames: list[Frame]) -> tuple[np.ndarray, str]:
    """Modality LUT (RescaleSlope/Intercept), frame by frame; how it was stored."""
    slopes = np.array([f.slope for f in frames])
    intercepts = np.array([f.intercept for f in frames])
    if np.all(slopes == 1) and np.all(intercepts == 0):
        return stack, "none"
    uniform = np.all(slopes == slopes[0]) and np.all(intercepts == intercepts[0])
    if uniform and slopes[0] == 1 and float(intercepts[0]).is_integer():
        low = int(stack.min()) + int(intercepts[0])
        high = int(stack.max()) + int(intercepts[0])
        info = np.iinfo(np.int16)
        if info.min <= low and high <= info.max:
            out = np.empty(stack.shape, dtype=np.int16)
            for k in range(stack.shape[0]):  # slice by slice: no full int32 temporary
                out[k] = stack[k].astype(np.int32) + int(intercepts[0])
            return out, "int16"
    # Computed in float64 (exact for every stored integer), stored as float32.
    out = np.empty(stack.shape, dtype=np.float32)
    for k in range(stack.shape[0]):
        out[k] = stack[k].astype(np.float64) * slopes[k] + intercepts[k]
    return out, "float32"


def to_index_order(stack: np.ndarray, spatial_ndim: int, n_volumes: int = 1) -> np.ndarray:
    """``(n, rows, cols[, samples])`` to ``(cols, rows[, n])[, samples]`` (i along a row).

    With ``n_volumes > 1`` the frames are volume after volume, and the volumes become the
    trailing channel axis: ``(cols, rows, slices, volumes)``, still Fortran-ordered.
    """
    colour = stack.ndim == 4
    if n_volumes > 1:
        volumes = stack.reshape((n_volumes, stack.shape[0] // n_volumes) + stack.shape[1:])
        return _native(volumes.transpose((3, 2, 1, 0)))
    if spatial_ndim == 2:
        stack = stack[0]
        array = stack.transpose((1, 0, 2)) if colour else stack.T
    else:
        array = stack.transpose((2, 1, 0, 3)) if colour else stack.transpose((2, 1, 0))
    return _native(array)


def _native(array: np.ndarray) -> np.ndarray:
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = np.ascontiguousarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array
