"""Reorder and flip array axes so that they run along RAS+ (no interpolation).

This is nibabel's ``as_closest_canonical`` for our value type: the index axis closest
to world R becomes axis 0 and runs towards R, and so on for A and S. Pixels are only
permuted and flipped, so every value survives bit for bit and a voxel keeps its world
position exactly (the affine absorbs the permutation and flips). An oblique affine
stays oblique: only the *closest* canonical orientation is reached.
"""

from __future__ import annotations

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff

from ..errors import GeometryError
from ..image import MedicalImage, axis_orientation


def image_source(image: MedicalImage) -> str | None:
    """The file or folder an image came from, for error messages: ``meta["path"]``,
    else the ``path`` of its ``read`` step, else its first ``meta["source_files"]``."""
    if image.meta.get("path"):
        return str(image.meta["path"])
    for step in image.history:
        if step.name == "read" and step.params.get("path"):
            return str(step.params["path"])
    files = image.meta.get("source_files") or []
    return str(files[0]) if files else None


def _spatial_ornt(image: MedicalImage) -> np.ndarray:
    """nibabel orientation ``[[new_axis, flip], ...]`` taking the spatial axes to RAS.

    For 3D images it is ``io_orientation(affine)`` itself. A 2D image has only two
    index axes, which may map to any two world axes (an axial slice to R and A, a
    coronal radiograph to R and S); they are permuted among themselves only, the one
    nearer to the earlier world axis (R before A before S) first.
    """
    n = image.spatial_ndim
    columns = list(range(n)) + [3]  # the spatial columns and the translation
    ornt = axis_orientation(image.affine[:, columns])
    if np.isnan(ornt).any():
        raise GeometryError(
            image_source(image),
            f"affine has a degenerate (zero) spatial axis: {image.affine[:3, :n].tolist()}",
            "the reader produced a singular affine; check the file's spacing and direction",
        )
    if n == 2:
        # World axes (e.g. 0 and 2) -> target positions among the 2 spatial axes (0, 1).
        ranks = np.argsort(np.argsort(ornt[:, 0]))
        ornt = np.column_stack([ranks, ornt[:, 1]])
    return ornt


def to_ras(image: MedicalImage) -> MedicalImage:
    """``image`` with its spatial axes permuted/flipped to the closest RAS+ orientation.

    The channel axis (if any) stays last. Recorded as ``to_ras`` with ``from`` and ``to``
    (orientation codes, e.g. ``"LPS"`` -> ``"RAS"``; two letters for 2D images) and
    ``transform``, the nibabel orientation array (row ``i`` = ``[new axis of input
    axis i, +1 or -1 for a flip]``) that ``nibabel.orientations.apply_orientation``
    takes. An image already in RAS+ is returned with the same array and an identity
    transform recorded; so is a picture (``MedicalImage.is_picture``), whatever its
    affine: it has no anatomical directions to reorder towards, and stays as acquired.
    The pixels are never copied: the result's array is a view of the input's.
    """
    n = image.spatial_ndim
    identity = np.column_stack([np.arange(n), np.ones(n)])
    ornt = identity if image.is_picture else _spatial_ornt(image)
    if np.array_equal(ornt, identity):
        return image.recorded(
            "to_ras", **{"from": image.orientation, "to": image.orientation,
                         "transform": identity.astype(int).tolist()}
        )

    # apply_orientation acts on the first len(ornt) axes; the channel axis follows along.
    # It gives a view (axes permuted, flipped by negative strides), kept as it is: the
    # next step makes a new array anyway (resampling reads any strides, a copy for ITK is
    # made once there), and copying here cost a CT as much time as its resampling.
    array = apply_orientation(image.array, ornt)

    # inv_ornt_aff maps new indices back to old ones; prepend it to the old affine so
    # that new voxel u lands on the world point of the old voxel it came from.
    back = inv_ornt_aff(ornt, image.spatial_shape)  # (n+1) x (n+1)
    new_to_old = np.eye(4)
    new_to_old[:n, :n] = back[:n, :n]
    new_to_old[:n, 3] = back[:n, n]
    result = image.replace(array=array, affine=image.affine @ new_to_old)
    return result.recorded(
        "to_ras", **{"from": image.orientation, "to": result.orientation,
                     "transform": ornt.astype(int).tolist()}
    )
