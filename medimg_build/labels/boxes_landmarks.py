"""Bounding boxes and landmarks, and how they follow an image through harmonization.

Coordinates are continuous voxel indices of one image, in its own index order
``(i, j[, k])`` (nibabel; ``i`` = column and ``j`` = row of a picture), with **voxel
centres at integers**: voxel ``n`` spans ``n - 0.5 .. n + 0.5``.

* A landmark is a point: ``10.0`` is the centre of voxel 10.
* A box is stored by its **edges**: ``lo``/``hi`` per axis, so a box covering exactly
  voxels 10..19 is ``lo = 9.5, hi = 19.5`` and its extent in mm is edge to edge. Edges
  (not the centres of the first/last voxel) are what a scaling maps correctly: doubled,
  that box covers new voxels 20..39 (edges 19.5 .. 39.5), not 20..38.
* A key-slice box (DeepLesion) is a 2D box drawn on slice ``k`` of a volume: a 3D box
  one slice thick (``k - 0.5 .. k + 0.5``) flagged ``key_slice``.

Why no per-step code: every harmonization step (``to_ras``, ``resample_to_spacing``,
``resize_with_pad``, ...) keeps the image's affine exact, and a point's world (RAS+ mm)
position is what no step changes. So annotations move from any image to any later
image of the same case by ``p_new = inv(A_new) @ A_old @ p``. A box maps its 4 or 8
corners and takes their axis-aligned hull in the new grid; the steps only permute, flip
and scale the index axes, so that hull is exact. Coordinates within one voxel outside
the new grid (its shape is rounded when resampling) are clipped onto it.

A picture's annotations (``picture``: made on an image that ``is_picture``) live in its
picture space like the picture itself: their world coordinates are positions on the film
along its columns and rows (mm, or pixels where the pixel size is unknown), never R, A, S.

Source conventions handled by the constructors: inclusive voxel ranges (3D boxes),
``(x, y, w, h)`` pixel boxes (NIH ChestX-ray14's ``Bbox [x, y, w, h]``: x = column,
y = row), ``(x1, y1, x2, y2)`` corner boxes, and DeepLesion's boxes on a key slice.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import LabelError, shown_items
from ..geometry import to_world, transform_points
from ..image import MedicalImage

# How far (voxels) a source annotation may overshoot its image before it is an error:
# annotation tools round, and draw up to the outer pixel edge.
_OVERSHOOT = 1.0
_EPS = 1e-6
PIXEL_CONVENTIONS = ("corner", "index")


def _labels(labels: Sequence[Any], n: int, where: str | None) -> tuple[str, ...]:
    if isinstance(labels, str):
        labels = [labels] * n  # one label for all
    out = tuple(str(label) for label in labels)
    if len(out) != n or any(label.strip() == "" for label in out):
        raise LabelError(where, f"{n} annotation(s) need {n} non-empty label(s), "
                         f"got [{shown_items(map(repr, out), 5)}]")
    return out


def _table(values: Any, width: int, what: str, where: str | None) -> np.ndarray:
    """``values`` as an (n, width) float64 table of finite numbers, or a LabelError."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.full((1, 0), np.nan)
    if array.ndim == 1 and array.size == width:
        array = array[np.newaxis]
    if array.size == 0 and width:
        array = array.reshape(0, width)
    if array.ndim != 2 or array.shape[1] != width or not np.isfinite(array).all():
        raise LabelError(where, f"{what} must be rows of {width} finite numbers, got "
                         f"{np.asarray(values, dtype=object).tolist()!r:.80}")
    return array


def _check_convention(convention: str, where: str | None) -> None:
    if convention not in PIXEL_CONVENTIONS:
        raise LabelError(where, f"unknown pixel convention {convention!r}",
                         hint="use 'corner' (pixel c spans c..c+1) or 'index' (c = pixel c)")


