"""The one place where in-memory axis order meets stored axis order.

In memory (nibabel): ``array[x, y[, z][, c]]``, i.e. index axes ``(i, j[, k])`` then an
optional channel axis, and the affine maps ``(i, j, k)`` to RAS+ mm.
Stored (OME-NGFF, C order): ``array[c, [z,] y, x]`` -- spatial axes reversed, channel
first. With the harmonized RAS+ orientation, stored ``z, y, x`` run along S, A, R.

The permutation ``(n, n-1, ..., 0)`` (n = spatial axes) maps either order to the other,
so one function does both directions.
"""

from __future__ import annotations

import numpy as np

from ..image import MedicalImage

WORLD_LABELS = ("S", "A", "R")  # RAS+ components listed in stored (z, y, x) order


def spatial_dims(spatial_ndim: int) -> tuple[str, ...]:
    """Stored names of the spatial axes: ("y", "x") or ("z", "y", "x")."""
    return ("z", "y", "x")[3 - spatial_ndim:]


def _swap(array: np.ndarray, spatial_ndim: int) -> np.ndarray:
    # A view: a Fortran-ordered image (image.py) is C-ordered once reversed, which is
    # what zarr reads slice by slice without copying.
    return array.transpose(tuple(range(spatial_ndim, -1, -1)))


def image_to_stored(image: MedicalImage) -> np.ndarray:
    """``(x, y[, z][, c])`` -> ``(c, [z,] y, x)``; a missing channel axis becomes size 1."""
    array = image.array if image.has_channels else image.array[..., np.newaxis]
    return _swap(array, image.spatial_ndim)


def image_from_stored(stored: np.ndarray, channel_axis: bool) -> np.ndarray:
    """``(c, [z,] y, x)`` -> ``(x, y[, z][, c])``, dropping ``c`` when the written image
    had no channel axis (size 1 is ambiguous otherwise)."""
    array = _swap(stored, stored.ndim - 1)
    return array if channel_axis else array[..., 0]


def mask_to_stored(mask: np.ndarray) -> np.ndarray:
    """``(x, y[, z])`` -> ``([z,] y, x)``."""
    return mask.transpose(tuple(reversed(range(mask.ndim))))


def mask_from_stored(stored: np.ndarray) -> np.ndarray:
    return mask_to_stored(stored)  # reversing is its own inverse


def stored_spacing(affine: np.ndarray, spatial_ndim: int) -> np.ndarray:
    """Voxel size in mm of each stored spatial axis, in stored order."""
    return np.linalg.norm(affine[:3, :spatial_ndim], axis=0)[::-1].copy()


def stored_origin(affine: np.ndarray) -> np.ndarray:
    """RAS+ position of voxel 0 listed as (S, A, R): the stored (z, y, x) order."""
    return np.asarray(affine[:3, 3], dtype=np.float64)[::-1].copy()


def is_axis_aligned(affine: np.ndarray, spatial_ndim: int) -> bool:
    """True when index axis m runs along +world axis m (a diagonal, positive affine),
    the case where the 1-D coordinates below are exact."""
    block = affine[:3, :spatial_ndim]
    diagonal = np.zeros_like(block)
    for m in range(spatial_ndim):
        diagonal[m, m] = block[m, m]
    return bool(np.array_equal(block, diagonal) and np.all(np.diagonal(block) > 0))


def axis_coords(affine: np.ndarray,
                stored_spatial_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Voxel-centre positions in mm along each stored spatial axis: origin component +
    index * spacing. Exact for axis-aligned affines; for oblique ones they are only a
    guide and the affine (always stored too) is the truth."""
    n = len(stored_spatial_shape)
    spacing = stored_spacing(affine, n)
    origin = stored_origin(affine)[3 - n:]
    return {
        name: origin[p] + np.arange(size, dtype=np.float64) * spacing[p]
        for p, (name, size) in enumerate(zip(spatial_dims(n), stored_spatial_shape))
    }
