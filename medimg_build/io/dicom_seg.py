"""DICOM Segmentation objects (SEG) into an integer label map, read with highdicom.

Conventions of the result (those of every MedicalImage, see ``image.py``):

* one label map, ``uint8`` (``uint16`` above 255 segments): a voxel holds the
  ``SegmentNumber`` of the segment covering it, 0 where none does. Segments that overlap
  are refused (``DicomSegError``): a label map cannot hold two labels in one voxel, and
  silently letting one win would change the other's volume.
* array ``(i, j, k)``, Fortran-ordered; ``i`` runs along a row, ``j`` down the rows and
  ``k`` along the slice normal ``row x column`` -- the axis order the DICOM reader gives
  the source series, so a SEG made on a CT lands voxel for voxel on the CT as read here.
* affine in RAS+ mm. highdicom's ``Volume`` indexes ``(slice, row, column)`` and maps to
  LPS; both are converted here, exactly (a permutation and two sign flips).
* the grid spans the slices the SEG has frames for: highdicom omits empty frames by
  default, so a SEG of one organ may cover fewer slices than its CT (slices missing
  between two present ones are filled with 0). ``place_on_grid`` puts such a mask on
  its image's full grid.
* ``meta["segments"]`` maps each label value (a string, like a recipe's
  ``labels.segmentation.classes``) to its label, description, category and type codes
  (``"SCHEME:VALUE"`` strings plus their meanings) and algorithm type.

highdicom is imported only when a SEG is read: it costs ~0.3 s at import.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ..errors import GeometryError, ImageReadError
from ..geometry import LPS_TO_RAS
from ..image import MedicalImage
from ..limits import check_size
from .dicom_files import refuse_deflate_bomb

SEGMENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"

# Facts kept in meta["dicom"] (no patient identifiers: the SEG repeats the patient module).
FACT_KEYWORDS = (
    "Modality", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber",
    "SeriesDescription", "FrameOfReferenceUID", "SegmentationType", "Manufacturer",
    "ManufacturerModelName", "SoftwareVersions", "ContentLabel", "Rows", "Columns",
    "NumberOfFrames",
)


class DicomSegError(ImageReadError):
    """A DICOM SEG that cannot become one label map (overlaps, fractions, no 3D grid)."""


def is_segmentation(dataset: Dataset) -> bool:
    """The dataset (or its file meta) names the Segmentation Storage SOP class."""
    file_meta = getattr(dataset, "file_meta", None) or Dataset()
    uid = dataset.get("SOPClassUID") or file_meta.get("MediaStorageSOPClassUID")
    return str(uid or "") == SEGMENTATION_SOP_CLASS


def read_dicom_seg(path: str | Path) -> MedicalImage:
    """One DICOM SEG file as a label map (see the module docstring for conventions)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        refuse_deflate_bomb(path, BytesIO(data))
        dataset = pydicom.dcmread(BytesIO(data))
    except ImageReadError:
        raise
    except Exception as error:  # any parse failure: not a readable SEG file
        raise ImageReadError(path, f"cannot read DICOM file ({type(error).__name__}: "
                             f"{error})", hint="the file may be truncated or corrupt") from error
    return segmentation_image(path, dataset)


def segmentation_image(path: Path, dataset: Dataset) -> MedicalImage:
    """A parsed SEG dataset as a label map; ``path`` names it in errors and provenance.

    The DICOM reader calls this with the dataset it has already parsed, so that a SEG
    reached through ``read_image`` is not read twice."""
    import highdicom as hd  # here: only SEG reads pay for the import

    if not is_segmentation(dataset):
        raise DicomSegError(path, f"not a DICOM Segmentation (SOP class "
                            f"{dataset.get('SOPClassUID', 'missing')})",
                            hint="read image series with read_image")
    seg = hd.seg.Segmentation.from_dataset(dataset, copy=False)
    kind = str(seg.segmentation_type.value)
    if kind == "FRACTIONAL":
        raise DicomSegError(path, "FRACTIONAL segmentation: its values are probabilities, "
                            "not labels", hint="threshold it into a BINARY SEG first")
    if seg.coordinate_system is None or seg.coordinate_system.value != "PATIENT":
        raise DicomSegError(path, "segmentation is not in the patient coordinate system "
                            "(slide microscopy?)", hint="only radiology SEGs are read")
    numbers = [int(n) for n in seg.segment_numbers]
    dtype = np.uint8 if max(numbers, default=0) < 256 else np.uint16
    volume = _volume(path, seg, dtype)

    # highdicom: array[slice, row, column] -> LPS. Ours: array[i=column, j=row, k=slice]
    # -> RAS. Reversing the axes is a free view, Fortran-ordered when highdicom's is C.
    pixels = volume.array
    lps = volume.affine[:, [2, 1, 0, 3]]
    normal = np.cross(lps[:3, 0], lps[:3, 1])
    if lps[:3, 2] @ normal < 0:
        # k along row x column, as the DICOM reader stacks slices (highdicom may stack
        # them the other way, e.g. head first for a feet-first CT).
        lps[:3, 3] += lps[:3, 2] * (pixels.shape[0] - 1)
        lps[:3, 2] *= -1
        pixels = pixels[::-1]
    array = np.asfortranarray(pixels.transpose(2, 1, 0))
    segments = {str(n): _describe(seg.get_segment_description(n)) for n in numbers}
    meta = {
        "format": "dicom-seg",
        "source_files": [str(path.resolve())],
        "space": "patient",
        "modality": "SEG",
        "segments": segments,
        "dicom": _facts(dataset),
        "patient_id": str(dataset.get("PatientID", "")) or None,
    }
    image = MedicalImage(array=array, affine=LPS_TO_RAS @ lps, spatial_ndim=3, meta=meta)
    return image.recorded("read", reader="dicom-seg", path=str(path), segmentation_type=kind,
                          n_segments=len(numbers), n_frames=int(dataset.get("NumberOfFrames", 1)))


