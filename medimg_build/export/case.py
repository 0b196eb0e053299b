"""One case of a store made ready for export: its image (normalization undone or kept,
on its harmonized or its original grid), its mask, and the record of both."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import __version__
from ..errors import MedimgWarning, shown_items
from ..image import MedicalImage
from ..provenance import AppliedStep
from ..store.classification import segmentation_classes
from ..store.reader import MedimgStore
from .grid import onto_grid, original_grid
from .intensity import ExportError, kept_normalization, normalization_step, undo_normalization
from .nifti import SHEAR_TOLERANCE, NiftiFrame, frame_of, qform_error


@dataclass(frozen=True)
class ExportOptions:
    keep_normalization: bool = False  # the stored values, not the intensities
    original_grid: bool = False  # the source file's grid, not the harmonized one


@dataclass(frozen=True)
class ExportedCase:
    case_id: str
    image: MedicalImage  # its history: the store's steps, then the export's
    mask: MedicalImage | None
    row: dict[str, Any]  # the case table row
    frame: NiftiFrame  # the image's: also its mask's
    record: dict[str, Any]  # what the sidecar and the header extension say


def selected_cases(store: MedimgStore, wanted: list[str] | None) -> list[str]:
    """The case ids to export, in store order: all complete cases, or ``wanted`` (each
    once); unknown ids are refused together, before anything is written."""
    known = list(store.cases["case_id"])
    if not wanted:
        return known
    present = set(known)
    unknown = [case_id for case_id in dict.fromkeys(wanted) if case_id not in present]
    if unknown:
        raise ExportError(store.location, f"no case {shown_items(map(repr, unknown))} in the "
                          "store", hint="'medimg-build inspect STORE' lists the case ids")
    chosen = set(wanted)
    return [case_id for case_id in known if case_id in chosen]


def table_rows(store: MedimgStore) -> dict[str, dict[str, Any]]:
    cases: pd.DataFrame = store.cases
    return {row["case_id"]: row for row in cases.to_dict(orient="records")}


def prepare_case(store: MedimgStore, row: dict[str, Any], options: ExportOptions
                 ) -> ExportedCase:
    case_id = row["case_id"]
    steps = list(row.get("steps") or [])
    stored = store.read_image(case_id)
    step = normalization_step(steps)
    if options.keep_normalization:
        array, intensity = stored.array, kept_normalization(step)
    else:
        recipe_intensity = (store.attrs.get("harmonization") or {}).get("intensity") or {}
        array, intensity = undo_normalization(stored.array, step, location=store.location,
                                              case_id=case_id,
                                              recipe_intensity=recipe_intensity)
    image = stored.replace(array=array,
                           history=tuple(AppliedStep(s["name"], s.get("params") or {})
                                         for s in steps))
    if intensity.get("undone"):
        image = image.recorded("denormalize", undid=intensity["undone"],
                               method=intensity["method"])
    mask = store.read_mask(case_id)
    grid: dict[str, Any] = {"grid": "harmonized", "exact": True}
    if options.original_grid:
        image, mask, grid = _on_original_grid(store, row, image, mask)
    frame = frame_of(image)
    _warn_if_sheared(store, case_id, image.affine)
    record = {
        "medimg_build": __version__,
        "store": store.location,
        "dataset": store.attrs.get("dataset"),
        "case_id": case_id,
        "patient_id": row.get("patient_id"),  # the store's pseudonym
        "split": row.get("split"),
        "modality": row.get("modality") or store.attrs.get("modality"),
        "organ": row.get("organ") or store.attrs.get("organ"),
        "intensity": intensity,
        "grid": grid,
        "affine": image.affine.tolist(),
        "steps": [step.to_dict() for step in image.history],
        "mask_classes": {str(k): v for k, v in
                         segmentation_classes(store.attrs.get("labels")).items()}
        if mask is not None else None,
    }
    return ExportedCase(case_id, image, mask, row, frame, record)


def _warn_if_sheared(store: MedimgStore, case_id: str, affine) -> None:
    """A shear (a NIfTI source's sheared sform: the store keeps it, resampled or not)
    survives in the sform only: tools that read the qform (ITK and so SimpleITK, nnU-Net,
    ITK-SNAP, when the sform is not orthonormal) see a rotated grid instead."""
    error = qform_error(affine)
    if error > SHEAR_TOLERANCE:
        warnings.warn(MedimgWarning(
            f"{store.location}: case {case_id!r}: its affine has a shear, which a NIfTI "
            f"qform cannot hold: the qform is the closest rotation, {error:.3g} mm per "
            "voxel off; nibabel reads the sform, ITK-based tools may read the qform "
            "(for those, resample the source onto a grid without shear before building)"),
            stacklevel=2)


def _on_original_grid(store: MedimgStore, row: dict[str, Any], image: MedicalImage,
                      mask: MedicalImage | None
                      ) -> tuple[MedicalImage, MedicalImage | None, dict[str, Any]]:
    if row.get("original_affine") is None or row.get("original_shape") is None:
        raise ExportError(store.location, f"case {row['case_id']!r}: the case table "
                          "records no original grid (original_affine, original_shape)",
                          hint="export without --original-grid")
    affine, shape = original_grid(row, image.spatial_ndim)
    interpolation = (store.attrs.get("harmonization") or {}).get("interpolation") or "linear"
    image, exact = onto_grid(image, affine, shape, interpolation)
    image = image.recorded("to_original_grid", shape=list(shape), affine=affine.tolist(),
                           interpolation=None if exact else interpolation, exact=exact)
    if mask is not None:
        mask, _ = onto_grid(mask, affine, shape, "nearest")
    return image, mask, {"grid": "original", "exact": exact, "shape": list(shape),
                         "interpolation": None if exact else interpolation}
