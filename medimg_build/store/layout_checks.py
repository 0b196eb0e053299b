"""What ``validate_store`` checks of each layout (``layouts.Layout.check`` calls it):
the stack's image, mask and per-case geometry arrays, or the volumes layout's case
groups. Each returns the complete flags of the cases and reports through ``checker``,
the validator's ``validate._Checker`` (``add``, ``expect_dims``, ``check_mask_values``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..limits import store_max_voxels
from .axes import axis_coords, spatial_dims, stored_origin, stored_spacing
from .ngff import ngff_problems
from .schema import (
    AFFINE, CASE, CASE_ATTRS, CASES_GROUP, CHANNEL, COMPLETE, IMAGE, MASK, ORIGIN, SPACING,
    image_path, level_0_mask_path, level_group,
)
from .tree import GroupView

_ATOL_MM = 1e-6  # geometry is written from the same floats: any real drift is a bug


def check_stack(checker, ids: list[str]) -> np.ndarray:
    """The image, its mask and the per-case geometry; returns the complete flags."""
    if COMPLETE not in checker.arrays:  # no case was ever written
        return np.zeros(checker.n, dtype=bool)
    complete = np.asarray(checker.arrays[COMPLETE][:], dtype=bool)[:checker.n]
    if IMAGE not in checker.arrays:
        checker.add(IMAGE, "missing from a stack store that has cases")
        return complete
    image = checker.arrays[IMAGE]
    nd = checker.spatial_ndim or image.ndim - 2
    checker.expect_dims(IMAGE, image, (CASE, CHANNEL) + spatial_dims(nd))
    spatial = tuple(image.shape[2:])
    checker.image_shapes = {int(i): spatial for i in np.flatnonzero(complete)}
    if MASK in checker.arrays:
        mask = checker.arrays[MASK]
        checker.expect_dims(MASK, mask, (CASE,) + spatial_dims(nd))
        if tuple(mask.shape) != (image.shape[0],) + spatial:
            checker.add(MASK, f"shape {list(mask.shape)} is not the image's (case, "
                        f"{'z, ' if nd == 3 else ''}y, x) = {[image.shape[0], *spatial]}")
        else:
            checker.check_mask_values(MASK, mask, complete)
    check_stack_geometry(checker, complete, nd)
    return complete


def check_stack_geometry(checker, complete: np.ndarray, nd: int) -> None:
    """spacing/origin must be what the affine says: a reader maps voxels with either."""
    if not all(name in checker.arrays for name in (AFFINE, SPACING, ORIGIN)):
        checker.add("/", "affine, spacing and origin arrays are required in a stack store")
        return
    affines = np.asarray(checker.arrays[AFFINE][:], dtype=np.float64)
    spacing = np.asarray(checker.arrays[SPACING][:])
    origin = np.asarray(checker.arrays[ORIGIN][:])
    for i in np.flatnonzero(complete):
        problem = _geometry_problem(affines[i], nd, spacing[i], origin[i])
        if problem:
            checker.add(f"{AFFINE}[{i}]", problem)


def check_volumes(checker, ids: list[str]) -> np.ndarray:
    """Each case group and its level-0 arrays; returns the complete flags."""
    groups = checker.root[CASES_GROUP].groups() if CASES_GROUP in checker.root else {}
    position = {case_id: i for i, case_id in enumerate(ids)}
    complete = np.zeros(checker.n, dtype=bool)
    pattern = checker.medimg.get("arrays", {}).get(f"{CASES_GROUP}/*/{image_path()}") or {}
    for name, group in sorted(groups.items()):
        where = f"{CASES_GROUP}/{name}"
        attrs = group.attrs.get(CASE_ATTRS)
        if not isinstance(attrs, dict):
            checker.add(where, f"no '{CASE_ATTRS}' attribute")
            continue
        if attrs.get("complete") is not True:
            continue  # an interrupted case: invisible to readers, not an error
        if name not in position:
            checker.add(where, "complete case group whose id is not in the 'case' array")
            continue
        if attrs.get("case_id") != name:
            checker.add(where, f"{CASE_ATTRS}.case_id {attrs.get('case_id')!r} is not the "
                        "group's name")
        complete[position[name]] = True
        check_case(checker, where, group, attrs, position[name], pattern)
    return complete


def check_case(checker, where: str, group: GroupView, attrs: dict[str, Any],
               index: int, pattern: dict[str, Any]) -> None:
    if image_path() not in group:
        checker.add(where, f"complete case without an image ({image_path()})")
        return
    image = group[image_path()]
    image_where = f"{where}/{image_path()}"
    nd = checker.spatial_ndim or image.ndim - 1
    checker.expect_dims(image_where, image, (CHANNEL,) + spatial_dims(nd))
    spatial = tuple(image.shape[1:])
    checker.image_shapes[index] = spatial
    if math.prod(image.shape) > store_max_voxels(checker.medimg):
        # Its coordinates and mask would be computed and read at that size.
        checker.add(image_where, f"shape {list(image.shape)} is over the size limit of "
                    f"{store_max_voxels(checker.medimg):,} values (forged or damaged "
                    "metadata?)")
        return
    if pattern.get("dtype") and str(image.dtype) != pattern["dtype"]:
        checker.add(image_where, f"dtype {image.dtype} where the store's arrays say "
                    f"{pattern['dtype']}")
    if list(attrs.get("shape") or []) != list(spatial):
        checker.add(where, f"{CASE_ATTRS}.shape {attrs.get('shape')} is not the image's "
                    f"spatial shape {list(spatial)}")
    mask_path = level_0_mask_path(group)
    if mask_path is not None:
        mask, mask_where = group[mask_path], f"{where}/{mask_path}"
        checker.expect_dims(mask_where, mask, spatial_dims(nd))
        if tuple(mask.shape) != spatial:
            checker.add(mask_where, f"shape {list(mask.shape)} is not on the image "
                        f"grid {list(spatial)}")
        else:
            checker.check_mask_values(mask_where, mask, None)
    try:
        affine = np.asarray(attrs.get("affine"), dtype=np.float64)
        assert affine.shape == (4, 4)
    except (TypeError, ValueError, AssertionError):
        checker.add(where, f"{CASE_ATTRS}.affine is not a 4x4 matrix")
        return
    problem = _geometry_problem(affine, nd, attrs.get("spacing"), attrs.get("origin"))
    if problem:
        checker.add(where, f"{CASE_ATTRS}: {problem}")
    for path, ngff_problem in ngff_problems(group, affine, nd):
        checker.add(f"{where}/{path}".rstrip("/"), ngff_problem)
    # The 1-D coordinates are exact only on axis-aligned grids (see axes.axis_coords).
    if attrs.get("axis_aligned"):
        # The image's level 0 and the mask's each carry them (ngff.py).
        levels_0 = [level_group(0)] + ([mask_path.rpartition("/")[0]] if mask_path else [])
        for path in levels_0:
            _check_coords(checker, f"{where}/{path}", group[path], affine, spatial)


def _check_coords(checker, where: str, level_0: GroupView, affine: np.ndarray,
                  spatial: tuple[int, ...]) -> None:
    # Its arrays as listed: a schema 2.x HDF5 mask has netCDF dimensions named z/y/x
    # beside it (no values), which the HDF5 reader refuses to read as arrays.
    arrays = level_0.arrays()
    for axis, expected in axis_coords(affine, spatial).items():
        # Shapes first: a forged image shape must not reach allclose's broadcast.
        if axis in arrays and (tuple(arrays[axis].shape) != expected.shape or
                               not np.allclose(arrays[axis][:], expected, atol=1e-4)):
            checker.add(f"{where}/{axis}", "coordinates disagree with the case's affine")


def _geometry_problem(affine: np.ndarray, nd: int, spacing: Any, origin: Any) -> str | None:
    if not np.all(np.isfinite(affine)):
        return "affine is not finite"
    try:
        spacing_ok = np.allclose(np.asarray(spacing, dtype=float),
                                 stored_spacing(affine, nd), atol=_ATOL_MM)
        origin_ok = np.allclose(np.asarray(origin, dtype=float), stored_origin(affine),
                                atol=_ATOL_MM)
    except (TypeError, ValueError):
        return "spacing/origin are not numeric vectors"
    if not spacing_ok:
        return f"spacing {np.round(np.asarray(spacing, float), 6).tolist()} disagrees with " \
               f"the affine's {np.round(stored_spacing(affine, nd), 6).tolist()}"
    if not origin_ok:
        return f"origin {np.round(np.asarray(origin, float), 6).tolist()} disagrees with " \
               f"the affine's {np.round(stored_origin(affine), 6).tolist()}"
    return None
