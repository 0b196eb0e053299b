"""DICOM series and files into a MedicalImage (pydicom, pylibjpeg plugins for JPEG/J2K/RLE).

Everything about geometry is decided from ImagePositionPatient (IPP) and
ImageOrientationPatient (IOP), the way dcm2niix and dicom2nifti do it:

* slices are ordered by the projection of IPP on the slice normal (row x column cosine),
  never by InstanceNumber or file name, which scanners and anonymizers get wrong;
* the slice step is measured from the positions; SliceThickness is the excitation
  thickness, which differs from the spacing for gapped or overlapping acquisitions;
* a set of slices that is not one clean volume (missing slice, uneven spacing, mixed
  orientation, duplicate positions, gantry tilt) is refused with a DicomSeriesError
  naming the problem, instead of being stacked into a silently wrong volume.

Enhanced (multi-frame) CT/MR files are read frame by frame from their functional groups
and then go through exactly the same checks as a folder of classic single-frame files.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from ..errors import DicomSeriesError, ImageReadError
from ..geometry import LPS_TO_RAS
from ..image import MedicalImage

SUFFIXES = (".dcm", ".dicom", ".ima")

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

# Tolerances, chosen like dcm2niix/dicom2nifti: scanners write positions with ~1e-5 mm
# rounding, a missing slice or a real gap is of the order of the spacing itself.
SPACING_RTOL = 1e-2  # relative deviation of one gap from the mean gap
SPACING_ATOL_MM = 0.05  # or absolute deviation, whichever is larger
ORIENTATION_ATOL = 1e-3  # difference of direction cosines between slices
DUPLICATE_MM = 1e-3  # two slices closer than this along the normal are "the same"
TILT_SINE_TOL = 1e-2  # ~0.6 degrees between the slice step and the slice normal

# Acquisition facts kept in meta["dicom"]: no names, birth dates or free-text comments
# (the pipeline de-identifies the rest before anything is written).
FACT_KEYWORDS = (
    "Modality", "Manufacturer", "ManufacturerModelName", "SoftwareVersions",
    "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber",
    "SeriesDescription", "ProtocolName", "ImageType", "BodyPartExamined",
    "ViewPosition", "Laterality", "ImageLaterality", "PatientPosition",
    "KVP", "XRayTubeCurrent", "ExposureTime", "Exposure", "ConvolutionKernel",
    "ContrastBolusAgent", "MagneticFieldStrength", "RepetitionTime", "EchoTime",
    "InversionTime", "FlipAngle", "ScanningSequence", "SequenceVariant", "SequenceName",
    "EchoTrainLength", "SliceThickness", "SpacingBetweenSlices", "PixelSpacing",
    "ImagerPixelSpacing", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel",
    "PhotometricInterpretation", "BitsAllocated", "BitsStored", "PixelRepresentation",
    "RescaleType", "WindowCenter", "WindowWidth", "LossyImageCompression",
)


@dataclass
class _Frame:
    """One 2D image of a series: a classic file, or one frame of a multi-frame file."""

    path: Path
    dataset: Dataset
    index: int | None  # frame number inside a multi-frame file, None for a classic file
    position: np.ndarray | None  # IPP, LPS mm
    orientation: np.ndarray | None  # IOP, six direction cosines
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) mm
    thickness: float | None
    slope: float
    intercept: float


# -- finding and grouping files -------------------------------------------------------------


def read_dicom(path: Path) -> MedicalImage:
    """A folder holding one series (searched recursively), or one DICOM file."""
    if path.is_dir():
        datasets = _read_folder(path)
    else:
        datasets = [(path, _read_file(path))]
    frames = _frames_of(path, _one_series(path, datasets))
    return _build_image(path, frames)


def is_dicom_file(path: Path) -> bool:
    """True when the file starts with the DICOM preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _read_file(path: Path) -> Dataset:
    # Pixel data is deferred: it is decoded later, for the chosen series only.
    try:
        dataset = pydicom.dcmread(path, defer_size="64 KB", force=False)
    except InvalidDicomError:
        dataset = _read_without_preamble(path)
    except (OSError, EOFError, ValueError, KeyError, TypeError) as error:
        raise ImageReadError(
            path, f"cannot read DICOM file ({type(error).__name__}: {error})",
            hint="the file may be truncated or corrupt",
        ) from error
    if not _is_image(dataset):
        raise ImageReadError(
            path, "DICOM file holds no image (no PixelData)",
            hint="point at an image file, not a report, structure set or DICOMDIR",
        )
    return dataset


