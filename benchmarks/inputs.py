"""The real-size CT every build and read benchmark works on, as a .nii.gz and as a DICOM
series of the very same voxels and grid.

The voxels are the real TotalSegmentator CT in ../shared/data resampled to a clinical
grid (sub-mm in-plane, ~1.7 mm slices; 512x512x200 by default, $MEDIMG_BENCH_SHAPE to
change it), so they look and compress like a real scan. The NIfTI is stored LAS like
dcm2niix's output, so reorienting to RAS is real work for every pipeline."""

from __future__ import annotations

import locale
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medimg_build import read_image
from medimg_build.geometry import to_sitk
from medimg_build.harmonize import resample_to_spacing
from medimg_build.image import MedicalImage

from .common import shared_data

SHAPE = tuple(int(n) for n in os.environ.get("MEDIMG_BENCH_SHAPE", "512x512x200").split("x"))


@dataclass(frozen=True)
class CtInputs:
    nifti: Path  # source/images/ct.nii.gz
    dicom: Path  # dicom_source/images/ct/ (one file per slice)
    npy: Path  # the voxels in the store's (z, y, x) order, for np.load(mmap_mode="r")
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: str  # what the voxels are


def make_ct_inputs(work: Path, shape: tuple[int, ...] = SHAPE) -> CtInputs:
    image, origin = _real_size_ct(shape)
    las = image.affine @ _flip_first_axis(image.spatial_shape[0])
    data = np.asfortranarray(image.array[::-1])
    nifti = work / "source" / "images" / "ct.nii.gz"
    nifti.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(data, las), nifti)
    dicom = work / "dicom_source" / "images" / "ct"
    write_dicom_series(image, dicom)
    npy = work / "ct.npy"
    np.save(npy, np.ascontiguousarray(image.array.T))
    spacing = tuple(float(s) for s in np.linalg.norm(image.affine[:3, :3], axis=0))
    return CtInputs(nifti, dicom, npy, image.spatial_shape, spacing, origin)


def _real_size_ct(shape: tuple[int, ...]) -> tuple[MedicalImage, str]:
    shared = shared_data()
    ct = shared / "totalsegmentator" / "example_ct.nii.gz" if shared else None
    if ct is None or not ct.exists():
        rng = np.random.default_rng(0)
        noise = rng.normal(0, 300, size=shape).astype(np.int16)
        image = MedicalImage(np.asfortranarray(noise), np.diag([0.7, 0.7, 1.7, 1.0]),
                             meta={"modality": "CT"})
        return image, "synthetic noise (no shared data)"
    real = read_image(ct)
    target = np.array(real.spatial_shape) * np.array(real.spacing) / np.array(shape)
    fine = resample_to_spacing(real, target, "linear")
    voxels = np.asfortranarray(np.rint(fine.array).astype(np.int16))
    image = fine.replace(array=voxels)
    return image, f"real TotalSegmentator CT resampled to {np.round(target, 3)} mm"


def _flip_first_axis(n: int) -> np.ndarray:
    """Index map i -> n-1-i (the first axis stored the other way round)."""
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, n - 1
    return flip


def write_dicom_series(image: MedicalImage, folder: Path) -> None:
    """One uncompressed CT slice per file, in HU (slope 1, intercept 0), with the
    image's exact geometry; GDCM writes position and orientation from the ITK image."""
    folder.mkdir(parents=True)
    volume = to_sitk(image)
    series = "1.2.826.0.1.3680043.8.498.1"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    tags = {"0008|0060": "CT", "0020|000d": series + ".1", "0020|000e": series + ".2",
            "0010|0020": "BENCH", "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0028|1052": "0", "0028|1053": "1", "0028|1054": "HU",
            "0020|0037": "\\".join(f"{v:.9f}" for v in _row_and_column_cosines(volume))}
    with _locale_kept():
        for k in range(volume.GetDepth()):
            _write_slice(writer, volume, k, tags, series, folder)


@contextmanager
def _locale_kept():
    """GDCM's writer sets the process locale to "C", which makes Python's default text
    encoding ASCII for the rest of the process: put the locale back."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_slice(writer, volume, k: int, tags: dict[str, str], series: str,
                 folder: Path) -> None:
    piece = volume[:, :, k]
    for tag, value in tags.items():
        piece.SetMetaData(tag, value)
    position = volume.TransformIndexToPhysicalPoint((0, 0, k))
    piece.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in position))
    piece.SetMetaData("0020|0013", str(k + 1))
    piece.SetMetaData("0008|0018", f"{series}.3.{k + 1}")
    writer.SetFileName(str(folder / f"slice{k:04d}.dcm"))
    writer.Execute(piece)


def _row_and_column_cosines(volume: sitk.Image) -> list[float]:
    """ImageOrientationPatient: the directions of i and j (columns of ITK's matrix)."""
    direction = np.array(volume.GetDirection()).reshape(3, 3)
    return [*direction[:, 0], *direction[:, 1]]