def _fit(lo: np.ndarray, hi: np.ndarray, shape: Sequence[int], what: str,
         where: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Clip coordinates onto the grid ``-0.5 .. n - 0.5``; beyond one voxel is an error."""
    low_edge = np.full(len(shape), -0.5)
    high_edge = np.asarray(shape, dtype=np.float64) - 0.5
    bad = ((lo < low_edge - _OVERSHOOT - _EPS) | (hi > high_edge + _OVERSHOOT + _EPS)
           | (lo > hi + _EPS)).any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LabelError(where, f"{what} {row} ({lo[row].tolist()} .. {hi[row].tolist()} "
                         f"in voxel indices) is outside the image of shape {tuple(shape)}",
                         hint="check the coordinate convention (x = column, y = row) "
                         "and that the annotation belongs to this image")
    return np.clip(lo, low_edge, high_edge), np.clip(np.maximum(hi, lo), low_edge, high_edge)


@dataclass(frozen=True, eq=False)
class Boxes:
    """Axis-aligned boxes on the voxel grid ``(shape, affine)`` of one image.

    ``lo``/``hi``: ``(n, d)`` edge coordinates (see the module docstring); ``labels``:
    one class name per box; ``key_slice``: ``(n,)`` bool, True for a 2D box drawn on
    one slice of a volume; ``source``: the boxes as given on the source image, kept by
    ``onto`` (None for boxes that are themselves the source); ``picture``: the grid is a
    picture's (``MedicalImage.is_picture``), whose world axes are its columns and rows
    rather than R, A, S.
    """

    labels: tuple[str, ...]
    lo: np.ndarray
    hi: np.ndarray
    affine: np.ndarray
    shape: tuple[int, ...]
    key_slice: np.ndarray
    source: Boxes | None = None
    picture: bool = False

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def on(cls, image: MedicalImage, labels, lo, hi, key_slice=None,
           where: str | None = None) -> Boxes:
        """Boxes with edge coordinates ``lo``/``hi`` on ``image``, checked to lie on it."""
        d = image.spatial_ndim
        lo, hi = _table(lo, d, "box corners", where), _table(hi, d, "box corners", where)
        if lo.shape != hi.shape:
            raise LabelError(where, f"{len(lo)} box minima for {len(hi)} maxima")
        lo, hi = _fit(lo, hi, image.spatial_shape, "box", where)
        flags = np.zeros(len(lo), bool) if key_slice is None else np.asarray(key_slice, bool)
        return cls(_labels(labels, len(lo), where), lo, hi, image.affine.copy(),
                   image.spatial_shape, flags.reshape(len(lo)), picture=image.is_picture)

    @classmethod
    def from_voxel_ranges(cls, image: MedicalImage, labels, first, last,
                          where: str | None = None) -> Boxes:
        """Boxes covering voxels ``first .. last`` (inclusive index ranges, ``(n, d)``
        in ``(i, j[, k])`` order), e.g. a 3D box from a voxel min/max."""
        return cls.on(image, labels, np.asarray(first, float) - 0.5,
                      np.asarray(last, float) + 0.5, where=where)

    @classmethod
    def from_xywh(cls, image: MedicalImage, labels, xywh, where: str | None = None) -> Boxes:
        """2D pixel boxes ``(x, y, w, h)``: x = column, y = row of the top-left pixel,
        w/h in pixels (NIH ChestX-ray14 ``Bbox [x, y, w, h]``). Integer values cover
        pixels ``x .. x + w - 1``; fractional ones read pixel c as spanning ``c .. c+1``
        (same thing)."""
        table = _table(xywh, 4, "(x, y, w, h) boxes", where)
        corners = np.c_[table[:, :2], table[:, :2] + table[:, 2:]]
        return cls.from_corners(image, labels, corners, "corner", where)

    @classmethod
    def from_corners(cls, image: MedicalImage, labels, x1y1x2y2, convention: str = "corner",
                     where: str | None = None) -> Boxes:
        """2D boxes ``(x1, y1, x2, y2)`` (x = column, y = row) on a 2D image.

        ``convention="corner"``: continuous pixel coordinates, pixel c spans
        ``c .. c + 1`` (PIL, OpenCV, COCO, DeepLesion), so x2 is the right edge.
        ``"index"``: x1..x2 are the first and last pixel inside the box."""
        lo, hi = _corner_box(x1y1x2y2, convention, where)
        return cls.on(image, labels, lo, hi, where=where)

    @classmethod
    def from_key_slice(cls, image: MedicalImage, labels, x1y1x2y2, slices,
                       convention: str = "corner", where: str | None = None) -> Boxes:
        """DeepLesion boxes: ``(x1, y1, x2, y2)`` on slice ``slices[b]`` (0-based index
        along ``k`` of this 3D image; the caller turns a file's 1-based or file-name
        slice number into it) -- a 3D box one slice thick, flagged ``key_slice``."""
        if image.spatial_ndim != 3:
            raise LabelError(where, "a key-slice box needs a 3D image",
                             hint="use from_corners for 2D images")
        lo, hi = _corner_box(x1y1x2y2, convention, where)
        k = _table(np.reshape(np.asarray(slices, dtype=object), (-1, 1)), 1,
                   "key slice indices", where)
        if len(k) != len(lo):
            raise LabelError(where, f"{len(lo)} key-slice boxes but {len(k)} slice indices")
        return cls.on(image, labels, np.c_[lo, k - 0.5], np.c_[hi, k + 0.5],
                      key_slice=np.ones(len(lo), bool), where=where)

    # -- geometry ----------------------------------------------------------------------
    def corners(self) -> np.ndarray:
        """``(n, 2**d, d)``: every corner of every box (edge coordinates)."""
        choose = np.array(list(itertools.product((0, 1), repeat=self.ndim)), bool)
        return np.where(choose[np.newaxis], self.hi[:, np.newaxis], self.lo[:, np.newaxis])

    def to_world(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo_mm, hi_mm)``, each ``(n, 3)``: the RAS+ axis-aligned hull of each box's
        corners (its exact extent on an axis-aligned grid); a picture's: its extent along
        the film's columns and rows (world axes 0 and 1)."""
        n, c = len(self), 2**self.ndim
        world = to_world(self.corners().reshape(n * c, self.ndim), self.affine)
        world = world.reshape(n, c, 3)
        return world.min(axis=1), world.max(axis=1)

    def voxel_slices(self, b: int) -> tuple[slice, ...]:
        """The voxels box ``b`` overlaps, as array slices in ``(i, j[, k])`` order (at
        least one voxel per axis, so a thin key-slice box still names its slice)."""
        start = np.floor(self.lo[b] + 0.5 + _EPS).astype(int)
        stop = np.maximum(np.ceil(self.hi[b] - 0.5 - _EPS).astype(int) + 1, start + 1)
        return tuple(slice(int(a), int(z)) for a, z in zip(start, stop))

    @property
    def slice_index(self) -> np.ndarray:
        """``(n,)`` int: for key-slice boxes the ``k`` voxel at the box's centre, else -1."""
        if self.ndim < 3:
            return np.full(len(self), -1, dtype=np.int64)
        centre = np.floor((self.lo[:, 2] + self.hi[:, 2]) / 2 + 0.5).astype(np.int64)
        return np.where(self.key_slice, np.clip(centre, 0, self.shape[2] - 1), -1)

    def onto(self, image: MedicalImage, where: str | None = None) -> Boxes:
        """These boxes on the grid of ``image`` (a harmonized version of the image
        they were given on); the result keeps the original boxes as ``source``."""
        n, c, d = len(self), 2**self.ndim, image.spatial_ndim
        moved = transform_points(self.corners().reshape(n * c, self.ndim), self.affine,
                                 image.affine).reshape(n, c, 3)
        _check_plane(moved, d, where)
        lo, hi = moved[..., :d].min(axis=1), moved[..., :d].max(axis=1)
        lo, hi = _fit(lo, hi, image.spatial_shape, "box", where)
        flags = self.key_slice if d == 3 else np.zeros(n, bool)
        return Boxes(self.labels, lo, hi, image.affine.copy(), image.spatial_shape, flags,
                     source=self.source if self.source is not None else self,
                     picture=image.is_picture)


@dataclass(frozen=True, eq=False)
class Landmarks:
    """Named points ``(n, d)`` (continuous voxel indices, centres at integers) on the
    grid ``(shape, affine)`` of one image; ``source`` and ``picture`` as for ``Boxes``."""

    labels: tuple[str, ...]
    points: np.ndarray
    affine: np.ndarray
    shape: tuple[int, ...]
    source: Landmarks | None = None
    picture: bool = False

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_voxels(cls, image: MedicalImage, labels, points,
                    where: str | None = None) -> Landmarks:
        """Points in continuous voxel indices ``(i, j[, k])`` of ``image``."""
        points = _table(points, image.spatial_ndim, "landmark points", where)
        points, _ = _fit(points, points, image.spatial_shape, "landmark", where)
        return cls(_labels(labels, len(points), where), points, image.affine.copy(),
                   image.spatial_shape, picture=image.is_picture)

    @classmethod
    def from_pixels(cls, image: MedicalImage, labels, points, convention: str = "index",
                    where: str | None = None) -> Landmarks:
        """Points ``(x, y[, k])`` with x = column, y = row. ``convention="index"``:
        x is a pixel index (integer = that pixel's centre); ``"corner"``: continuous
        coordinates where pixel c spans ``c .. c + 1``. A 3D ``k`` is always an index."""
        _check_convention(convention, where)
        table = _table(points, image.spatial_ndim, "landmark points", where)
        if convention == "corner":
            table[:, :2] -= 0.5
        return cls.from_voxels(image, labels, table, where)

    def to_world(self) -> np.ndarray:
        """``(n, 3)`` RAS+ mm."""
        return to_world(self.points, self.affine)

    def voxel_indices(self) -> np.ndarray:
        """``(n, d)`` int: the voxel each point lies in."""
        return np.clip(np.floor(self.points + 0.5).astype(np.int64), 0,
                       np.asarray(self.shape) - 1)

    def onto(self, image: MedicalImage, where: str | None = None) -> Landmarks:
        d = image.spatial_ndim
        moved = transform_points(self.points, self.affine, image.affine)
        _check_plane(moved[:, np.newaxis], d, where)
        points, _ = _fit(moved[:, :d], moved[:, :d], image.spatial_shape, "landmark", where)
        return Landmarks(self.labels, points, image.affine.copy(), image.spatial_shape,
                         source=self.source if self.source is not None else self,
                         picture=image.is_picture)


def _corner_box(x1y1x2y2, convention: str, where: str | None):
    _check_convention(convention, where)
    table = _table(x1y1x2y2, 4, "(x1, y1, x2, y2) boxes", where)
    lo = np.minimum(table[:, :2], table[:, 2:]) - 0.5  # tools disagree on corner order
    hi = np.maximum(table[:, :2], table[:, 2:]) + (0.5 if convention == "index" else -0.5)
    return lo, hi


def _check_plane(moved: np.ndarray, d: int, where: str | None) -> None:
    """A 2D target keeps only (i, j): the annotation must lie in its plane (k ~ 0,
    within the half-slice either side a 3D source's one-slice box reaches)."""
    if d == 2 and moved.size and np.abs(moved[..., 2]).max() > 0.5 + 1e-3:
        raise LabelError(where, "the annotation does not lie in the plane of the 2D image",
                         hint="annotate the slice the 2D image was made from")
