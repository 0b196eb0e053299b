"""DICOM series and files into a MedicalImage (pydicom, pylibjpeg plugins for JPEG/J2K/RLE).

This module finds the files, picks the one series, and assembles the image and its
metadata; dicom_frames decides the geometry and dicom_pixels the values.
"""

from __future__ import annotations

import os
import warnings
import zlib
from io import BytesIO
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from ..errors import DicomSeriesError, ImageReadError
from ..geometry import LPS_TO_RAS
from ..image import MedicalImage
from ..limits import OPTION, SETTING, ImageTooLargeError, current_max_voxels
from .dicom_4d import split_volumes
from .dicom_frames import Frame, frames_of, planar_geometry, slice_axes, volume_geometry
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

SUFFIXES = (".dcm", ".dicom", ".ima")

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_INFLATE_STEP = 2**24
# Values longer than this (in practice: uncompressed pixel data) stay in the file when
# the header is parsed; dicom_pixels reads them when it decodes.
DEFERRED_BYTES = 2**16

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


# -- finding and grouping files -------------------------------------------------------------


def read_dicom(path: Path, trace: bool = False) -> MedicalImage:
    """A folder holding one series (searched recursively), or one DICOM file.

    ``trace``: a Philips diffusion series' isotropic trace volume(s), which the series
    is read without (as dcm2niix writes them apart), instead of the series."""
    if path.is_dir():
        datasets = _read_folder(path)
    else:
        datasets = [(path, _read_file(path))]
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
    datasets = [(path, _read_file(path)) for path in sorted(files)]
    if not datasets:
        raise ImageReadError(where, "no DICOM files given", hint="discover_series lists them")
    return _build_image(where, _one_image(where, frames_of(where, datasets), part), trace)


def _one_image(where: Path, frames: list[Frame], part: ImagePart | None = None) -> list[Frame]:
    """The frames of one image: those of ``part``, or all if they are one part."""
    if part is None and all(f.orientation is not None for f in frames):
        slice_axes(where, frames)  # a mixed-orientation folder keeps that, its own error
    return one_part(where, frames, part)


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder``, sorted, following symbolic links to folders (data
    trees on clusters are often link farms) but visiting each real folder once, so that
    a link loop ends instead of recursing forever."""
    seen: set[str] = set()
    found = []
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirectories.clear()
            continue
        seen.add(real)
        found += [Path(directory) / name for name in files]
    return sorted(p for p in found if p.is_file())


def is_dicom_file(path: Path) -> bool:
    """True when the file starts with the DICOM preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _without_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return starts_without_preamble(handle.read(4))
    except OSError:
        return False


def _parse(path: Path) -> Dataset:
    """The file's dataset; the pixels are decoded later, for the chosen series only.

    Uncompressed pixel data is left in the file (pydicom's deferred read: the element
    holds its offset and is read when accessed), so that it is read once, when decoded,
    and never copied along with the header. Other files are parsed from memory:
    pydicom asks a file for its position at every element, a system call each, which
    costs more than reading the bytes along for a small file or compressed pixels."""
    with open(path, "rb") as handle:
        syntax = refuse_deflate_bomb(path, handle)
        handle.seek(0)
        if _leaves_pixels_in_file(syntax, os.fstat(handle.fileno()).st_size):
            dataset = pydicom.dcmread(handle, force=False, defer_size=DEFERRED_BYTES)
        else:
            dataset = pydicom.dcmread(BytesIO(handle.read()), force=False)
    dataset.filename = str(path)
    return dataset


def _leaves_pixels_in_file(syntax: UID | None, size: int) -> bool:
    # Deflated datasets are inflated in memory, where a deferred value cannot be found
    # again; compressed pixels (undefined length) would be read twice to find their end.
    return (isinstance(syntax, UID) and syntax.is_transfer_syntax and not syntax.is_deflated
            and not syntax.is_encapsulated and size > DEFERRED_BYTES)


def refuse_deflate_bomb(path: Path, source: BinaryIO) -> UID | None:
    """pydicom inflates a Deflated Explicit VR Little Endian dataset in one
    zlib.decompress, whatever it holds: 4 MB of file can inflate to 4 GB before any
    Rows or Columns is known. So count the inflated bytes first, 16 MiB at a time, up to
    4 bytes per value of the size limit (an image within the limit, as float32).
    ``source``: the file ``path`` or its bytes, at their start. Returns the transfer
    syntax of the file meta (None: not Part 10, or damaged)."""
    budget, inflated = 4 * current_max_voxels(), 0
    try:
        read_preamble(source, False)
        # pydicom's own meta reader (private; the public one opens the file itself):
        # it leaves the source where the dataset starts.
        syntax = _read_file_meta_info(source).get("TransferSyntaxUID")
        if syntax != DeflatedExplicitVRLittleEndian:
            return syntax
        inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        while inflated <= budget and (pending := source.read(_INFLATE_STEP)):
            while pending and inflated <= budget:
                inflated += len(inflate.decompress(pending, _INFLATE_STEP))
                pending = inflate.unconsumed_tail
    except (InvalidDicomError, zlib.error, ValueError, EOFError, KeyError, TypeError):
        return None  # not Part 10, or damaged: pydicom says so in its own words
    if inflated > budget:
        raise ImageTooLargeError(
            path, f"deflated DICOM dataset inflates past {budget:,} bytes (4 bytes per "
            f"value of the limit of {current_max_voxels():,})",
            hint=f"if the file is real, raise the limit with {OPTION} N or the recipe's "
            f"{SETTING}")
    return syntax


