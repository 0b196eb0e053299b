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
from pydicom.uid import UID

from ..errors import DicomSeriesError, ImageReadError
from ..limits import check_size
from .dicom_frames import Frame, frame_stack, optional_float

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

        pixels = apply_color_lut(pixels, _palette_in_native_order(dataset))
    return pixels


def _palette_in_native_order(dataset: Dataset) -> Dataset:
    """The dataset, or for a big-endian file a copy of its palette whose 16-bit LUT
    entries are in the machine's order: pydicom's ``apply_color_lut`` reads plain (not
    segmented) LUT data as little-endian whatever the file's encoding, which swaps the
    two bytes of every colour of an Explicit VR Big Endian file (segmented LUTs it reads
    in the file's order)."""
    little_endian = dataset.original_encoding[1] is not False  # None: built in memory
    if little_endian or "SegmentedRedPaletteColorLookupTableData" in dataset:
        return dataset
    palette = Dataset()
    for colour in ("Red", "Green", "Blue", "Alpha"):
        descriptor = f"{colour}PaletteColorLookupTableDescriptor"
        data = f"{colour}PaletteColorLookupTableData"
        if descriptor not in dataset or data not in dataset:
            continue
        entries = int(dataset[descriptor].value[0]) or 1 << 16  # 0 means 2**16
        raw = dataset[data].value
        if len(raw) == 2 * entries:  # 16-bit entries (8-bit ones have no byte order)
            raw = np.frombuffer(raw, dtype=">u2").astype("=u2").tobytes()
        palette[descriptor] = dataset[descriptor]
        setattr(palette, data, raw)
    return palette


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


class _RawRun:
    """Consecutive single-frame files whose uncompressed little-endian pixels were read
    straight from the file into their slices of the stack, decoded there at once:
    pydicom's decoder takes the slices as one multi-frame pixel data, so its checks
    (length, Bits Allocated/Stored...) and corrections (unused bits) apply as in
    ``pixel_array``, without the two copies of the bytes and the set-up per file that
    this costs file by file."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.start = 0
        self.form: tuple[UID, dict] | None = None  # transfer syntax, pixel options

    def add(self, where: Path, stack: np.ndarray, k: int,
            frame: Frame) -> tuple[np.ndarray, bool]:
        """Read ``frame``'s pixel bytes into ``stack[k]``, after decoding the run so
        far if the frame cannot continue it. The stack, and False when the file is not
        such a case (the general path then decodes it, and names what is wrong)."""
        form = _raw_form(stack[k], frame.dataset)
        if form is None or (self.frames and (form[1:] != self.form
                                             or k != self.start + len(self.frames))):
            dtype = stack.dtype
            stack = self.decode(where, stack)
            if form is None or stack.dtype != dtype:
                return stack, False
        element, form = form[0], form[1:]
        with _decoding(frame.path, frame.dataset), open(frame.path, "rb") as handle:
            handle.seek(element.value_tell)
            count = handle.readinto(memoryview(stack[k]).cast("B"))
        if count != stack[k].nbytes:
            return stack, False  # truncated
        if not self.frames:
            self.start, self.form = k, form
        self.frames.append(frame)
        return stack, True

    def decode(self, where: Path, stack: np.ndarray) -> np.ndarray:
        """The stack with the run's slices decoded in place (file by file, where the
        error names its file, if pydicom refuses them together)."""
        if not self.frames:
            return stack
        frames, start, (syntax, options) = self.frames, self.start, self.form
        self.frames = []
        block = stack[start:start + len(frames)]
        try:
            pixels = get_decoder(syntax).as_array(
                memoryview(block).cast("B"), **{**options, "number_of_frames": len(frames)})[0]
        except Exception:  # noqa: BLE001 - decoded file by file below, naming the file
            pixels = None
        if pixels is not None and pixels.dtype == block.dtype and pixels.size == block.size:
            pixels = pixels.reshape(block.shape)  # one frame comes without its frame axis
            if not _same_memory(pixels, block):  # pydicom corrected into a new array
                block[...] = pixels
            return stack
        for k, frame in enumerate(frames, start):
            stack = _place(where, stack, k, frame.path, _decode(frame.path, frame.dataset))
        return stack


def _raw_form(slot: np.ndarray, dataset: Dataset) -> tuple[RawDataElement, UID, dict] | None:
    """(pixel element, transfer syntax, pydicom's pixel options) of a file whose pixels
    decode into ``slot`` as they are read: one monochrome frame, left in the file by the
    header parse, little endian, exactly Rows x Columns of ``slot``'s type (or one
    padding byte more); None otherwise."""
    element = _deferred_pixels(dataset)
    if (element is None or not element.is_little_endian or slot.ndim != 2
            or element.length not in (slot.nbytes, slot.nbytes + slot.nbytes % 2)):
        return None
    # As pydicom's pixel_array(file) describes pixels it reads from a file (the VR it
    # adds matters for big-endian data only).
    options = as_pixel_options(dataset, pixel_keyword=PIXEL_KEYWORDS[element.tag])
    if (options["number_of_frames"] != 1
            or (options.get("rows"), options.get("columns")) != slot.shape
            or options.get("bits_allocated") != 8 * slot.itemsize
            or str(options.get("photometric_interpretation", "")).upper()
            not in ("MONOCHROME1", "MONOCHROME2")):
        return None  # frames to split, another matrix, colour (a palette, YBR...)
    return element, dataset.file_meta.TransferSyntaxUID, options


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
    run = _RawRun()
    for k, frame in enumerate(frames):
        if frame.index is None and stack is not None:
            stack, added = run.add(where, stack, k, frame)
            if added:
                continue
        if stack is not None:
            stack = run.decode(where, stack)  # before the stack may widen
        if frame.index is None:
            pixels = _decode(frame.path, frame.dataset)
        else:
            if frame.path not in decoded:
                all_frames = _decode(frame.path, frame.dataset)
                decoded[frame.path] = frame_stack(frame.path, frame.dataset, all_frames)
            pixels = decoded[frame.path][frame.index]
        if stack is None:
            stack = np.empty((len(frames),) + pixels.shape, dtype=pixels.dtype)
        stack = _place(where, stack, k, frame.path, pixels)
    return run.decode(where, stack) if stack is not None else stack


def _place(where: Path, stack: np.ndarray, k: int, path: Path,
           pixels: np.ndarray) -> np.ndarray:
    """The stack with ``pixels`` as its slice k (widened to a wider type), or an error
    when the slice has another size than the first."""
    if pixels.shape != stack.shape[1:]:
        raise DicomSeriesError(
            where, f"slices of different sizes: {path.name} is "
            f"{pixels.shape} while the first slice is {stack.shape[1:]}",
            hint="the folder mixes images of different series or matrix sizes",
        )
    if pixels.dtype != stack.dtype:
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


# Philips private MRScaleSlope, at the top level of classic files and in each frame's
# Philips private functional group (2005,140F) of enhanced ones; dcm2niix reads it in both
# places (nii_dicom.cpp: kPhilipsSlope inside kPrivatePerFrameSq).
PHILIPS_SCALE_SLOPE = (0x2005, 0x100E)
PHILIPS_PER_FRAME = (0x2005, 0x140F)


def rescale(stack: np.ndarray, frames: list[Frame],
            scale_slopes: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Modality LUT (RescaleSlope/Intercept), frame by frame; how it was stored.

    ``scale_slopes``: Philips MRScaleSlope (SS) per frame, for dcm2niix's precise values
    (stored * RS + RI) / (RS * SS) (nii_dicom_batch.cpp, PhilipsPreciseVal)."""
    slopes = np.array([f.slope for f in frames])
    intercepts = np.array([f.intercept for f in frames])
    if scale_slopes is not None:
        # Precise values are fractions of the stored integers: always float.
        divisors = slopes * scale_slopes
        return _scaled(stack, slopes / divisors, intercepts / divisors), "float32"
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
    return _scaled(stack, slopes, intercepts), "float32"


