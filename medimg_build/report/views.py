"""Which way is up: how a voxel grid is laid out on screen in the radiological convention.

Screen directions are fixed per view and named by world (RAS+) axes: in an axial or a
coronal view the patient's left is on the image's right (the viewer faces the
patient, or looks up from the feet); a sagittal view is seen from the patient's left,
anterior to the image's left; superior (coronal, sagittal) and anterior (axial) are up.

The voxel axes that run closest to those directions are found from the affine
(``nibabel.orientations.io_orientation``), never assumed from a store's axis order, so
an LPS, a permuted or a flipped grid is shown the same way as a RAS one. An oblique grid
is shown on its voxel axes closest to the view (the affine stays the truth).

Pictures (2D images without a patient frame: PNG, JPEG, a CR/DX without
ImageOrientationPatient) are the exception: they are drawn as acquired (``PICTURE``).

Everything here works in the in-memory (nibabel) index order ``(i, j[, k])``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel.orientations import io_orientation

R, A, S = 0, 1, 2  # world axes of RAS+
TOWARDS_MINUS = -1  # screen-right/down points to the world axis' negative end (L, P, I)


@dataclass(frozen=True)
class View:
    """A named view: the world axis it looks along and where world axes go on screen.
    ``right`` and ``down`` are ``(world axis, sign)``: the world direction that
    screen-right (screen-down) points to. ``edges`` label the left, right, top and
    bottom edges with the anatomical direction found there."""

    name: str
    normal: int
    right: tuple[int, int]
    down: tuple[int, int]
    edges: tuple[str, str, str, str]


AXIAL = View("axial", normal=S, right=(R, TOWARDS_MINUS), down=(A, TOWARDS_MINUS),
             edges=("R", "L", "A", "P"))
CORONAL = View("coronal", normal=A, right=(R, TOWARDS_MINUS), down=(S, TOWARDS_MINUS),
               edges=("R", "L", "S", "I"))
SAGITTAL = View("sagittal", normal=R, right=(A, TOWARDS_MINUS), down=(S, TOWARDS_MINUS),
                edges=("A", "P", "S", "I"))
ORTHOGONAL_VIEWS = (AXIAL, CORONAL, SAGITTAL)
CONVENTION = ("Radiological convention: axial and coronal views show the patient's left "
              "on the image's right (R on the left edge, L on the right); sagittal views "
              "are seen from the patient's left, anterior on the image's left; superior "
              "(coronal, sagittal) and anterior (axial) are up. Directions come from "
              "each case's stored affine.")


@dataclass(frozen=True)
class Plane:
    """Where a view's image comes from in a voxel grid: ``slice_axis`` at
    ``slice_index`` (None for a 2D grid, which is the plane itself), and which index
    axis runs down the rows and across the columns, each maybe reversed."""

    view: View
    row_axis: int
    row_flip: bool
    col_axis: int
    col_flip: bool
    spatial_shape: tuple[int, ...]
    slice_axis: int | None = None
    slice_index: int | None = None

    def extract(self, array: np.ndarray) -> np.ndarray:
        """The view's ``(rows, cols[, channels])`` image of ``array`` indexed
        ``(i, j[, k][, c])``: axes after the spatial ones (channels) are kept last."""
        if self.slice_axis is not None:
            array = np.take(array, self.slice_index, axis=self.slice_axis)
        in_plane = [a for a in range(len(self.spatial_shape)) if a != self.slice_axis]
        rows, cols = in_plane.index(self.row_axis), in_plane.index(self.col_axis)
        trailing = list(range(2, array.ndim))
        plane = np.transpose(array, [rows, cols, *trailing])
        return plane[::-1 if self.row_flip else 1, ::-1 if self.col_flip else 1]

    def to_screen(self, index: np.ndarray) -> np.ndarray:
        """``(row, col)`` pixel coordinates in the view of voxel positions ``index``
        (``(n, spatial_ndim)``, fractional; voxel centres at integers)."""
        index = np.atleast_2d(np.asarray(index, dtype=np.float64))

        def along(axis: int, flip: bool) -> np.ndarray:
            values = index[:, axis]
            return self.spatial_shape[axis] - 1 - values if flip else values

        return np.column_stack([along(self.row_axis, self.row_flip),
                                along(self.col_axis, self.col_flip)])

    def contains(self, index_low: float, index_high: float) -> bool:
        """Whether the voxel range ``[low, high]`` along the slice axis meets the slice
        (always, for a 2D grid)."""
        if self.slice_axis is None:
            return True
        return index_low - 0.5 <= self.slice_index <= index_high + 0.5

    def pixel_aspect(self, affine: np.ndarray) -> float:
        """Height / width of one displayed pixel, from the voxel spacing."""
        spacing = np.linalg.norm(affine[:3, :len(self.spatial_shape)], axis=0)
        return float(spacing[self.row_axis] / spacing[self.col_axis])


def axis_directions(affine: np.ndarray, spatial_ndim: int) -> np.ndarray:
    """``(spatial_ndim, 2)``: for each index axis, the world axis it runs closest to and
    its sign (+1 towards R/A/S)."""
    columns = [*range(spatial_ndim), 3]
    directions = io_orientation(np.asarray(affine, dtype=np.float64)[:, columns])
    if np.isnan(directions).any():
        raise ValueError(f"affine has a degenerate spatial axis: {np.asarray(affine).tolist()}")
    return directions.astype(int)


def plan_plane(affine: np.ndarray, spatial_shape: tuple[int, ...], view: View,
               centre: np.ndarray | None = None) -> Plane:
    """The plane of ``view`` through the voxel grid ``(affine, spatial_shape)``, at the
    voxel ``centre`` (default: the middle voxel, ``n // 2`` along each axis)."""
    directions = axis_directions(affine, len(spatial_shape))
    world_to_index = {int(world): index for index, (world, _) in enumerate(directions)}

    def placed(world_axis: int, sign: int) -> tuple[int, bool]:
        index_axis = world_to_index[world_axis]
        return index_axis, bool(directions[index_axis, 1] != sign)

    row_axis, row_flip = placed(*view.down)
    col_axis, col_flip = placed(*view.right)
    if len(spatial_shape) == 2:
        return Plane(view, row_axis, row_flip, col_axis, col_flip, tuple(spatial_shape))
    slice_axis = world_to_index[view.normal]
    middle = np.asarray(spatial_shape) // 2 if centre is None else np.asarray(centre)
    slice_index = int(np.clip(np.rint(middle[slice_axis]), 0, spatial_shape[slice_axis] - 1))
    return Plane(view, row_axis, row_flip, col_axis, col_flip, tuple(spatial_shape),
                 slice_axis, slice_index)


def view_of_2d_grid(affine: np.ndarray) -> View:
    """The view a 2D grid with world geometry is: the one looking along the world axis
    its two index axes do not span (a radiograph spanning R and S is coronal)."""
    spanned = set(axis_directions(affine, 2)[:, 0].tolist())
    normal = ({R, A, S} - spanned).pop()
    return next(view for view in ORTHOGONAL_VIEWS if view.normal == normal)


# A picture (a PNG or JPEG, or a radiograph without ImageOrientationPatient: no patient
# frame, ``MedicalImage.is_picture``) is drawn as it was acquired: row 0 at the top,
# column 0 at the left, no anatomical direction claimed at its edges. Its plane is made
# from the index axes alone (``picture_plane``), never from the affine, whose signs say
# nothing about the patient. ``normal``, ``right`` and ``down`` are unused for it.
PICTURE = View("picture", normal=S, right=(R, 1), down=(A, 1), edges=("", "", "", ""))


def picture_plane(spatial_shape: tuple[int, ...]) -> Plane:
    """The one plane of a picture ``(i, j)`` = (column, row): rows down the screen along
    ``j``, columns across along ``i``, neither reversed."""
    if len(spatial_shape) != 2:
        raise ValueError(f"a picture has 2 spatial axes, not shape {tuple(spatial_shape)}")
    return Plane(PICTURE, row_axis=1, row_flip=False, col_axis=0, col_flip=False,
                 spatial_shape=tuple(int(n) for n in spatial_shape))