def _read_file(path: Path) -> Dataset:
    try:
        dataset = _parse(path)
    except InvalidDicomError:
        dataset = _read_without_preamble(path)
    except (OSError, EOFError, ValueError, KeyError, TypeError) as error:
        raise ImageReadError(
            path, f"cannot read DICOM file ({type(error).__name__}: {error})",
            hint="the file may be truncated or corrupt",
        ) from error
    if not _is_image(dataset) and not _has_header(dataset):
        raise _no_header(path)
    if not _is_image(dataset):
        raise ImageReadError(
            path, "DICOM file holds no image (no PixelData)",
            hint="point at an image file, not a report, structure set or DICOMDIR",
        )
    return dataset


def _has_header(dataset: Dataset) -> bool:
    """A Part 10 file names its SOP class (file meta or dataset); bytes after the 'DICM'
    marker that parse into no known attribute are garbage, not a report or a plan."""
    file_meta = getattr(dataset, "file_meta", None) or Dataset()
    try:
        return any(k in dataset for k in ("SOPClassUID", "Modality", "DirectoryRecordSequence")) \
            or "MediaStorageSOPClassUID" in file_meta
    except Exception:  # noqa: BLE001 - a lazily parsed garbage element fails on access
        return False


def _no_header(path: Path) -> ImageReadError:
    return ImageReadError(path, "damaged DICOM file: the 'DICM' marker is followed by no "
                          "readable DICOM header (no SOP class, no modality)",
                          hint="replace the file: it is corrupt")


def starts_without_preamble(head: bytes) -> bool:
    """The first bytes of an old ACR-NEMA style file (no preamble, no 'DICM'): a little
    endian element of group 0008 (dcm2niix's isDICOMfile, nii_dicom.cpp) or of the file
    meta group 0002, whose element number is below 0x0100."""
    return head[:2] in (b"\x02\x00", b"\x08\x00") and head[3:4] == b"\x00"


def _parse_without_preamble(path: Path) -> Dataset:
    """A file without preamble, parsed the way dcm2niix and pydicom's force=True do:
    without file meta, implicit VR little endian unless the first element spells a VR
    (then explicit VR). The transfer syntax so chosen is written into the file meta,
    which the pixel decoder needs, and recorded (see _facts). InvalidDicomError when
    it does not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(path, defer_size="64 KB", force=True)
    except Exception as error:  # noqa: BLE001 - any parse failure means "not DICOM"
        raise InvalidDicomError(f"{type(error).__name__}: {error}") from error
    if "TransferSyntaxUID" not in (getattr(dataset, "file_meta", None) or Dataset()):
        implicit, little = dataset.original_encoding
        syntax = (ImplicitVRLittleEndian if implicit else
                  ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        if getattr(dataset, "file_meta", None) is None:
            dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = syntax
        dataset.read_without_file_meta = syntax.name  # recorded in meta["dicom"]
    return dataset


def _read_without_preamble(path: Path) -> Dataset:
    # Old ACR-NEMA style files have no 'DICM' preamble; accept one only when it parses
    # into something with pixels, so that a text file named .dcm is still refused.
    try:
        dataset = _parse_without_preamble(path)
    except InvalidDicomError:
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


def _claims_image(dataset: Dataset) -> bool:
    """The SOP class is an image storage class (reports, plans, structure sets are not)."""
    file_meta = getattr(dataset, "file_meta", None) or Dataset()
    uid = dataset.get("SOPClassUID") or file_meta.get("MediaStorageSOPClassUID")
    return uid is not None and "Image Storage" in str(getattr(uid, "name", ""))


def _read_folder(folder: Path) -> list[tuple[Path, Dataset]]:
    found = []
    for path in files_under(folder):
        part10 = is_dicom_file(path)
        if path.name.upper() == "DICOMDIR" or not (part10 or _without_preamble(path)):
            continue  # READMEs, JSON sidecars, thumbnails, DICOMDIR indexes
        try:
            dataset = _parse(path) if part10 else _parse_without_preamble(path)
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as error:
            # It starts like DICOM, so it is a damaged slice, not a stray file:
            # skipping it would only turn into a vaguer "missing slice" later.
            raise ImageReadError(
                path, f"damaged DICOM file in the series ({type(error).__name__}: {error})",
                hint="replace or remove the file",
            ) from error
        if _is_image(dataset):
            found.append((path, dataset))
        elif not _has_header(dataset):
            raise _no_header(path)
        elif _claims_image(dataset):
            raise ImageReadError(
                path, "damaged DICOM file in the series: an image SOP class without "
                "pixel data (truncated?)", hint="replace or remove the file",
            )
    if not found:
        raise ImageReadError(
            folder, "contains no DICOM image files",
            hint="point at a folder of DICOM files",
        )
    return found


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
    scale_slopes = philips_scale_slopes(frames)
    precise = scale_slopes is not None and current_philips_scaling() == "precise"
    stack, stored_as = rescale(stack, frames, scale_slopes if precise else None)
    if stored_as != "none":
        intensity.update(rescale_slope=frames[0].slope, rescale_intercept=frames[0].intercept)
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
    unit = None if precise else _unit(first, str(first.get("Modality", "")) or None)
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