def _read_without_preamble(path: Path) -> Dataset:
    # Old ACR-NEMA style files have no 'DICM' preamble; accept one only when it parses
    # into something with pixels, so that a text file named .dcm is still refused.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(path, defer_size="64 KB", force=True)
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM"
        dataset = None
    if dataset is not None and _is_image(dataset):
        return dataset
    if dataset is not None and ("SOPClassUID" in dataset or "Modality" in dataset):
        raise ImageReadError(path, "DICOM file holds no image (no PixelData)",
                             hint="point at an image file, not a plan, report or DICOMDIR")
    raise ImageReadError(
        path, "not a DICOM file (no 'DICM' marker and no readable image header)",
        hint="check that the file is DICOM; other formats need their own suffix",
    )


def _is_image(dataset: Dataset) -> bool:
    if "DirectoryRecordSequence" in dataset:
        return False
    file_meta = getattr(dataset, "file_meta", None) or Dataset()
    if file_meta.get("MediaStorageSOPClassUID") == DICOMDIR_SOP_CLASS:
        return False
    return "PixelData" in dataset and "Rows" in dataset and "Columns" in dataset


def _read_folder(folder: Path) -> list[tuple[Path, Dataset]]:
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.upper() == "DICOMDIR" or not is_dicom_file(path):
            continue  # READMEs, JSON sidecars, thumbnails, DICOMDIR indexes
        try:
            dataset = pydicom.dcmread(path, defer_size="64 KB", force=False)
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError):
            continue  # damaged stray file; a damaged slice shows up as a gap below
        if _is_image(dataset):
            found.append((path, dataset))
    if not found:
        raise ImageReadError(
            folder, "contains no DICOM image files",
            hint="point at a folder of DICOM files (with the 'DICM' preamble)",
        )
    return found


def _one_series(folder: Path, datasets: list[tuple[Path, Dataset]]):
    series: dict[str, list[tuple[Path, Dataset]]] = {}
    for path, dataset in datasets:
        series.setdefault(str(dataset.get("SeriesInstanceUID", "")), []).append((path, dataset))
    if len(series) == 1:
        return next(iter(series.values()))
    listed = []
    for members in sorted(series.values(), key=lambda m: str(m[0][0])):
        first = members[0][1]
        number = first.get("SeriesNumber", "?")
        description = str(first.get("SeriesDescription", "")).strip() or "no description"
        listed.append(
            f"#{number} '{description}' ({len(members)} files in {members[0][0].parent.name})"
        )
    shown = "; ".join(listed[:8]) + ("; ..." if len(listed) > 8 else "")
    raise DicomSeriesError(
        folder, f"contains {len(series)} DICOM series: {shown}",
        hint="point at a folder that holds one series",
    )


# -- frames and their geometry --------------------------------------------------------------


def _floats(value, count: int) -> np.ndarray | None:
    try:
        array = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.size == count else None


def _frames_of(folder: Path, members: list[tuple[Path, Dataset]]) -> list[_Frame]:
    frames: list[_Frame] = []
    for path, dataset in members:
        n_frames = int(dataset.get("NumberOfFrames", 1) or 1)
        if "PerFrameFunctionalGroupsSequence" in dataset:
            if len(members) > 1:
                raise DicomSeriesError(
                    folder, f"series holds {len(members)} multi-frame files",
                    hint="series split over several enhanced multi-frame files are "
                    "not supported yet; point at one file",
                )
            frames.extend(_enhanced_frames(path, dataset))
        elif n_frames > 1:
            raise DicomSeriesError(
                path, f"multi-frame image ({n_frames} frames, "
                f"{dataset.get('SOPClassUID', 'unknown SOP class')}) without "
                "per-frame functional groups is not supported yet",
                hint="cine/ultrasound/nuclear multi-frame files have no volume geometry; "
                "convert them with dcm2niix",
            )
        else:
            frames.append(_classic_frame(path, dataset))
    return frames


def _classic_frame(path: Path, dataset: Dataset) -> _Frame:
    spacing = _floats(dataset.get("PixelSpacing"), 2)
    return _Frame(
        path=path,
        dataset=dataset,
        index=None,
        position=_floats(dataset.get("ImagePositionPatient"), 3),
        orientation=_floats(dataset.get("ImageOrientationPatient"), 6),
        pixel_spacing=None if spacing is None else (spacing[0], spacing[1]),
        thickness=_optional_float(dataset.get("SliceThickness")),
        slope=_optional_float(dataset.get("RescaleSlope")) or 1.0,
        intercept=_optional_float(dataset.get("RescaleIntercept")) or 0.0,
    )