def _scaled(stack: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    # Computed in float64 (exact for every stored integer), stored as float32.
    out = np.empty(stack.shape, dtype=np.float32)
    for k in range(stack.shape[0]):
        out[k] = stack[k].astype(np.float64) * slopes[k] + intercepts[k]
    return out


def philips_scale_slopes(where: Path, frames: list[Frame],
                         precise: bool = True) -> np.ndarray | None:
    """Each frame's Philips MRScaleSlope, or None where no frame of a Philips series has
    a usable one (dcm2niix applies it only when SS and RS * SS are non-zero).

    Where only some frames have one, their precise values and the others' displayed
    ones would differ by RS * SS within one image (dcm2niix applies one frame's SS to
    all, a guess): refused when ``precise`` values are asked for."""
    if "PHILIPS" not in str(frames[0].dataset.get("Manufacturer", "")).upper():
        return None
    found = [_philips_scale_slope(frame) for frame in frames]
    usable = [value is not None and bool(np.isfinite(value)) and value * frame.slope != 0
              for value, frame in zip(found, frames)]
    if all(usable):
        return np.array(found, dtype=np.float64)
    if any(usable) and precise:
        raise DicomSeriesError(
            where, f"Philips MRScaleSlope (2005,100E) on {sum(usable)} of {len(frames)} "
            "frames only: the others' precise values are unknown",
            hint="read the displayed values (recipe read: {philips_scaling: display})")
    return None


def _philips_scale_slope(frame: Frame) -> float | None:
    sources = [frame.dataset]
    if frame.item is not None and PHILIPS_PER_FRAME in frame.item:
        private = frame.item[PHILIPS_PER_FRAME].value
        sources.insert(0, private[0] if len(private) else Dataset())
    for source in sources:
        if PHILIPS_SCALE_SLOPE in source:
            return _float_value(source[PHILIPS_SCALE_SLOPE].value)
    return None


def _float_value(value) -> float | None:
    """A FL value as pydicom gives it: a number, or raw little-endian bytes where an
    implicit VR file leaves a private tag undecoded."""
    if isinstance(value, bytes):
        if len(value) not in (4, 8):
            return None
        return float(struct.unpack("<f" if len(value) == 4 else "<d", value)[0])
    return optional_float(value)


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
