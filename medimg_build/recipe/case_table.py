"""One case's row of the case table: identity, geometry before and after, sources,
intensity parameters, steps, acquisition facts -- and nothing that identifies a patient.

Every text of the row passes through ``privacy.scrub`` with the identifying values of
the case's DICOM headers, and every path becomes relative to the source folder
(``recipe/paths.py``), so that neither headers nor the user's folder names leak into a
store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ..image import MedicalImage
from ..io.raster import file_grid
from ..labels.splits import SplitPlan
from ..privacy import identifying_values_of_files, pseudonymize, scrub
from .paths import stored_value
from .sections import RecipeSections

# DICOM acquisition facts a researcher filters on -> table column. Descriptors in the
# PS3.15 profile (series description, protocol, contrast agent) are kept under its
# Clean Descriptors Option: scrubbed like every other text of the row.
ACQUISITION_COLUMNS = {
    "Manufacturer": "manufacturer", "ManufacturerModelName": "model", "KVP": "kvp",
    "MagneticFieldStrength": "field_strength", "SliceThickness": "slice_thickness",
    "ConvolutionKernel": "convolution_kernel", "SeriesDescription": "series_description",
    "ProtocolName": "protocol_name", "BodyPartExamined": "body_part",
    "ContrastBolusAgent": "contrast_agent",
    # The image part of a series that dcm2niix writes as several images (io/dicom_parts).
    "ImageKind": "image_kind", "EchoNumber": "echo",
}


def case_row(*, case_id: str, raw: MedicalImage, image: MedicalImage, patient: str,
             image_path: Path, mask_path: Path | None, mask_files: list[Path],
             extra: dict[str, Any],
             recipe: RecipeSections, splits: SplitPlan, source_dir: Path,
             key: bytes) -> dict[str, Any]:
    files = [Path(f) for f in raw.meta.get("source_files", [image_path])]
    identifiers = case_identifiers(raw)
    patient_pseudonym = pseudonymize(str(patient), key)
    # A DICOM series is named by its folder: file names there are often SOP UIDs. A file
    # is named as found in the source, not as the reader resolved it (a link's target).
    listed = [image_path] if raw.meta.get("format") == "dicom" else \
        [image_path if Path(f) == Path(image_path).resolve() else f for f in files]
    files += mask_files  # every file of a mask series or a combined label map
    if mask_path is not None:
        listed.append(mask_path)
    dicom = raw.meta.get("dicom", {})
    row = {
        "case_id": case_id,
        "patient_id": patient_pseudonym,
        "split": splits.split_of(patient_pseudonym),
        "modality": raw.meta.get("modality") or recipe.modality,
        "organ": recipe.organ,
        **_original_grid(raw),
        "harmonized_shape": list(image.array.shape),
        "harmonized_spacing": [round(s, 6) for s in image.spacing],
        # Pictures without a known pixel size keep spacings in pixels, not mm.
        "spacing_unit": raw.spacing_unit,
        "dtype": str(image.array.dtype),
        "source_files": listed,
        "n_source_files": len(files),
        "source_sha256": [sha256_of(f) for f in files],
        "intensity": next((s.params for s in reversed(image.history)
                           if s.name.startswith("normalize")), {}),
        "steps": [step.to_dict() for step in image.history],
        **{column: dicom_text(dicom[k]) for k, column in ACQUISITION_COLUMNS.items()
           if k in dicom},
        **{f"{name}_uid": pseudonymize(dicom[k], key)
           for k, name in (("StudyInstanceUID", "study"), ("SeriesInstanceUID", "series"))
           if dicom.get(k)},
        **extra,
    }
    # The case id was made safe at discovery (sources.py), and must match the store's.
    return {"case_id": case_id,
            **_private({k: v for k, v in row.items() if k != "case_id"}, identifiers, key,
                       source_dir)}


def dicom_text(value: Any) -> Any:
    """A multi-valued text attribute as one text, its values joined by a backslash as
    DICOM encodes them (PS3.5 6.4) and as dcm2niix writes them in its JSON sidecar
    (ConvolutionKernel "Br38f\\3" for TotalSegmentator's CT): as a list it was another
    column type than a single kernel ("STANDARD"), and two stores' cases.parquet files
    could not be read together (DuckDB: "can't be cast to VARCHAR[]")."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return "\\".join(value)
    return value


def _original_grid(raw: MedicalImage) -> dict[str, Any]:
    """Shape, spacing, orientation and affine of the source file. A JPEG decoded at a
    reduced DCT scale (``io.raster``) holds fewer pixels than its file: it is described
    as the file is (``file_grid``), as when it is decoded whole -- in mm where its table
    gave the pixel size."""
    spatial, affine = file_grid(raw)
    shape = [*spatial, *raw.array.shape[raw.spatial_ndim:]]
    spacing = np.linalg.norm(affine[:3, :raw.spatial_ndim], axis=0)
    return {"original_shape": [int(n) for n in shape],
            "original_spacing": [round(float(s), 6) for s in spacing],
            "original_orientation": raw.orientation,
            "original_affine": np.round(affine, 6).tolist()}


def case_identifiers(raw: MedicalImage) -> set[str]:
    """Identifying values of a case's DICOM headers (empty for other formats)."""
    if raw.meta.get("format") != "dicom":
        return set()
    found = identifying_values_of_files(raw.meta.get("source_files", [])[:1])
    if raw.meta.get("patient_id"):
        found.add(str(raw.meta["patient_id"]))
    return found


def _private(value: Any, identifiers: set[str], key: bytes, source_dir: Path) -> Any:
    """Every text in ``value`` with its paths relative to the source folder
    (``paths.stored_value``: steps and errors name files too) and scrubbed."""
    if isinstance(value, dict):
        return {k: _private(v, identifiers, key, source_dir) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_private(v, identifiers, key, source_dir) for v in value]
    if isinstance(value, (str, Path)):
        return scrub(stored_value(value, source_dir), identifiers, key)
    return value


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
