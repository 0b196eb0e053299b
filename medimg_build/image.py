"""The one value that flows through the pipeline: pixels, geometry and metadata.

Conventions (those of nibabel, so that a NIfTI reads the same here and there):

* ``array`` has the spatial axes first, in index order ``(i, j[, k])``, followed by at
  most one channel axis (RGB, echoes, time points). For DICOM and raster files ``i``
  runs along a row (columns) and ``j`` down the rows, like dcm2niix and nibabel.
* ``affine`` is 4x4 and maps ``(i, j, k, 1)`` to RAS+ millimetres. A 2D image uses the
  first two columns; its third column is the unit ``k`` axis.
* Memory layout: readers give pixel arrays Fortran-ordered in ``(i, j, k)``, which is
  C order in ``(k, j, i)`` -- the order of SimpleITK's numpy view and of the store.
  Conversions to either are then free views; a C-ordered ``(i, j, k)`` array works
  too, but each conversion costs a cache-hostile transposed copy (seconds per CT).
  ``to_ras`` leaves a view of its input (axes permuted and flipped): the resampling
  that follows reads any strides, and writing copies one chunk at a time.
* ``meta["space"]`` is ``"patient"`` when the affine places the image in the patient
  (scanner) frame, and ``"image"`` for pictures without one (PNG, JPEG, most X-rays:
  a CR/DX without ImageOrientationPatient), whose affine only carries the pixel
  spacing. A 2D image in ``"image"`` space is a **picture** (``is_picture``): it stays
  in picture space, rows down and columns right (``i`` counts columns, ``j`` rows),
  its axes are named ``column``/``row`` rather than anatomical directions (a frontal
  film's rows run head to foot, not towards A), and nothing reorients it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from nibabel.orientations import io_orientation, ornt2axcodes

from .provenance import AppliedStep

# What the index axes i, j of a picture count (module docstring). The first two world axes
# of its affine are the same two directions on the film, in mm (pixels when unknown).
PICTURE_AXES = ("column", "row")
PICTURE_ORIENTATION = ",".join(PICTURE_AXES)


@dataclass(frozen=True, eq=False)
class MedicalImage:
    array: np.ndarray
    affine: np.ndarray
    spatial_ndim: int = 3
    meta: dict[str, Any] = field(default_factory=dict)
    history: tuple[AppliedStep, ...] = ()

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {affine.shape}")
        object.__setattr__(self, "affine", affine)
        if self.spatial_ndim not in (2, 3):
            raise ValueError(f"spatial_ndim must be 2 or 3, got {self.spatial_ndim}")
        extra = self.array.ndim - self.spatial_ndim
        if extra not in (0, 1):
            raise ValueError(
                f"array of shape {self.array.shape} has {extra} axes beyond its "
                f"{self.spatial_ndim} spatial ones; only one channel axis is allowed"
            )

    # -- shape -----------------------------------------------------------------------
    @property
    def has_channels(self) -> bool:
        return self.array.ndim > self.spatial_ndim

    @property
    def n_channels(self) -> int:
        return self.array.shape[-1] if self.has_channels else 1

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.array.shape[: self.spatial_ndim])

    # -- geometry (all derived from the affine, the single source of truth) --------------
    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each spatial index axis."""
        norms = np.linalg.norm(self.affine[:3, : self.spatial_ndim], axis=0)
        return tuple(float(s) for s in norms)

    @property
    def spacing_unit(self) -> str:
        """``"mm"``, or ``"pixel"`` for a picture whose file and table stated no pixel
        size (``meta["pixel_spacing_known"]`` False): its spacings count source pixels."""
        return "pixel" if self.meta.get("pixel_spacing_known") is False else "mm"

    @property
    def origin(self) -> tuple[float, float, float]:
        """RAS+ position in mm of the centre of voxel (0, 0, 0)."""
        return tuple(float(v) for v in self.affine[:3, 3])

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit RAS+ directions of the index axes."""
        columns = self.affine[:3, :3]
        return columns / np.linalg.norm(columns, axis=0)

    @property
    def is_picture(self) -> bool:
        """A 2D image without a patient frame (``meta["space"] == "image"``)."""
        return self.spatial_ndim == 2 and self.meta.get("space") == "image"

    @property
    def orientation(self) -> str:
        """Closest anatomical axis codes of the index axes, e.g. ``"RAS"`` or ``"LPS"``;
        a picture's axis names, ``"column,row"`` (it has no anatomical directions)."""
        if self.is_picture:
            return PICTURE_ORIENTATION
        codes = ornt2axcodes(axis_orientation(self.affine))
        return "".join(c or "?" for c in codes[: self.spatial_ndim])

    # -- evolution -------------------------------------------------------------------
    def replace(self, **changes: Any) -> MedicalImage:
        return dataclasses.replace(self, **changes)

    def recorded(self, name: str, **params: Any) -> MedicalImage:
        """A copy with one more applied step in its history."""
        return self.replace(history=self.history + (AppliedStep(name, params),))

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing)
        return (
            f"MedicalImage(shape={self.array.shape}, dtype={self.array.dtype}, "
            f"spacing=({spacing}) {self.spacing_unit}, orientation={self.orientation}, "
            f"modality={self.meta.get('modality')!r}, steps={len(self.history)})"
        )


def axis_orientation(affine: np.ndarray) -> np.ndarray:
    """nibabel's ``io_orientation(affine)`` (``[[world axis, +1 or -1], ...]`` per index
    axis; ``affine`` is (q+1) x (p+1)). Where every index axis runs along exactly one
    world axis, as in nearly every grid a build meets (a picture, a volume after RAS or
    resampling), the answer is read off the signs of the matrix, exactly what nibabel's
    SVD gives for it, at a hundredth of its cost (it ran several times per case, about
    a tenth of a 2D build's time); any other affine (oblique, sheared, degenerate) goes
    to nibabel."""
    affine = np.asarray(affine, dtype=np.float64)
    matrix = affine[:-1, :-1]
    nonzero = matrix != 0
    rows = np.argmax(nonzero, axis=0)
    if not (nonzero.sum(axis=0) == 1).all() or len(set(rows.tolist())) != len(rows):
        return io_orientation(affine)
    signs = np.sign(matrix[rows, np.arange(matrix.shape[1])])
    return np.column_stack([rows, signs]).astype(np.float64)