def _enhanced_frames(path: Path, dataset: Dataset) -> list[_Frame]:
    # A functional group holds for one frame when present in its per-frame item, and for
    # all frames when present in the shared item (PS3.3 C.7.6.16).
    shared = dataset.get("SharedFunctionalGroupsSequence")
    shared_item = shared[0] if shared else Dataset()
    frames = []
    for index, item in enumerate(dataset.PerFrameFunctionalGroupsSequence):

        def group(name: str, item=item) -> Dataset:
            for source in (item, shared_item):
                if name in source and len(source[name].value):
                    return source[name].value[0]
            return dataset  # old converters leave the attribute at the top level

        measures = group("PixelMeasuresSequence")
        transform = group("PixelValueTransformationSequence")
        spacing = _floats(measures.get("PixelSpacing"), 2)
        frames.append(
            _Frame(
                path=path,
                dataset=dataset,
                index=index,
                position=_floats(group("PlanePositionSequence").get("ImagePositionPatient"), 3),
                orientation=_floats(
                    group("PlaneOrientationSequence").get("ImageOrientationPatient"), 6
                ),
                pixel_spacing=None if spacing is None else (spacing[0], spacing[1]),
                thickness=_optional_float(measures.get("SliceThickness")),
                slope=_optional_float(transform.get("RescaleSlope")) or 1.0,
                intercept=_optional_float(transform.get("RescaleIntercept")) or 0.0,
            )
        )
    return frames


def _optional_float(value) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0] if len(value) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _volume_geometry(where: Path, frames: list[_Frame]) -> tuple[list[_Frame], np.ndarray, dict]:
    """Sorted frames, the LPS affine and geometry facts, or a DicomSeriesError."""
    iop = frames[0].orientation
    if any(not np.allclose(f.orientation, iop, atol=ORIENTATION_ATOL) for f in frames):
        n_orient = len({tuple(np.round(f.orientation, 3)) for f in frames})
        raise DicomSeriesError(
            where, f"mixed orientation: {len(frames)} slices in {n_orient} different "
            "ImageOrientationPatient planes (e.g. a 3-plane localizer)",
            hint="split the slices into one folder per orientation",
        )
    row_cosine = iop[:3] / np.linalg.norm(iop[:3])
    col_cosine = iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(row_cosine, col_cosine)
    distances = np.array([f.position @ normal for f in frames])
    order = np.argsort(distances, kind="stable")
    frames = [frames[k] for k in order]
    distances = distances[order]
    row_spacing, col_spacing = frames[0].pixel_spacing or (1.0, 1.0)
    facts: dict[str, Any] = {"pixel_spacing_known": frames[0].pixel_spacing is not None}

    if len(frames) == 1:
        # One slice: nothing to measure, so the slab is as thick as the slice (dcm2niix).
        step = normal * (frames[0].thickness or 1.0)
        facts.update(
            slice_spacing=float(np.linalg.norm(step)),
            slice_spacing_source="SliceThickness" if frames[0].thickness else "default 1.0",
        )
    else:
        _check_positions(where, frames, distances, normal)
        step = (frames[-1].position - frames[0].position) / (len(frames) - 1)
        facts.update(slice_spacing=float(distances[-1] - distances[0]) / (len(frames) - 1),
                     slice_spacing_source="ImagePositionPatient")
    lps = np.eye(4)
    lps[:3, 0] = row_cosine * col_spacing  # i runs along a row: next column
    lps[:3, 1] = col_cosine * row_spacing  # j runs down a column: next row
    lps[:3, 2] = step
    lps[:3, 3] = frames[0].position
    return frames, lps, facts


def _check_positions(where: Path, frames, distances: np.ndarray, normal: np.ndarray) -> None:
    gaps = np.diff(distances)
    n_distinct = 1 + int(np.count_nonzero(gaps > DUPLICATE_MM))
    if n_distinct < len(frames):
        raise DicomSeriesError(
            where, f"{len(frames)} slices at only {n_distinct} distinct positions "
            "(duplicate slices, or a 4D time/diffusion series, which is not supported yet)",
            hint="remove duplicated files, or split the volumes into one folder each",
        )
    problems = []
    mean_gap = (distances[-1] - distances[0]) / (len(frames) - 1)
    typical = float(np.median(gaps))
    tolerance = max(SPACING_ATOL_MM, SPACING_RTOL * typical)
    uneven = np.abs(gaps - typical) > tolerance
    if uneven.any():
        ratios = gaps[uneven] / typical
        if np.allclose(ratios, np.round(ratios), atol=0.1) and (ratios > 1.5).all():
            missing = int(np.round(ratios).sum() - ratios.size)
            problems.append(
                f"missing slice: {missing} slice(s) missing from a stack spaced "
                f"{typical:.4g} mm (gaps of {_mm(gaps[uneven])} mm)"
            )
        else:
            problems.append(
                f"uneven spacing: gaps between slices range from {gaps.min():.4g} to "
                f"{gaps.max():.4g} mm (mean {mean_gap:.4g} mm)"
            )
    travel = frames[-1].position - frames[0].position
    sine = np.linalg.norm(np.cross(travel / np.linalg.norm(travel), normal))
    if sine > TILT_SINE_TOL:
        problems.append(
            f"gantry tilt or sheared stack: slices move {np.degrees(np.arcsin(min(sine, 1))):.2f} "
            "degrees off the slice normal"
        )
    if problems:
        raise DicomSeriesError(
            where, "; ".join(problems),
            hint="the slices do not form one regular volume; "
            "check the series for missing files or resample it with dcm2niix",
        )


