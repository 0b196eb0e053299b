"""The pixels of one sampled case, and the planes the report shows of it.

A case is read through ``open_store``'s public reads (``read_image``, ``read_mask``):
whole, once, in the in-memory index order its affine describes. Its boxes and landmarks
come from the store's tables, in harmonized voxel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..image import MedicalImage
from ..store.damage import undecodable
from ..store.pictures import ORIENTATION, SPACING_UNIT, picture_flags
from .views import ORTHOGONAL_VIEWS, Plane, picture_plane, plan_plane, view_of_2d_grid

INDEX_AXES = ("x", "y", "z")  # stored axis names of index axes i, j, k (store/axes.py)
# Readers whose images are always pictures (io/raster.py, the JSRT parser), for stores
# whose read step did not record its space.
PICTURE_READERS = ("pillow", "tifffile", "jsrt_raw")


@dataclass(frozen=True)
class CaseImages:
    case_id: str
    image: MedicalImage
    mask: MedicalImage | None
    boxes: pd.DataFrame  # this case's rows of store.boxes()
    landmarks: pd.DataFrame  # this case's rows of store.landmarks()
    picture: bool  # no patient frame (picture_cases): drawn as acquired


def read_case(store, case_id: str, boxes: pd.DataFrame, landmarks: pd.DataFrame,
              picture: bool) -> CaseImages:
    with undecodable(store.location, f"case {case_id}: its pixels"):
        image, mask = store.read_image(case_id), store.read_mask(case_id)
    return CaseImages(case_id, image, mask, _rows_of(boxes, case_id),
                      _rows_of(landmarks, case_id), picture)


def picture_cases(cases: pd.DataFrame) -> pd.Series:
    """Per row of the case table: a picture without a patient frame, which the report
    draws as acquired -- as ``MedimgStore.read_image`` says (``store/pictures.py``:
    its ``original_orientation`` names the picture's axes). Stores built before
    pictures were named so also say it by the read step, which recorded
    ``space="image"`` (DICOM and ITK readers) or a picture reader."""
    steps = cases["steps"] if "steps" in cases else pd.Series(None, index=cases.index)
    read = steps.map(_read_as_picture).astype(bool)
    if ORIENTATION not in cases:
        return read
    return read | picture_flags(cases[ORIENTATION], cases.get(SPACING_UNIT))


def _read_as_picture(steps) -> bool:
    read = next((step for step in steps if step.get("name") == "read"), None) \
        if isinstance(steps, list) else None
    params = (read or {}).get("params") or {}
    return params.get("space") == "image" or params.get("reader") in PICTURE_READERS


def _rows_of(table: pd.DataFrame, case_id: str) -> pd.DataFrame:
    return table[table["case_id"] == case_id] if len(table) else table


def box_corners(boxes: pd.DataFrame, spatial_ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Low and high voxel edges ``(n, spatial_ndim)`` in index order (i, j[, k])."""
    names = INDEX_AXES[:spatial_ndim]
    low = boxes[[f"{a}_min" for a in names]].to_numpy(np.float64)
    high = boxes[[f"{a}_max" for a in names]].to_numpy(np.float64)
    return low, high


def landmark_points(landmarks: pd.DataFrame, spatial_ndim: int) -> np.ndarray:
    """Voxel positions ``(n, spatial_ndim)`` in index order (i, j[, k])."""
    return landmarks[list(INDEX_AXES[:spatial_ndim])].to_numpy(np.float64)


def focus(case: CaseImages) -> np.ndarray | None:
    """The voxel the orthogonal planes pass through: the centre of the case's first box,
    else its first landmark, else None (the middle of the volume)."""
    ndim = case.image.spatial_ndim
    if len(case.boxes):
        low, high = box_corners(case.boxes.iloc[:1], ndim)
        return (low[0] + high[0]) / 2
    if len(case.landmarks):
        return landmark_points(case.landmarks.iloc[:1], ndim)[0]
    return None


def planes_of(case: CaseImages) -> list[Plane]:
    """Axial, coronal and sagittal planes of a volume; the one plane of a 2D image."""
    affine, shape = case.image.affine, case.image.spatial_shape
    if case.image.spatial_ndim == 3:
        centre = focus(case)
        return [plan_plane(affine, shape, view, centre) for view in ORTHOGONAL_VIEWS]
    if case.picture:
        return [picture_plane(shape)]
    return [plan_plane(affine, shape, view_of_2d_grid(affine))]
