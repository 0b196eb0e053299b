"""DICOM series and files into a MedicalImage (pydicom, pylibjpeg plugins for JPEG/J2K/RLE).

This module picks the one series and assembles the image and its metadata; dicom_files
finds and parses the files, dicom_frames decides the geometry and dicom_pixels the values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ..errors import DicomSeriesError, ImageReadError
from ..geometry import LPS_TO_RAS
from ..image import MedicalImage
from .dicom_4d import split_volumes
from .dicom_files import read_file, read_folder
from .dicom_frames import Frame, frames_of
from .dicom_geometry import planar_geometry, slice_axes, volume_geometry
from .dicom_parts import ImagePart, one_part
from .dicom_pixels import (
    invert_monochrome1,
    philips_scale_slopes,
    rescale,
    stack_pixels,
    to_index_order,
)
from .dicom_seg import is_segmentation, segmentation_image
from .read_options import current_philips_scaling

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


# -- the series -------------------------------------------------------------------------------


def read_dicom(path: Path, trace: bool = False) -> MedicalImage:
    """A folder holding one series (searched recursively), or one DICOM file.

    ``trace``: a Philips diffusion series' isotropic trace volume(s), which the series
    is read without (as dcm2niix writes them apart), instead of the series."""
    if path.is_dir():
        datasets = read_folder(path)
    else:
        datasets = [(path, read_file(path))]
    if len(datasets) == 1 and is_segmentation(datasets[0][1]):
        # A DICOM SEG (a mask, not an image series): decided on the header already read.
        return segmentation_image(*datasets[0])
    frames = frames_of(path, _one_series(path, datasets))
    return _build_image(path, _one_image(path, frames), trace)


def read_dicom_files(where: Path, files: Sequence[Path], part: ImagePart | None = None,
                     trace: bool = False) -> MedicalImage:
    """Exactly these files as one series (a DicomSeriesRef's), named ``where`` in errors;
    with ``part``, only its frames (dicom_parts: one echo, one image kind), else the
    frames must be one part.

    Each file goes through the same reading, frame and pixel code as a folder's files, in
    the same (sorted path) order, so the result equals reading a folder of just them.
    """
    datasets = [(path, read_file(path)) for path in sorted(files)]
    if not datasets:
        raise ImageReadError(where, "no DICOM files given", hint="discover_series lists them")
    return _build_image(where, _one_image(where, frames_of(where, datasets), part), trace)


def _one_image(where: Path, frames: list[Frame], part: ImagePart | None = None) -> list[Frame]:
    """The frames of one image: those of ``part``, or all if they are one part."""
    if part is None and all(f.orientation is not None for f in frames):
        slice_axes(where, frames)  # a mixed-orientation folder keeps that, its own error
    return one_part(where, frames, part)


def _one_series(folder: Path, datasets: list[tuple[Path, Dataset]]):
    # Discovery's grouping, so that the error lists what discover_series would return
    # (imported here: dicom_discovery builds on this module).
    from .dicom_discovery import group_datasets

    uids = {(str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", "")))
            for _, ds in datasets}
    if len(uids) == 1 and all(next(iter(uids))):
        return datasets  # the common case, decided without grouping every header
    refs = group_datasets(datasets)
    # One (study, series) may still be split into parts (echoes, planes...): that stays
    # this reader's own specific error (e.g. "mixed orientation"), as before discovery.
    series = {ref.key[:2] for ref in refs}
    if len(series) == 1:
        return datasets
    listed = [f"{ref.label} ({len(ref.files)} files in {ref.folder.name})" for ref in refs]
    shown = "; ".join(listed[:8]) + (f"; ... {len(listed) - 8} more" if len(listed) > 8 else "")
    volumes = f" ({len(refs)} volumes)" if len(refs) != len(series) else ""
    raise DicomSeriesError(
        folder, f"contains {len(series)} DICOM series{volumes}: {shown}",
        hint="point at a folder that holds one series, build every series with the "
        "dicom-tree recipe, or read each with medimg_build.io.dicom_discovery",
    )


# -- assembling the image -------------------------------------------------------------------


def _build_image(where: Path, frames: list[Frame], trace: bool = False) -> MedicalImage:
    first = frames[0].dataset
    has_geometry = all(f.orientation is not None and f.position is not None for f in frames)
    if trace and not has_geometry:
        raise DicomSeriesError(where, "no isotropic trace volume to read: not a volume series",
                               hint="read the series without asking for its trace")
    volumes = split_volumes(where, frames, trace) if has_geometry else None
    if volumes is not None:  # 4D: volumes along the channel axis, grid of the first one
        frames, lps, geometry = volumes.frames, volumes.lps, volumes.geometry
        affine = LPS_TO_RAS @ lps
        spatial_ndim, space = 3, "patient"
    elif has_geometry:
        frames, lps, geometry = volume_geometry(where, frames)
        affine = LPS_TO_RAS @ lps
        spatial_ndim, space = 3, "patient"
    elif len(frames) == 1:
        affine, geometry = planar_geometry(frames[0])
        spatial_ndim, space = 2, "image"
    else:
        missing = sum(f.orientation is None or f.position is None for f in frames)
        raise DicomSeriesError(
            where, f"{len(frames)} images but {missing} lack ImageOrientationPatient/"
            "ImagePositionPatient, so they cannot be stacked into a volume",
            hint="projection images (CR/DX/MG/SC) are read one file at a time",
        )

    n_volumes = volumes.n_volumes if volumes is not None else 1
    array, intensity, stored_as = _pixel_values(where, frames, spatial_ndim, n_volumes)
    files = resolved_paths(f.path for f in frames)
    meta = {
        "format": "dicom",
        "source_files": files,
        "space": space,
        "modality": str(first.get("Modality", "")) or None,
        "intensity": intensity,
        "pixel_spacing_known": geometry.pop("pixel_spacing_known"),
        "geometry": geometry,
        "dicom": _facts(first, frames, files),
        "patient_id": str(first.get("PatientID", "")) or None,
    }
    step: dict[str, Any] = {}
    if space == "image":  # where a projection's pixel size was measured, in its steps
        step.update(geometry)
    if volumes is not None:
        meta["dicom"].update(volumes.facts)
        step = {"n_volumes": n_volumes, "volumes_vary_in": volumes.facts["VolumesVaryIn"]}
    image = MedicalImage(array=array, affine=affine, spatial_ndim=spatial_ndim, meta=meta)
    if "philips_scaling" in intensity:  # which values a Philips case holds, in its steps
        step["philips_scaling"] = intensity["philips_scaling"]
    return image.recorded(
        "read", reader="dicom", path=str(where), n_files=len(files),
        n_slices=len(frames) // n_volumes, rescale=stored_as, inverted=intensity["inverted"],
        space=space, **step,
    )


def resolved_paths(paths: Iterable[Path]) -> list[str]:
    """``sorted({str(p.resolve()) for p in paths})``, with each folder resolved once:
    Path.resolve checks every component of every path (a system call each), which for
    a few hundred slices cost as much as decoding them. A file that is itself a link is
    resolved on its own."""
    folders: dict[Path, Path] = {}
    found = set()
    for path in paths:
        if path.is_symlink():
            found.add(str(path.resolve()))
            continue
        if path.parent not in folders:
            folders[path.parent] = path.parent.resolve()
        found.add(str(folders[path.parent] / path.name))
    return sorted(found)


def _pixel_values(where: Path, frames: list[Frame], spatial_ndim: int, n_volumes: int = 1):
    """Array in index order, the intensity facts, and how the rescale was stored."""
    first = frames[0].dataset
    stack = stack_pixels(where, frames)
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
        stack, top = invert_monochrome1(stack, bits_stored, signed)
        intensity.update(inverted=True, inversion=f"{top} - stored" if top >= 0 else "-1 - stored")
    # The modality LUT (rescale, and the unit it yields) maps grayscale values only
    # (PS3.3 C.11.1): an RGB screen capture of a CT slice that carries the CT's
    # RescaleIntercept keeps its colour values, as dcm2niix keeps them (its NIfTI RGB24
    # output, whose scl_slope/scl_inter do not apply).
    colour = stack.ndim == 4
    scale_slopes = None if colour else philips_scale_slopes(
        where, frames, current_philips_scaling() == "precise")
    precise = scale_slopes is not None and current_philips_scaling() == "precise"
    stored_as = "none"
    if colour:
        if "RescaleSlope" in first or "RescaleIntercept" in first:
            intensity["rescale_ignored"] = "colour pixels"
    else:
        stack, stored_as = rescale(stack, frames, scale_slopes if precise else None)
        if stored_as != "none":
            intensity.update(rescale_slope=frames[0].slope,
                             rescale_intercept=frames[0].intercept)
            if len({(f.slope, f.intercept) for f in frames}) > 1:
                intensity["rescale_per_slice"] = True
        elif "RescaleSlope" in first or "RescaleIntercept" in first:
            intensity.update(rescale_slope=1.0, rescale_intercept=0.0)
    if scale_slopes is not None:  # which of Philips' two scalings the values are
        intensity.update(philips_scaling=current_philips_scaling(),
                         philips_scale_slope=float(scale_slopes[0]))
        if len(set(scale_slopes.tolist())) > 1:
            intensity["philips_scale_slope_per_slice"] = True
    if photometric.startswith("YBR") or photometric == "PALETTE COLOR":
        intensity["converted_to"] = "RGB"
    if photometric == "PALETTE COLOR":  # values are now the LUT's RGB entries
        intensity["bits_stored"] = intensity["bits_allocated"] = stack.dtype.itemsize * 8
    unit = None if precise or colour else _unit(first, str(first.get("Modality", "")) or None)
    if unit:
        intensity["unit"] = unit
    return to_index_order(stack, spatial_ndim, n_volumes), intensity, stored_as


def _unit(dataset: Dataset, modality: str | None) -> str | None:
    rescale_type = str(dataset.get("RescaleType", "")).strip()
    if rescale_type and rescale_type.upper() != "US":  # "US" = unspecified
        return rescale_type
    # The CT Image IOD requires the modality LUT to yield Hounsfield units.
    return "HU" if modality == "CT" else None


def _facts(dataset: Dataset, frames: list[Frame], files: list[str]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for keyword in FACT_KEYWORDS:
        value = _jsonable(dataset.get(keyword))
        if value is not None:
            facts[keyword] = value
    if "SliceThickness" not in facts and frames[0].thickness is not None:
        facts["SliceThickness"] = frames[0].thickness  # enhanced: in a functional group
    if "PixelSpacing" not in facts and frames[0].pixel_spacing is not None:
        facts["PixelSpacing"] = list(frames[0].pixel_spacing)
    part = frames[0].part  # one part per image (dicom_parts.one_part)
    if part.image_kind:
        facts["ImageKind"] = part.image_kind
    if part.echo is not None:
        facts["EchoNumber"] = part.echo
    meta_info = getattr(dataset, "file_meta", None)
    if meta_info is not None and "TransferSyntaxUID" in meta_info:
        facts["TransferSyntaxUID"] = str(meta_info.TransferSyntaxUID)
    guessed = getattr(dataset, "read_without_file_meta", None)
    if guessed:  # old ACR-NEMA style: the file named no transfer syntax
        facts["FileMeta"] = f"absent (no preamble, no file meta): read as {guessed}"
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
