"""The volume geometry of a DICOM image's frames, checked the way dcm2niix and
dicom2nifti check it:

* slices are ordered by the projection of ImagePositionPatient (IPP) on the slice normal
  (row x column cosine of ImageOrientationPatient, IOP), never by InstanceNumber or file
  name, which scanners and anonymizers get wrong;
* the slice step is measured from the positions; SliceThickness is the excitation
  thickness, which differs from the spacing for gapped or overlapping acquisitions;
* slices that are not one clean volume (missing slice, uneven spacing, mixed orientation,
  duplicate positions, gantry tilt) raise a DicomSeriesError naming the problem, instead
  of being stacked into a silently wrong volume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DicomSeriesError, shown_items
from .dicom_frames import Frame, floats, optional_float

# Tolerances, chosen like dcm2niix/dicom2nifti: scanners write positions with ~1e-5 mm
# rounding, a missing slice or a real gap is of the order of the spacing itself.
SPACING_RTOL = 1e-2  # relative deviation of one gap from the median gap
SPACING_ATOL_MM = 0.05  # or absolute deviation, whichever is larger
ORIENTATION_ATOL = 1e-3  # difference of direction cosines between slices
DUPLICATE_MM = 1e-3  # two slices closer than this along the normal are "the same"
TILT_SINE_TOL = 1e-2  # ~0.6 degrees between the slice step and the slice normal


def slice_axes(where: Path, frames: list[Frame]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row, column and slice-normal vectors (LPS) shared by all frames, or an error."""
    iop = frames[0].orientation
    if any(not np.allclose(f.orientation, iop, atol=ORIENTATION_ATOL) for f in frames):
        n_orient = len({tuple(np.round(f.orientation, 3)) for f in frames})
        raise DicomSeriesError(
            where, f"mixed orientation: {len(frames)} slices in {n_orient} different "
            "ImageOrientationPatient planes (e.g. a 3-plane localizer)",
            hint="split the slices into one folder per orientation",
        )
    row_cosine = iop[:3] / np.linalg.norm(iop[:3])
    col_cosine = iop[3:] / np.linalg.norm(iop[3:])
    return row_cosine, col_cosine, np.cross(row_cosine, col_cosine)


def volume_geometry(where: Path, frames: list[Frame]) -> tuple[list[Frame], np.ndarray, dict]:
    """Sorted frames, the LPS affine and geometry facts, or a DicomSeriesError."""
    row_cosine, col_cosine, normal = slice_axes(where, frames)
    distances = np.array([f.position @ normal for f in frames])
    order = np.argsort(distances, kind="stable")
    frames = [frames[k] for k in order]
    distances = distances[order]
    row_spacing, col_spacing = frames[0].pixel_spacing or (1.0, 1.0)
    if not (np.isfinite([row_spacing, col_spacing]).all() and row_spacing > 0
            and col_spacing > 0):
        # A zero or negative pixel size gives a singular or mirrored grid: refuse it here,
        # naming the tag, rather than as a vague "degenerate affine" steps later.
        raise DicomSeriesError(
            where, f"PixelSpacing {_mm(np.array([row_spacing, col_spacing]))} of "
            f"{frames[0].path.name} is not a positive size in mm",
            hint="the header is damaged; fix PixelSpacing or re-export the series")
    facts: dict[str, Any] = {"pixel_spacing_known": frames[0].pixel_spacing is not None}

    if len(frames) == 1:
        # One slice: nothing to measure. dcm2niix (nii_dicom.cpp, readDICOMx) takes
        # SpacingBetweenSlices when it is positive ("depending on vendor, kZThick may or
        # may not include a slice gap"), else SliceThickness, else 1 mm.
        size, source = _slab_size(frames[0])
        step = normal * size
        facts.update(slice_spacing=size, slice_spacing_source=source)
    else:
        _check_positions(where, frames, distances, normal)
        step = (frames[-1].position - frames[0].position) / (len(frames) - 1)
        facts.update(slice_spacing=float(distances[-1] - distances[0]) / (len(frames) - 1),
                     slice_spacing_source="ImagePositionPatient")
    lps = np.eye(4)
    lps[:3, 0] = row_cosine * col_spacing  # i runs along a row: next column
    lps[:3, 1] = col_cosine * row_spacing  # j runs down a column: next row
    lps[:3, 2] = step
    lps[:3, 3] = frames[0].position
    return frames, lps, facts


