"""What researchers run today for the work our build does -- read, RAS, 1.5 mm, CT window,
save -- and the decode floor under all of them.

* MONAI: LoadImage + Orientation("RAS") + Spacing(1.5 mm, bilinear) +
  ScaleIntensityRange(clip to the window, identity scaling), saved as int16 .npy.
* nnU-Net style: SimpleITK read, flips to RAS, scipy.ndimage resampling (order 3 as
  nnU-Net resamples images; order 1 = our linear), CT window, int16 .npy. The scipy
  grid is ours exactly (voxel 0 kept, ``round(n * old / new)`` voxels).
* Decode floor: nibabel (NIfTI) or a pydicom dcmread loop (DICOM), nothing else.

Every output is int16 HU clipped to the window, as our ``ct`` preset stores it."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk
from scipy import ndimage

from medimg_build.geometry import affine_from_sitk

SPACING = (1.5, 1.5, 1.5)
WINDOW = (-1024, 3071)


def to_int16_hu(array: np.ndarray) -> np.ndarray:
    """The ``ct`` preset's storage: clipped to the window, rounded, int16."""
    return np.rint(np.clip(array, *WINDOW)).astype(np.int16)


# -- MONAI -------------------------------------------------------------------------------
def monai_pipeline(source: Path, out: Path) -> tuple[int, ...]:
    """The MONAI transforms a training script chains for this preprocessing; returns
    the output shape (spatial)."""
    from monai.transforms import LoadImage, Orientation, ScaleIntensityRange, Spacing

    reader = "PydicomReader" if source.is_dir() else "NibabelReader"
    image = LoadImage(reader=reader, image_only=True, ensure_channel_first=True)(source)
    image = Orientation(axcodes="RAS")(image)
    image = Spacing(pixdim=SPACING, mode="bilinear")(image)
    image = ScaleIntensityRange(a_min=WINDOW[0], a_max=WINDOW[1], b_min=WINDOW[0],
                                b_max=WINDOW[1], clip=True)(image)
    voxels = np.rint(image.numpy()[0]).astype(np.int16)
    np.save(out, voxels)
    return voxels.shape


# -- nnU-Net style -----------------------------------------------------------------------
def nnunet_style(source: Path, out: Path, order: int = 3) -> tuple[int, ...]:
    """SimpleITK read, RAS by flips, scipy resampling of the given spline order."""
    image = sitk_read(source)
    affine = affine_from_sitk(image)
    voxels = sitk.GetArrayViewFromImage(image).T  # (i, j, k)
    voxels, spacing = _flipped_to_ras(voxels, affine)
    shape = np.maximum(1, np.round(np.array(voxels.shape) * spacing / SPACING)).astype(int)
    resampled = ndimage.affine_transform(
        voxels.astype(np.float32), np.array(SPACING) / spacing, output_shape=tuple(shape),
        order=order, mode="nearest")
    stored = to_int16_hu(resampled)
    np.save(out, stored)
    return stored.shape


def sitk_read(source: Path) -> sitk.Image:
    if not source.is_dir():
        return sitk.ReadImage(str(source))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(source)))
    return reader.Execute()


def _flipped_to_ras(voxels: np.ndarray, affine: np.ndarray):
    """An axis-aligned volume flipped so that i, j, k run toward R, A, S, and its spacing
    (what nnU-Net's readers do by transposes; no resampling)."""
    orientation = nib.orientations.io_orientation(affine)
    voxels = nib.orientations.apply_orientation(voxels, orientation)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)[orientation[:, 0].astype(int)]
    return voxels, spacing


# -- decode floor ------------------------------------------------------------------------
def decode_only(source: Path) -> None:
    """The pixels as the file holds them; no geometry, no checks, nothing after."""
    if source.is_dir():
        for path in sorted(source.iterdir()):
            _ = pydicom.dcmread(path).pixel_array
        return
    np.asanyarray(nib.load(source).dataobj)
