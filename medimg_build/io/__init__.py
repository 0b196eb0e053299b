"""Read any supported file or DICOM folder into a MedicalImage.

A format is one module with a reader function and its suffixes; ``READERS`` maps each
suffix to its reader. Folders, ``.dcm`` files and files with an unknown suffix that carry
the DICOM preamble (e.g. ``CT.1.2.840...`` names) go to the DICOM reader, which hands a
DICOM Segmentation (SEG) file -- or a folder holding just one -- to ``dicom_seg``.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Callable

from ..errors import ImageReadError
from ..image import MedicalImage
from . import dicom, itk, nifti, raster
from .dicom_files import SUFFIXES as DICOM_SUFFIXES, is_dicom_file
from .dicom_discovery import (
    DicomDiscovery,
    DicomSeriesRef,
    SkippedFile,
    discover_series,
    read_dicom_series,
)
from .dicom_seg import read_dicom_seg
from .guard import read_guarded

Reader = Callable[[Path], MedicalImage]

READERS: dict[str, Reader] = {
    **{suffix: dicom.read_dicom for suffix in DICOM_SUFFIXES},
    **{suffix: nifti.read_nifti for suffix in nifti.SUFFIXES},
    **{suffix: raster.read_pillow for suffix in raster.PILLOW_SUFFIXES},
    **{suffix: raster.read_tiff for suffix in raster.TIFF_SUFFIXES},
    **{suffix: itk.read_itk for suffix in itk.SUFFIXES},
}

SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(sorted(READERS))

__all__ = [
    "READERS", "SUPPORTED_SUFFIXES", "DicomDiscovery", "DicomSeriesRef", "SkippedFile",
    "discover_series", "read_diffusion_trace", "read_dicom_seg", "read_dicom_series",
    "read_image", "reader_for",
]


def read_image(path: str | PathLike) -> MedicalImage:
    """One image file, or one DICOM series folder, as a MedicalImage.

    Every failure a user can cause raises a MedimgError with a one-line message.
    """
    path = _existing(path)
    reader = reader_for(path)
    return read_guarded(path, lambda: reader(path))


def read_diffusion_trace(path: str | PathLike) -> MedicalImage:
    """The isotropic trace volume(s) of a Philips diffusion series (a DICOM folder or
    file): b > 0 without a gradient direction. ``read_image`` leaves them out of the
    diffusion series, as dcm2niix does; this gives them as their own image, and refuses
    a series that has none."""
    path = _existing(path)
    return read_guarded(path, lambda: dicom.read_dicom(path, trace=True))


def _existing(path: str | PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise ImageReadError(path, "no such file or folder", hint="check the path")
    return path


def reader_for(path: Path) -> Reader:
    """The reader for a path that exists, chosen by folder / suffix / DICOM preamble."""
    if path.is_dir():
        return dicom.read_dicom
    if not path.is_file():
        raise ImageReadError(path, "not a regular file or folder", hint="check the path")
    suffix = _suffix(path)
    if suffix in READERS:
        return READERS[suffix]
    if is_dicom_file(path):
        return dicom.read_dicom
    shown = suffix or "(no suffix)"
    raise ImageReadError(
        path, f"unsupported file type {shown}",
        hint=f"supported: a DICOM folder or file, {', '.join(SUPPORTED_SUFFIXES)}",
    )


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(READERS, key=len, reverse=True):  # '.nii.gz' before '.gz'
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    return path.suffix.lower()