def _slab_size(frame: Frame) -> tuple[float, str]:
    """The slab thickness of a lone slice and the attribute it came from."""
    spacing = _spacing_between_slices(frame)
    if spacing is not None and spacing > 0:
        return spacing, "SpacingBetweenSlices"
    if frame.thickness is not None and frame.thickness > 0:
        return float(frame.thickness), "SliceThickness"
    return 1.0, "default 1.0"  # dcm2niix too: "Unable to determine slice thickness"


def _spacing_between_slices(frame: Frame) -> float | None:
    """SpacingBetweenSlices of the frame: in its Pixel Measures functional group (per
    frame, then shared) for enhanced files, at the top level for classic ones."""
    places = []
    if frame.item is not None:
        shared = frame.dataset.get("SharedFunctionalGroupsSequence")
        for source in (frame.item, shared[0] if shared else None):
            measures = source.get("PixelMeasuresSequence") if source is not None else None
            if measures:
                places.append(measures[0])
    places.append(frame.dataset)
    for place in places:
        value = optional_float(place.get("SpacingBetweenSlices"))
        if value is not None:
            return value
    return None


def _check_positions(where: Path, frames, distances: np.ndarray, normal: np.ndarray) -> None:
    gaps = np.diff(distances)
    n_distinct = 1 + int(np.count_nonzero(gaps > DUPLICATE_MM))
    if n_distinct < len(frames):
        raise DicomSeriesError(
            where, f"{len(frames)} slices at only {n_distinct} distinct positions "
            "(duplicate slices)", hint="remove the duplicated files",
        )
    problems = []
    mean_gap = (distances[-1] - distances[0]) / (len(frames) - 1)
    typical = float(np.median(gaps))
    tolerance = max(SPACING_ATOL_MM, SPACING_RTOL * typical)
    if (np.abs(gaps - typical) > tolerance).any():
        # Gaps that are whole multiples of the smallest one: slices are missing.
        base = float(gaps.min())
        ratios = gaps / base
        if np.allclose(ratios, np.round(ratios), atol=0.1) and (ratios > 1.5).any():
            missing = int(np.round(ratios).sum() - ratios.size)
            problems.append(
                f"missing slice: {missing} slice(s) missing from a stack spaced "
                f"{base:.4g} mm (gaps of {_mm(gaps[ratios > 1.5])} mm)"
            )
        else:
            problems.append(
                f"uneven spacing: gaps between slices range from {gaps.min():.4g} to "
                f"{gaps.max():.4g} mm (mean {mean_gap:.4g} mm)"
            )
    travel = frames[-1].position - frames[0].position
    sine = np.linalg.norm(np.cross(travel / np.linalg.norm(travel), normal))
    if sine > TILT_SINE_TOL:
        problems.append(
            f"gantry tilt or sheared stack: slices move {np.degrees(np.arcsin(min(sine, 1))):.2f} "
            "degrees off the slice normal"
        )
    if problems:
        raise DicomSeriesError(
            where, "; ".join(problems),
            hint="the slices do not form one regular volume; "
            "check the series for missing files or resample it with dcm2niix",
        )


def _mm(values: np.ndarray) -> str:
    return shown_items((f"{v:.4g}" for v in values), 5)


