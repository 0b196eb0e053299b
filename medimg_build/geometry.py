"""Small pure functions over affines, and the bridge to SimpleITK's LPS world.

nibabel's convention rules here: an affine maps array indices ``(i, j, k)`` to RAS+ mm.
ITK and DICOM use LPS+; the two differ by a sign on the first two world axes.
SimpleITK's numpy view reverses the axes (``array[k, j, i]``), which is handled only here.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .image import MedicalImage, axis_orientation

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse


def affine_from_geometry(spacing, origin, direction) -> np.ndarray:
    """4x4 affine from spacing (per index axis), origin and a direction matrix whose
    columns are the index axes' unit vectors, all in one world frame. 2D geometry
    (2 spacings, 2x2 direction) is embedded with a unit third axis."""
    spacing = np.asarray(spacing, dtype=np.float64)
    n = spacing.size
    direction = np.asarray(direction, dtype=np.float64).reshape(n, n)
    affine = np.eye(4)
    affine[:n, :n] = direction * spacing[np.newaxis, :]
    affine[:n, 3] = np.asarray(origin, dtype=np.float64)[:n]
    return affine


def affine_from_sitk(image: sitk.Image) -> np.ndarray:
    """RAS+ affine of a SimpleITK image, indexed in ITK's ``(i, j, k)`` order."""
    lps = affine_from_geometry(image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    return LPS_TO_RAS @ lps


def array_from_sitk(image: sitk.Image) -> np.ndarray:
    """Pixels of a SimpleITK image in ``(i, j[, k][, channel])`` order: a transposed
    view, Fortran-ordered, as the MedicalImage memory layout wants (no copy)."""
    array = sitk.GetArrayFromImage(image)  # (k, j, i[, c]), C order
    spatial = image.GetDimension()
    order = tuple(reversed(range(spatial))) + tuple(range(spatial, array.ndim))
    return array.transpose(order)


def to_sitk(image: MedicalImage) -> sitk.Image:
    """A SimpleITK image with the same pixels and geometry (LPS+, ITK axis order).

    A 2D SimpleITK image has no third world axis, so a 2D image must lie in the x-y plane
    of its affine (a coronal slice would give ITK a singular direction); resampling
    therefore works in the index frame (``harmonize.resample``), where that always holds."""
    n = image.spatial_ndim
    order = tuple(reversed(range(n))) + tuple(range(n, image.array.ndim))
    pixels = image.array.transpose(order)
    pixels = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("="))
    result = sitk.GetImageFromArray(pixels, isVector=image.has_channels)
    lps = LPS_TO_RAS @ image.affine
    spacing = np.linalg.norm(lps[:3, :n], axis=0)
    direction = lps[:n, :n] / spacing[np.newaxis, :]
    result.SetSpacing([float(s) for s in spacing])
    result.SetOrigin([float(v) for v in lps[:n, 3]])
    result.SetDirection([float(v) for v in direction.ravel()])
    return result


def from_sitk(result: sitk.Image, like: MedicalImage) -> MedicalImage:
    """``like`` with the pixels and geometry of a SimpleITK image (metadata kept)."""
    affine = affine_from_sitk(result)
    if like.spatial_ndim == 2:
        # Keep the third world axis of the original 2D image (ITK has no notion of it).
        affine[:3, 2] = like.affine[:3, 2]
        affine[2, 3] = like.affine[2, 3]
    return like.replace(array=array_from_sitk(result), affine=affine)


def transform_points(points: np.ndarray, from_affine: np.ndarray, to_affine: np.ndarray,
                     ) -> np.ndarray:
    """Continuous indices ``(n, d)`` of one grid -> ``(n, 3)`` indices of another, via
    their world position. ``d`` = 2 points lie in the plane ``k = 0`` of their grid."""
    points = np.asarray(points, dtype=np.float64)
    homogeneous = np.zeros((len(points), 4))
    homogeneous[:, : points.shape[1]] = points
    homogeneous[:, 3] = 1.0
    mapping = np.linalg.solve(np.asarray(to_affine, float), np.asarray(from_affine, float))
    return (homogeneous @ mapping.T)[:, :3]


def to_world(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Continuous indices ``(n, d)`` -> RAS+ mm ``(n, 3)``."""
    return transform_points(points, affine, np.eye(4))


def ras_grid(shape, affine: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """The spatial shape and affine a grid would have after reorientation to the closest
    RAS+ (permuting/flipping axes only), without touching any pixels. Two grids that
    hold the same voxel centres in different axis orders compare equal this way."""
    from nibabel.orientations import inv_ornt_aff

    shape = tuple(int(n) for n in shape) + (1,) * (3 - len(shape))
    ornt = axis_orientation(affine)
    ras_affine = affine @ inv_ornt_aff(ornt, shape)
    ras_shape = [0, 0, 0]
    for axis, (target, _) in enumerate(ornt):
        ras_shape[int(target)] = shape[axis]
    return tuple(ras_shape), ras_affine


def grid_offset_mm(a: MedicalImage, b: MedicalImage) -> float | None:
    """How far apart, in mm, the two images' voxel centres lie at the corners of their
    grids once both are in RAS+ axis order (0 for one grid saved in two axis orders);
    None when their grids do not even have the same shape."""
    shape_a, affine_a = ras_grid(a.spatial_shape, a.affine)
    shape_b, affine_b = ras_grid(b.spatial_shape, b.affine)
    if shape_a != shape_b:
        return None
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape_a])).reshape(3, -1).T
    homogeneous = np.c_[corners, np.ones(len(corners))].T
    return float(np.abs((affine_a - affine_b) @ homogeneous).max())
