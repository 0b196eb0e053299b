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

from ..errors import GeometryError
from ..image import MedicalImage
from .orient import image_source
from .resample import CONTINUOUS, check_grid, check_interpolation, resample_onto
from .separable import GAUSSIAN, resample_separable, smooth_separable


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
    ``"label"``, which must not mix labels): sampled at integers, cut at 4 sigma, the
    border replicated. For ``"linear"`` it is folded into the interpolation weights, one
    small operator per axis (``harmonize.separable``; within 0.3 % of the value range per
    axis of the ITK recursive Gaussian used before). ``pad_value`` defaults to the image
    minimum.

    Output dtype: float32 for linear/bspline, the input dtype otherwise. Recorded as
    ``resize_with_pad`` with ``old_shape``, ``new_shape``, ``old_spacing``,
    ``new_spacing``, ``scale`` and ``offset`` (per axis; see the module docstring for
    ``p_new = p_old * scale + offset``), ``pad_value``, ``interpolation``,
    ``antialias`` (the smoothing filter, ``"gaussian-sampled-4sigma"``, or None) and
    ``antialias_sigma`` (voxels per axis, or None).
    """
    check_interpolation(image, interpolation)
    target = _check_shape(image, shape)
    # Before the smoothing and the pad value's pass over the pixels.
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

    sigma = None
    if s < 1 and interpolation in CONTINUOUS:
        sigma = np.full(n, (1.0 / s - 1.0) / 2.0)
    if interpolation == "linear":
        # The index transform is diagonal: smoothing and interpolation are one separable
        # operator per axis, computed only at the output samples (harmonize.separable).
        array = resample_separable(image.array, n, target, scale, offset,
                                   0.0 if sigma is None else float(sigma[0]), pad_value)
        result = image.replace(array=array, affine=affine)
    else:
        source = image
        if sigma is not None:
            source = image.replace(array=smooth_separable(image.array, n, float(sigma[0])))
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
        antialias=None if sigma is None else GAUSSIAN,
        antialias_sigma=None if sigma is None else sigma.tolist(),
    )