def planar_geometry(frame: Frame) -> tuple[np.ndarray, dict]:
    """Projection images (CR, DX, MG, SC) have no patient frame: spacing only, in mm at
    the patient where the header says it (``projection_pixel_spacing``)."""
    spacing, facts = projection_pixel_spacing(frame.dataset)
    if spacing is None:
        return np.eye(4), {"pixel_spacing_known": False, "pixel_spacing_source": None}
    # Row spacing first (PS3.3 10.7.1.3): i runs along a row, its step is the column spacing.
    return np.diag([spacing[1], spacing[0], 1.0, 1.0]), {"pixel_spacing_known": True, **facts}


def projection_pixel_spacing(dataset) -> tuple[np.ndarray | None, dict[str, Any]]:
    """(row spacing, column spacing) in mm of a projection image and facts about it
    (``pixel_spacing_source``, ``pixel_spacing_at``), or None: PS3.3 10.7.1.1 as
    cornerstone3D applies it (``calculateRadiographicPixelSpacing`` in
    core/src/utilities/getPixelSpacingInformation.ts) and GDCM names its cases
    (gdcmSpacing.h: DETECTOR, MAGNIFIED "IHE Mammo", CALIBRATED, UNKNOWN); PixelSpacing
    before ImagerPixelSpacing, as highdicom's legacy conversion (legacy/sop.py) takes them.

    * PixelSpacing is the size in the patient: calibrated where it differs from the
      ImagerPixelSpacing or NominalScannedPixelSpacing measured, or where a
      PixelSpacingCalibrationType says how; unknown whether it was where neither is given.
    * ImagerPixelSpacing is measured at the detector and "shall never be adjusted" for
      geometric magnification (C.8.11.4); a PixelSpacing equal to it was not corrected
      either (10.7.1.1). An EstimatedRadiographicMagnificationFactor above 1 (SID/SOD,
      C.8.11.5) brings it to the patient, as the IHE Mammography Image profile requires
      of displays that measure: ImagerPixelSpacing / factor. Else it stays the size at
      the detector.
    * NominalScannedPixelSpacing: a digitized film's pixels, on the film.

    One case differs from cornerstone3D: a PixelSpacing unlike the ImagerPixelSpacing
    together with a magnification factor. cornerstone3D then takes ImagerPixelSpacing /
    factor; here the PixelSpacing, which 10.7.1.1 says was corrected or calibrated (it
    is usually that quotient already, as in mammograms that state both).
    """
    pixel = _positive_pair(dataset, "PixelSpacing")
    imager = _positive_pair(dataset, "ImagerPixelSpacing")
    scanned = _positive_pair(dataset, "NominalScannedPixelSpacing")
    measured = imager if imager is not None else scanned
    calibration = str(dataset.get("PixelSpacingCalibrationType", "") or "").strip()
    if pixel is not None and (measured is None or calibration
                              or not np.allclose(pixel, measured, rtol=1e-6, atol=0)):
        known = calibration or measured is not None
        return pixel, {"pixel_spacing_source": "PixelSpacing",
                       "pixel_spacing_at": "patient" if known else "unknown",
                       **({"pixel_spacing_calibration": calibration} if calibration else {})}
    source = "PixelSpacing" if pixel is not None else None  # equal to the one measured
    if imager is not None:
        facts = {"pixel_spacing_source": source or "ImagerPixelSpacing"}
        factor = optional_float(dataset.get("EstimatedRadiographicMagnificationFactor"))
        if factor is not None and np.isfinite(factor) and factor > 1:
            return imager / factor, {**facts, "pixel_spacing_at": "patient",
                                     "magnification_factor": factor}
        return imager, {**facts, "pixel_spacing_at": "detector"}
    if scanned is not None:
        return scanned, {"pixel_spacing_source": source or "NominalScannedPixelSpacing",
                         "pixel_spacing_at": "film"}
    return None, {}


def _positive_pair(dataset, keyword: str) -> np.ndarray | None:
    values = floats(dataset.get(keyword), 2)
    return values if values is not None and np.all(values > 0) else None
