"""A case back on the grid of its source file (``--original-grid``).

The case table records the source's grid: ``original_shape`` (spatial axes first, then
any channels) and ``original_affine`` (nibabel's, rounded to 1e-6 mm), written by
``recipe.case_table``. When the harmonized grid is that grid with its axes only
permuted or flipped (``to_ras`` without resampling: ``harmonize.spacing: null``), the
voxels are put back by the same permutation, bit for bit. Otherwise they are resampled
with the project's ``resample_onto``: the image with the store's interpolation, a
mask by nearest neighbour (labels stay labels).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..harmonize.resample import resample_onto
from ..image import MedicalImage

# Grids match when their voxel centres agree to this fraction of a voxel: the recorded
# affine is rounded to 1e-6 mm.
_VOXEL_TOLERANCE = 1e-3


def original_grid(row: dict[str, Any], spatial_ndim: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """(affine, spatial shape) of the case's source file, from its table row. A source
    read as 3D one slice thick and stored as 2D (``drop_singleton_slice``) keeps the
    affine, whose first two columns are the picture's axes."""
    affine = np.asarray(row["original_affine"], dtype=np.float64)
    shape = tuple(int(n) for n in row["original_shape"][:spatial_ndim])
    return affine, shape


def onto_grid(image: MedicalImage, affine: np.ndarray, shape: tuple[int, ...],
              interpolation: str) -> tuple[MedicalImage, bool]:
    """``image`` on the grid ``(affine, shape)``, and whether it is exact (a permutation
    of its voxels). An integer image resampled with a continuous interpolation is
    rounded back to its dtype (HU stay whole numbers)."""
    new_to_old = np.linalg.solve(image.affine, affine)
    permuted = permuted_voxels(image.array, image.spatial_ndim, new_to_old, shape)
    if permuted is not None:
        return image.replace(array=permuted, affine=affine), True
    # Source voxel centres up to half a harmonized voxel past its last centre (the
    # extent resample_to_spacing keeps) take the nearest edge value, as it did.
    result = resample_onto(image, affine, shape, interpolation, extrapolate=True)
    dtype = image.array.dtype
    if np.issubdtype(dtype, np.integer) and result.array.dtype != dtype:
        info = np.iinfo(dtype)
        rounded = np.clip(np.rint(result.array), info.min, info.max).astype(dtype)
        result = result.replace(array=rounded)
    return result, False


def permuted_voxels(array: np.ndarray, spatial_ndim: int, new_to_old: np.ndarray,
                    shape: tuple[int, ...]) -> np.ndarray | None:
    """``array`` on the new grid when each new index axis is an old one, maybe
    reversed, over the same voxels (``new_to_old`` maps new indices to old ones);
    None when the grids differ otherwise."""
    n = spatial_ndim
    block = new_to_old[:n, :n]
    old_axis = np.argmax(np.abs(block), axis=0)  # the old axis each new one runs along
    signs = np.sign(block[old_axis, np.arange(n)])
    expected = np.zeros((n, n))
    expected[old_axis, np.arange(n)] = signs
    if len(set(old_axis.tolist())) != n or not np.allclose(block, expected,
                                                           atol=_VOXEL_TOLERANCE):
        return None
    if n == 2 and np.abs(new_to_old[2, [0, 1, 3]]).max() > _VOXEL_TOLERANCE:
        return None  # another plane than the picture's
    for axis in range(n):
        size = array.shape[old_axis[axis]]
        first = new_to_old[old_axis[axis], 3]  # old index of new index 0
        if shape[axis] != size or abs(first - (0 if signs[axis] > 0 else size - 1)) \
                > _VOXEL_TOLERANCE:
            return None
    channels = list(range(n, array.ndim))
    moved = array.transpose([*old_axis.tolist(), *channels])
    return moved[tuple(slice(None, None, -1) if s < 0 else slice(None) for s in signs)]
