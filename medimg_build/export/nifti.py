"""Cases as NIfTI-1 files: ``--to nifti`` (and the files of ``--to nnunet``).

Geometry. A store's affine maps voxel indices ``(i, j, k)`` to RAS+ mm, which is what
NIfTI's sform and qform mean (NIfTI-1 header: "x increases to the Right, y to the
Anterior, z to the Superior"; nibabel's ``Nifti1Image(array, affine)`` takes it as is).
Both are written (a sheared affine, which the qform cannot hold, with a warning), with
code 1 "scanner" (NIFTI_XFORM_SCANNER_ANAT, dcm2niix's choice) for images in a patient
frame, and 2 "aligned" (nibabel's default for a new image) for pictures
(``MedicalImage.is_picture``: a PNG, a radiograph without ImageOrientationPatient),
whose frame is their own; ``xyzt_units`` is mm, or "unknown" for a picture whose pixel
size the source did not know (``spacing_unit`` "pixel"). The sform holds float32: the
affine comes back within about 1e-5 mm of a few hundred mm.

History. The case's record (its steps in the store, what the export did) goes into a
JSON sidecar ``<case>.json`` and into the image file's header as a NIfTI "comment"
extension (code 6, ``io.nifti.EXPORT_ECODE``), under ``io.nifti.EXPORT_KEY``: so
``medimg_build.read_image`` gives the steps back (as one ``exported`` step).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..image import MedicalImage
from ..io.nifti import EXPORT_ECODE, EXPORT_KEY
from ..provenance import to_jsonable

SUFFIX = ".nii.gz"
MASK_SUFFIX = "_mask"  # --to nifti: <case>_mask.nii.gz beside <case>.nii.gz


@dataclass(frozen=True)
class NiftiFrame:
    """What a file's header says of its grid: the sform/qform code (nibabel's names for
    NIFTI_XFORM_SCANNER_ANAT and NIFTI_XFORM_ALIGNED_ANAT) and the xyz unit."""
    code: str
    units: str


PATIENT_FRAME = NiftiFrame("scanner", "mm")
PICTURE_IN_MM = NiftiFrame("aligned", "mm")
# NIFTI_UNITS_UNKNOWN (0): the "spacing" of such a picture counts source pixels.
PICTURE_IN_PIXELS = NiftiFrame("aligned", "unknown")


def frame_of(image: MedicalImage) -> NiftiFrame:
    if not image.is_picture:
        return PATIENT_FRAME
    return PICTURE_IN_MM if image.spacing_unit == "mm" else PICTURE_IN_PIXELS
# A qform this far (mm per voxel step) from the sform is not float32 rounding: a shear.
SHEAR_TOLERANCE = 1e-3


def qform_error(affine: np.ndarray) -> float:
    """How far (mm per voxel step) the qform written for ``affine`` lies from it: float32
    rounding for any rotation with zooms; more for a sheared affine, which a quaternion
    cannot hold (nibabel's ``set_qform`` keeps the closest rigid part)."""
    header = nib.Nifti1Header()
    header.set_qform(affine, code=PATIENT_FRAME.code)
    return float(np.abs(header.get_qform() - affine)[:3, :3].max())


def nifti_array(image: MedicalImage) -> np.ndarray:
    """The voxels in NIfTI's axis order: ``(i, j, k[, c])``, a 2D image with channels
    given its unit ``k`` axis so that the channels stay the 4th (NIfTI's t) axis.
    NIfTI-1 has no bool or float16 voxels: they widen losslessly."""
    array = image.array
    if image.spatial_ndim == 2 and image.has_channels:
        array = array[:, :, np.newaxis, :]
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    return array


def nifti_image(array: np.ndarray, affine: np.ndarray, frame: NiftiFrame,
                record: dict[str, Any] | None) -> nib.Nifti1Image:
    """``array`` (NIfTI axis order) with ``affine`` as its sform and qform, in
    ``frame``, and ``record`` as the header's export extension."""
    image = nib.Nifti1Image(array, affine)
    header = image.header
    header.set_sform(affine, code=frame.code)
    header.set_qform(affine, code=frame.code)  # the closest rigid one, for qform-only readers
    header.set_xyzt_units(xyz=frame.units)
    if record is not None:
        text = json.dumps({EXPORT_KEY: to_jsonable(record)}, sort_keys=True)
        header.extensions.append(nib.nifti1.Nifti1Extension(EXPORT_ECODE, text.encode()))
    return image


def write_image(image: MedicalImage, path: Path, frame: NiftiFrame,
                record: dict[str, Any] | None = None) -> Path:
    nib.save(nifti_image(nifti_array(image), image.affine, frame, record), path)
    return path


def write_sidecar(record: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(to_jsonable(record), indent=2, sort_keys=True) + "\n",
                    encoding="utf-8")
    return path