def _volume(path: Path, seg: Any, dtype: type):
    """highdicom's combined label volume, its failures as one-line errors. The volume
    spans the frames' positions, empty slices between them included: two frames 100 m
    apart make a volume of 100,000 slices. Its size is checked from the geometry first."""
    try:
        geometry = seg.get_volume_geometry()
        if geometry is not None:  # None: get_volume below says why
            check_size(path, geometry.spatial_shape, "segmentation volume")
        return seg.get_volume(combine_segments=True, relabel=False, dtype=dtype)
    except RuntimeError as error:
        if "overlap" in str(error).lower():
            raise DicomSegError(path, "segments overlap, so they cannot form one label map",
                                hint="split the SEG into one mask per segment, or read "
                                "it with highdicom (get_volume(combine_segments=False))"
                                ) from error
        raise DicomSegError(path, f"frames do not form a 3D grid ({error})",
                            hint="the SEG must describe a regularly spaced volume") from error
    except ValueError as error:
        raise DicomSegError(path, f"frames do not form a 3D grid ({error})",
                            hint="the SEG must describe a regularly spaced volume") from error


def _describe(item: Any) -> dict[str, Any]:
    """One SegmentSequence item as plain strings (JSON-ready for stores and tables)."""
    described: dict[str, Any] = {
        "label": str(item.get("SegmentLabel", "")),
        "algorithm_type": str(item.get("SegmentAlgorithmType", "")),
    }
    if item.get("SegmentDescription"):
        described["description"] = str(item.SegmentDescription)
    for key, keyword in (("category", "SegmentedPropertyCategoryCodeSequence"),
                         ("type", "SegmentedPropertyTypeCodeSequence")):
        if item.get(keyword):
            code = item.get(keyword)[0]
            described[key] = f"{code.CodingSchemeDesignator}:{code.CodeValue}"
            described[f"{key}_meaning"] = str(code.get("CodeMeaning", ""))
    return described


def segmentation_classes(image: MedicalImage) -> dict[str, str]:
    """A recipe's ``labels.segmentation.classes`` for a SEG: {"0": "background",
    "<number>": <segment label>} (the description when the label is empty)."""
    classes = {"0": "background"}
    for value, segment in image.meta.get("segments", {}).items():
        classes[value] = segment["label"] or segment.get("description", "") or f"segment {value}"
    return classes


def _facts(dataset: Dataset) -> dict[str, Any]:
    facts = {}
    for keyword in FACT_KEYWORDS:
        value = dataset.get(keyword)
        if value is not None and str(value).strip():
            facts[keyword] = int(value) if isinstance(value, int) else str(value)
    referenced = dataset.get("ReferencedSeriesSequence") or []
    facts["ReferencedSeriesInstanceUID"] = [str(s.SeriesInstanceUID) for s in referenced
                                            if "SeriesInstanceUID" in s]
    return facts


def place_on_grid(mask: MedicalImage, image: MedicalImage,
                  tolerance_mm: float = 0.01) -> MedicalImage:
    """A SEG label map covering part of ``image``'s slices on ``image``'s full grid.

    Every mask voxel centre must fall, within ``tolerance_mm``, on a voxel centre of the
    image (same axes and spacing, whole-voxel offset) and inside it; voxels the SEG has no
    frame for become 0. The result has the image's shape, axis order and affine."""
    where = mask.meta.get("source_files", [None])[0]
    # Mask index -> image index; on a shared lattice this is a signed permutation plus
    # a whole-voxel shift.
    to_image = np.linalg.inv(image.affine) @ mask.affine
    linear = np.round(to_image[:3, :3])
    shift = np.round(to_image[:3, 3])
    shape = np.array(mask.spatial_shape)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape])).reshape(3, -1).T
    exact = corners @ to_image[:3, :3].T + to_image[:3, 3]
    snapped = corners @ linear.T + shift
    error_mm = np.abs((exact - snapped) @ image.affine[:3, :3].T).max()
    is_permutation = ((np.abs(linear).sum(axis=0) == 1).all()
                      and (np.abs(linear).sum(axis=1) == 1).all())
    if not is_permutation or error_mm > tolerance_mm:
        raise GeometryError(where, f"SEG voxels are not on the image grid (off by "
                            f"{error_mm:.3g} mm)", hint="the SEG must be made on this series")
    lo, hi = snapped.min(axis=0).astype(int), snapped.max(axis=0).astype(int)
    if (lo < 0).any() or (hi >= np.array(image.spatial_shape)).any():
        raise GeometryError(where, f"SEG covers voxels {lo.tolist()}..{hi.tolist()}, outside "
                            f"the image grid {image.spatial_shape}",
                            hint="the referenced series is missing slices the SEG has frames for")
    # Reorder the mask's axes into the image's, then paste it at its offset.
    axes = [int(np.flatnonzero(linear[:, a])[0]) for a in range(3)]  # mask axis a -> image axis
    array = mask.array
    for a in range(3):
        if linear[axes[a], a] < 0:
            array = np.flip(array, axis=a)
    array = np.transpose(array, np.argsort(axes))
    full = np.zeros(image.spatial_shape, dtype=mask.array.dtype, order="F")
    full[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = array
    placed = mask.replace(array=full, affine=image.affine.copy())
    return placed.recorded("place_on_grid", offset=lo.tolist(), image_shape=list(image.spatial_shape))

