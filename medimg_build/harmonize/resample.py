"""Resample an image to a new voxel spacing, or onto another image's grid (SimpleITK).

Grid convention for ``resample_to_spacing`` (nnU-Net's; MONAI's ``Spacing`` also keeps
origin and direction): the new grid keeps the origin (the centre of voxel 0) and the
direction of the old one, and has ``max(1, round(size * old_spacing / new_spacing))``
voxels per axis (numpy's round, half to even, as nnU-Net), so that its physical extent
``size * spacing`` equals the old one up to half a new voxel. Keeping voxel 0 in place
(rather than the grid's centre) keeps the mapping simple: old index ``p`` is new index
``p * old_spacing / new_spacing``. Voxel centres that fall just past the old image's
edge (when upsampling) take the nearest edge value instead of a fill value.
That mapping is diagonal, so ``"linear"`` is done one axis at a time in numpy
(``harmonize.separable``: ITK's interpolation and extrapolation rules, to float32
rounding, at less than half its CPU time); the other interpolators go through SimpleITK.

Interpolators: ``"linear"`` and ``"bspline"`` (3rd order) give float32 images;
``"nearest"`` and ``"label"`` keep the input dtype and never create a value that is not
in the input. ``"label"`` is ITK's label-Gaussian interpolator (each label is blurred
and the strongest wins: smoother label borders than nearest neighbour); images with a
channel axis (one-hot masks) fall back to nearest neighbour for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError
from ..geometry import from_sitk, to_sitk
from ..image import MedicalImage
from ..limits import check_size
from .orient import image_source
from .separable import resample_separable

INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
    "nearest": sitk.sitkNearestNeighbor,
    "label": sitk.sitkLabelGaussian,
}
CONTINUOUS = frozenset({"linear", "bspline"})  # interpolators that make new values


def check_interpolation(image: MedicalImage, interpolation: str) -> str:
    if interpolation not in INTERPOLATORS:
        raise GeometryError(
            image_source(image),
            f"unknown interpolation {interpolation!r}",
            f"use one of {', '.join(INTERPOLATORS)}",
        )
    return interpolation


def check_per_axis(image: MedicalImage, values, what: str) -> np.ndarray:
    """``values`` as one positive float per spatial axis (a single number is broadcast)."""
    n = image.spatial_ndim
    if np.isscalar(values):
        values = [values] * n
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        array = np.array([np.nan])
    if array.size != n:
        raise GeometryError(
            image_source(image),
            f"{what} {list(values)} has {array.size} values for an image with {n} "
            f"spatial axes (shape {image.spatial_shape})",
            f"give {n} values, in array index order (i, j{', k' if n == 3 else ''})",
        )
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise GeometryError(
            image_source(image),
            f"{what} {list(values)} must be positive and finite",
            f"give {n} numbers > 0",
        )
    return array


def check_grid(image: MedicalImage, shape: Sequence[int], what: str,
               fix: str | None = None) -> None:
    """Refuse an output grid of ``shape`` spatial voxels (times the image's channels)
    past the size limit, before anything allocates it: a valid 4x4x4 image of 500 mm
    voxels resampled to 1.5 mm is 1333**3 voxels. Every step that makes a new grid calls
    this first, with ``what`` saying which step and why that size."""
    channels = [image.n_channels] if image.has_channels else []
    check_size(image_source(image), [*shape, *channels], what, fix)


def mm(values) -> str:
    """Sizes or spacings for a message: ``0.005x0.005x0.005``."""
    return "x".join(f"{float(v):g}" for v in values)


def _sitk_ready(array: np.ndarray) -> np.ndarray:
    """SimpleITK has no float16 or bool pixels: widen them losslessly."""
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    return array


def index_frame(image: MedicalImage) -> MedicalImage:
    """``image`` with an identity affine: its world is its own voxel index space.

    ITK maps an output voxel to a physical point and that point to an input index, so
    with the input in its index frame and the output grid expressed in it too, ITK
    samples exactly ``p_old = M @ u_new`` with ``M = inv(A_old) @ A_new``. This needs
    no 2D world for 2D images, which lie in any plane of patient space (a coronal
    radiograph, a sagittal slice) that ITK's 2D geometry cannot hold.
    """
    return image.replace(affine=np.eye(4), history=())


def resample_onto(
    image: MedicalImage,
    affine: np.ndarray,
    shape: Sequence[int],
    interpolation: str,
    *,
    fill_value: float = 0.0,
    extrapolate: bool = False,
) -> MedicalImage:
    """Pixels of ``image`` sampled on the grid ``(shape, affine)``; nothing recorded.

    The building block of this module and of ``resize``. Voxels of the grid outside the
    image get ``fill_value``, or the nearest edge value when ``extrapolate``. The result
    carries ``affine`` exactly (not its round trip through ITK's LPS geometry).
    """
    check_interpolation(image, interpolation)
    n = image.spatial_ndim
    affine = np.asarray(affine, dtype=np.float64)
    try:
        new_to_old = np.linalg.solve(image.affine, affine)
    except np.linalg.LinAlgError:
        raise GeometryError(image_source(image), "the image's affine is singular",
                            "the reader produced a degenerate affine") from None
    if n == 2 and np.abs(new_to_old[2, [0, 1, 3]]).max() > 1e-3:
        raise GeometryError(
            image_source(image),
            "the target grid does not lie in the plane of this 2D image",
            "resample a 2D image only onto grids of the same plane",
        )
    source = to_sitk(index_frame(image.replace(array=_sitk_ready(image.array))))
    # The grid's geometry in that index frame, through the one bridge, from a 1-voxel
    # stand-in: the geometry does not depend on the array (no grid-sized allocation).
    stand_in = image.replace(array=np.zeros((1,) * n, np.uint8), affine=new_to_old)
    grid = to_sitk(stand_in)

    method = INTERPOLATORS[interpolation]
    if interpolation == "label" and image.has_channels:
        method = sitk.sitkNearestNeighbor
    if interpolation in CONTINUOUS:
        pixel_type = sitk.sitkVectorFloat32 if image.has_channels else sitk.sitkFloat32
    else:
        pixel_type = sitk.sitkUnknown  # same as the input
    result = sitk.Resample(
        source,
        [int(s) for s in shape],
        sitk.Transform(),
        method,
        grid.GetOrigin(),
        grid.GetSpacing(),
        grid.GetDirection(),
        float(fill_value),
        pixel_type,
        bool(extrapolate),
    )
    array = from_sitk(result, image).array
    if interpolation not in CONTINUOUS and array.dtype != image.array.dtype:
        array = array.astype(image.array.dtype)  # back to float16 / bool
    return image.replace(array=array, affine=affine)


def _cast_only(image: MedicalImage, interpolation: str) -> np.ndarray:
    """The array when the grid does not change: exact, only the dtype contract applies."""
    if interpolation in CONTINUOUS:
        return image.array.astype(np.float32, copy=False)
    return image.array


def resample_to_spacing(
    image: MedicalImage, spacing, interpolation: str = "linear"
) -> MedicalImage:
    """``image`` resampled to voxel ``spacing`` (mm, one per spatial axis, or one number).

    Same origin and direction; ``max(1, round(size * old / new))`` voxels per axis (see
    the module docstring). Recorded as ``resample_to_spacing`` with ``old_spacing``,
    ``new_spacing``, ``old_shape``, ``new_shape`` and ``interpolation``. A point at old
    index ``p`` is at new index ``p * old_spacing / new_spacing``.
    """
    check_interpolation(image, interpolation)
    new_spacing = check_per_axis(image, spacing, "target spacing")
    n = image.spatial_ndim
    old_spacing = np.asarray(image.spacing)
    old_shape = np.asarray(image.spatial_shape)
    # Capped before the integer cast: a spacing of 1e-300 mm would give inf voxels, and
    # inf cast to int a negative size; 2**53 voxels is refused all the same.
    new_shape = np.minimum(np.maximum(1, np.round(old_shape * old_spacing / new_spacing)),
                           2.0**53).astype(int)
    check_grid(image, new_shape, f"resampled to {mm(new_spacing)} mm (from "
               f"{mm(old_shape)} voxels of {mm(old_spacing)} mm), the image",
               fix="give a coarser harmonize.spacing")

    affine = image.affine.copy()
    affine[:3, :n] = image.affine[:3, :n] * (new_spacing / old_spacing)[np.newaxis, :]

    if np.array_equal(new_shape, old_shape) and np.allclose(new_spacing, old_spacing,
                                                            rtol=1e-9, atol=0):
        result = image.replace(array=_cast_only(image, interpolation))
    elif interpolation == "linear":
        # Old index p is new index p * old / new spacing on each axis: one two-tap
        # interpolation per axis, ITK's linear rule with its edge extrapolation.
        array = resample_separable(image.array, n, new_shape, old_spacing / new_spacing,
                                   np.zeros(n), sigma=0.0, extrapolate=True)
        result = image.replace(array=array, affine=affine)
    else:
        result = resample_onto(image, affine, new_shape, interpolation, extrapolate=True)
    return result.recorded(
        "resample_to_spacing",
        old_spacing=old_spacing.tolist(),
        new_spacing=new_spacing.tolist(),
        old_shape=old_shape.tolist(),
        new_shape=new_shape.tolist(),
        interpolation=interpolation,
    )


def resample_to_grid(
    image: MedicalImage,
    reference: MedicalImage,
    interpolation: str = "nearest",
    *,
    fill_value: float = 0.0,
) -> MedicalImage:
    """``image`` resampled onto the grid (spatial shape and affine) of ``reference``.

    Meant for masks (hence the nearest default; pass ``"label"`` for label-aware
    smoothing, or ``"linear"`` for intensities). Grid voxels outside ``image`` get
    ``fill_value`` (background). The result's affine is ``reference.affine`` exactly.
    Recorded as ``resample_to_grid`` with ``old_shape``, ``new_shape``, ``old_spacing``,
    ``new_spacing``, ``old_affine``, ``new_affine``, ``interpolation``, ``fill_value``.
    """
    check_interpolation(image, interpolation)
    if reference.spatial_ndim != image.spatial_ndim:
        raise GeometryError(
            image_source(image),
            f"cannot resample a {image.spatial_ndim}D image onto the grid of a "
            f"{reference.spatial_ndim}D image",
            "a mask must have as many spatial axes as its image",
        )
    check_grid(image, reference.spatial_shape,
               f"resampled onto the grid of {image_source(reference) or 'its image'}, "
               "the image")
    same_grid = reference.spatial_shape == image.spatial_shape and np.allclose(
        reference.affine, image.affine, rtol=0, atol=1e-6
    )
    if same_grid:
        result = image.replace(array=_cast_only(image, interpolation),
                               affine=reference.affine.copy())
    else:
        result = resample_onto(image, reference.affine, reference.spatial_shape,
                               interpolation, fill_value=fill_value)
    return result.recorded(
        "resample_to_grid",
        old_shape=list(image.spatial_shape),
        new_shape=list(reference.spatial_shape),
        old_spacing=list(image.spacing),
        new_spacing=list(reference.spacing),
        old_affine=image.affine.tolist(),
        new_affine=reference.affine.tolist(),
        interpolation=interpolation,
        fill_value=float(fill_value),
    )