def _mm(values: np.ndarray) -> str:
    return ", ".join(f"{v:.4g}" for v in values[:5]) + (", ..." if values.size > 5 else "")


# -- pixels -------------------------------------------------------------------------------


def _decode(path: Path, dataset: Dataset) -> np.ndarray:
    try:
        # pydicom decodes compressed transfer syntaxes through its plugins (pylibjpeg,
        # Pillow) and converts YBR colour to RGB; nothing else is applied here.
        pixels = dataset.pixel_array
    except Exception as error:  # noqa: BLE001 - plugin errors have no common base class
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        raise ImageReadError(
            path, f"cannot decode pixel data ({name}; {type(error).__name__}: {error})",
            hint="the file may be truncated, or needs a pylibjpeg/gdcm plugin",
        ) from error
    photometric = str(dataset.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        pixels = apply_color_lut(pixels, dataset)
    return pixels


def _stack_pixels(where: Path, frames: list[_Frame]) -> np.ndarray:
    """Stored values of the (sorted) frames as one ``(n, rows, cols[, samples])`` array."""
    stack = None
    decoded: dict[Path, np.ndarray] = {}
    for k, frame in enumerate(frames):
        if frame.index is None:
            pixels = _decode(frame.path, frame.dataset)
        else:
            if frame.path not in decoded:
                all_frames = _decode(frame.path, frame.dataset)
                decoded[frame.path] = _frames_first(frame.path, frame.dataset, all_frames)
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


def _frames_first(path: Path, dataset: Dataset, pixels: np.ndarray) -> np.ndarray:
    # pydicom drops the frame axis of a one-frame file; put it back.
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if pixels.ndim == (2 if samples == 1 else 3):
        pixels = pixels[np.newaxis]
    n_items = len(dataset.PerFrameFunctionalGroupsSequence)
    if pixels.shape[0] != n_items:
        raise DicomSeriesError(
            path, f"pixel data holds {pixels.shape[0]} frames but the header describes "
            f"{n_items}", hint="the multi-frame file is inconsistent or truncated",
        )
    return pixels


def _invert_monochrome1(stack: np.ndarray, bits_stored: int, signed: bool) -> tuple[np.ndarray, int]:
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


def _rescale(stack: np.ndarray, frames: list[_Frame]) -> tuple[np.ndarray, str]:
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


# -- assembling the image -------------------------------------------------------------------


def _build_image(where: Path, frames: list[_Frame]) -> MedicalImage:
    first = frames[0].dataset
    has_geometry = all(f.orientation is not None and f.position is not None for f in frames)
    if has_geometry:
        frames, lps, geometry = _volume_geometry(where, frames)
        affine = LPS_TO_RAS @ lps
        spatial_ndim, space = 3, "patient"
    elif len(frames) == 1:
        affine, geometry = _planar_geometry(frames[0])
        spatial_ndim, space = 2, "image"
    else:
        missing = sum(f.orientation is None or f.position is None for f in frames)
        raise DicomSeriesError(
            where, f"{len(frames)} images but {missing} lack ImageOrientationPatient/"
            "ImagePositionPatient, so they cannot be stacked into a volume",
            hint="projection images (CR/DX/MG/SC) are read one file at a time",
        )

    stack = _stack_pixels(where, frames)
    photometric = str(first.get("PhotometricInterpretation", "")).upper()
    bits_stored = int(first.get("BitsStored", stack.dtype.itemsize * 8))
    signed = int(first.get("PixelRepresentation", 0)) == 1
    intensity: dict[str, Any] = {
        "bits_stored": bits_stored,
        "bits_allocated": int(first.get("BitsAllocated", stack.dtype.itemsize * 8)),
        "signed": signed,
        "photometric": photometric,
        "inverted": False,
    }
    if photometric == "MONOCHROME1":
        stack, top = _invert_monochrome1(stack, bits_stored, signed)
        intensity.update(inverted=True, inversion=f"{top} - stored" if top >= 0 else "-1 - stored")
    stack, stored_as = _rescale(stack, frames)
    if stored_as != "none":
        intensity.update(rescale_slope=frames[0].slope, rescale_intercept=frames[0].intercept)
        if len({(f.slope, f.intercept) for f in frames}) > 1:
            intensity["rescale_per_slice"] = True
    elif "RescaleSlope" in first or "RescaleIntercept" in first:
        intensity.update(rescale_slope=1.0, rescale_intercept=0.0)
    if photometric.startswith("YBR") or photometric == "PALETTE COLOR":
        intensity["converted_to"] = "RGB"
    if photometric == "PALETTE COLOR":  # values are now the LUT's RGB entries
        intensity["bits_stored"] = intensity["bits_allocated"] = stack.dtype.itemsize * 8
    modality = str(first.get("Modality", "")) or None
    unit = _unit(first, modality)
    if unit:
        intensity["unit"] = unit

    array = _to_index_order(stack, spatial_ndim)
    files = sorted({str(f.path.resolve()) for f in frames})
    meta = {
        "format": "dicom",
        "source_files": files,
        "space": space,
        "modality": modality,
        "intensity": intensity,
        "pixel_spacing_known": geometry.pop("pixel_spacing_known"),
        "geometry": geometry,
        "dicom": _facts(first, frames, files),
        "patient_id": str(first.get("PatientID", "")) or None,
    }
    image = MedicalImage(array=array, affine=affine, spatial_ndim=spatial_ndim, meta=meta)
    return image.recorded(
        "read", reader="dicom", path=str(where), n_files=len(files), n_slices=len(frames),
        rescale=stored_as, inverted=intensity["inverted"], space=space,
    )


def _planar_geometry(frame: _Frame) -> tuple[np.ndarray, dict]:
    """Projection images (CR, DX, MG, SC) have no patient frame: spacing only."""
    dataset = frame.dataset
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        spacing = _floats(dataset.get(keyword), 2)
        if spacing is not None and np.all(spacing > 0):
            affine = np.diag([spacing[1], spacing[0], 1.0, 1.0])
            # ImagerPixelSpacing is measured at the detector, not at the patient
            # (magnification uncorrected); the source says which one this is.
            return affine, {"pixel_spacing_known": True, "pixel_spacing_source": keyword}
    return np.eye(4), {"pixel_spacing_known": False, "pixel_spacing_source": None}


def _to_index_order(stack: np.ndarray, spatial_ndim: int) -> np.ndarray:
    """``(n, rows, cols[, samples])`` to ``(cols, rows[, n])[, samples]`` (i along a row)."""
    colour = stack.ndim == 4
    if spatial_ndim == 2:
        stack = stack[0]
        array = stack.transpose((1, 0, 2)) if colour else stack.T
    else:
        array = stack.transpose((2, 1, 0, 3)) if colour else stack.transpose((2, 1, 0))
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = np.ascontiguousarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _unit(dataset: Dataset, modality: str | None) -> str | None:
    rescale_type = str(dataset.get("RescaleType", "")).strip()
    if rescale_type and rescale_type.upper() != "US":  # "US" = unspecified
        return rescale_type
    # The CT Image IOD requires the modality LUT to yield Hounsfield units.
    return "HU" if modality == "CT" else None


def _facts(dataset: Dataset, frames: list[_Frame], files: list[str]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for keyword in FACT_KEYWORDS:
        value = _jsonable(dataset.get(keyword))
        if value is not None:
            facts[keyword] = value
    if "SliceThickness" not in facts and frames[0].thickness is not None:
        facts["SliceThickness"] = frames[0].thickness  # enhanced: in a functional group
    if "PixelSpacing" not in facts and frames[0].pixel_spacing is not None:
        facts["PixelSpacing"] = list(frames[0].pixel_spacing)
    meta_info = getattr(dataset, "file_meta", None)
    if meta_info is not None and "TransferSyntaxUID" in meta_info:
        facts["TransferSyntaxUID"] = str(meta_info.TransferSyntaxUID)
    facts["NumberOfFiles"] = len(files)
    return facts


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bytes, bytearray, Dataset)):
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        items = [_jsonable(v) for v in value]
        return [v for v in items if v is not None] or None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if np.isfinite(value) else None
    text = str(value).strip()
    return text or None
