"""Resize to an exact voxel shape, keeping the aspect ratio and padding the rest.

This is what a ``stack`` store needs: every case on the same array shape. The image is
scaled by one factor ``s`` on all spatial axes (the largest that fits), centred, and
surrounded by ``pad_value``. It is a resampling onto a new grid whose affine is exact,
so the content keeps its world position and labels/boxes can follow with the recorded
``scale`` and ``offset``:

    p_new = p_old * scale + offset,   offset = ((new_size - 1) - scale * (old_size - 1)) / 2

for a (fractional) voxel index ``p`` along each axis, with voxel centres at integer
indices: the old image's outer edge, index ``-0.5`` .. ``old_size - 0.5``, maps to a
band of width ``old_size * scale`` centred in ``-0.5`` .. ``new_size - 0.5``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError
from ..image import MedicalImage
from .orient import image_source
from .resample import CONTINUOUS, check_grid, check_interpolation, resample_onto


def _check_shape(image: MedicalImage, shape: Sequence[int]) -> np.ndarray:
    n = image.spatial_ndim
    values = [shape] if np.isscalar(shape) else list(shape)
    ok = len(values) == n and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in values
    )
    if not ok:
        raise GeometryError(
            image_source(image),
            f"target shape {values} does not fit an image with {n} spatial axes "
            f"(shape {image.spatial_shape})",
            f"give {n} positive integers in array index order; channels are kept as they are",
        )
    return np.asarray(values, dtype=np.int64)


def _antialias(image: MedicalImage, sigma_voxels: float) -> MedicalImage:
    """Gaussian pre-smoothing before downsampling (the skimage ``resize`` rule).

    Sigma is in voxels and the same on every axis (one scale factor), so the axis order
    does not matter: the array goes to ITK as it is, without the (i, j, k) <-> (k, j, i)
    transposes of ``geometry.to_sitk`` (2 of 3 seconds on a 512x512x300 CT), and without
    any geometry (a unit grid). ITK's recursive Gaussian costs the same for any sigma but
    needs 4 voxels per axis; thinner images use the discrete (kernel) Gaussian, which
    takes no vector pixels, so one channel at a time.
    """
    if min(image.spatial_shape) >= 4:
        return image.replace(array=_recursive_gaussian(image, sigma_voxels))
    pixels = image.array.astype(np.float32, copy=False)
    width = max(3, int(2 * np.ceil(4 * sigma_voxels) + 1))

    def discrete(channel: np.ndarray) -> np.ndarray:
        source = sitk.GetImageFromArray(np.ascontiguousarray(channel))
        smoothed = sitk.DiscreteGaussian(source, float(sigma_voxels) ** 2, width, 0.01)
        return sitk.GetArrayFromImage(smoothed)

    if not image.has_channels:
        return image.replace(array=discrete(pixels))
    channels = [discrete(pixels[..., c]) for c in range(image.n_channels)]
    return image.replace(array=np.stack(channels, axis=-1))


def _recursive_gaussian(image: MedicalImage, sigma_voxels: float) -> np.ndarray:
    """ITK's recursive Gaussian of the pixels, as float32. Memory is what bounds a
    worker here (an 89-megapixel radiograph is 357 MB as float32): the pixels go to ITK
    in their own type and are cast there (exactly as numpy's astype), and each buffer is
    dropped as soon as the next exists, so at most two float copies are alive at once
    instead of four."""
    array = image.array
    # Hand ITK whichever axis order is contiguous (the Fortran layout of image.py
    # reversed), so that no transposed copy is made on the way in or out.
    reverse = not image.has_channels and array.flags.f_contiguous
    if array.dtype in (np.float16, np.bool_) or array.dtype.itemsize > 4:
        # Types ITK does not have, and types wider than the result: cast here.
        array = array.astype(np.float32)
    source = sitk.GetImageFromArray(array.T if reverse else np.ascontiguousarray(array),
                                    isVector=image.has_channels)
    del array
    float32 = sitk.sitkVectorFloat32 if image.has_channels else sitk.sitkFloat32
    if source.GetPixelID() != float32:
        source = sitk.Cast(source, float32)
    smoothed = sitk.SmoothingRecursiveGaussian(source, float(sigma_voxels))
    del source
    pixels = sitk.GetArrayFromImage(smoothed)
    return pixels.T if reverse else pixels


def resize_with_pad(
    image: MedicalImage,
    shape: Sequence[int],
    interpolation: str = "linear",
    pad_value: float | None = None,
) -> MedicalImage:
    """``image`` on a grid of exactly ``shape`` voxels: scaled by ``s``, centred, padded.

    ``s = min(shape / spatial_shape)`` over the spatial axes, so the aspect ratio of the
    voxel grid (and hence of the anatomy) is kept and spacing becomes ``spacing / s``.
    When downsampling with ``"linear"``/``"bspline"``, the image is first smoothed with
    a Gaussian of ``sigma = (1/s - 1) / 2`` voxels per axis (never for ``"nearest"`` /
    ``"label"``, which must not mix labels). ``pad_value`` defaults to the image minimum.

    Output dtype: float32 for linear/bspline, the input dtype otherwise. Recorded as
    ``resize_with_pad`` with ``old_shape``, ``new_shape``, ``old_spacing``,
    ``new_spacing``, ``scale`` and ``offset`` (per axis; see the module docstring for
    ``p_new = p_old * scale + offset``), ``pad_value``, ``interpolation`` and
    ``antialias_sigma`` (voxels per axis, or None).
    """
    check_interpolation(image, interpolation)
    target = _check_shape(image, shape)
    # Before the anti-aliasing copy and the pad value's pass over the pixels.
    check_grid(image, target, "resized, the image", fix="give a smaller harmonize.shape")
    n = image.spatial_ndim
    old = np.asarray(image.spatial_shape, dtype=np.float64)
    s = float(np.min(target / old))
    scale = np.full(n, s)
    offset = ((target - 1) - scale * (old - 1)) / 2

    # New voxel u comes from old index p = (u - offset) / s: prepend that to the affine.
    new_to_old = np.eye(4)
    new_to_old[:n, :n] = np.diag(1.0 / scale)
    new_to_old[:n, 3] = -offset / scale
    affine = image.affine @ new_to_old

    if pad_value is None:
        pad_value = float(np.min(image.array))
    pad_value = float(pad_value)
    dtype = image.array.dtype
    if interpolation not in CONTINUOUS and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not (info.min <= pad_value <= info.max and pad_value.is_integer()):
            raise GeometryError(
                image_source(image),
                f"pad value {pad_value} does not fit the image's {dtype} pixels",
                f"give an integer in [{info.min}, {info.max}] or use linear interpolation",
            )

    source, sigma = image, None
    if s < 1 and interpolation in CONTINUOUS:
        sigma = np.full(n, (1.0 / s - 1.0) / 2.0)
        source = _antialias(image, float(sigma[0]))

    result = resample_onto(source, affine, target, interpolation, fill_value=pad_value)
    return result.recorded(
        "resize_with_pad",
        old_shape=list(image.spatial_shape),
        new_shape=target.tolist(),
        old_spacing=list(image.spacing),
        new_spacing=list(result.spacing),
        scale=scale.tolist(),
        offset=offset.tolist(),
        pad_value=pad_value,
        interpolation=interpolation,
        antialias_sigma=None if sigma is None else sigma.tolist(),
    )
