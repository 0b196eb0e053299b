"""4D DICOM series (fMRI time points, diffusion directions, perfusion phases).

When several frames share a slice position, the series is a stack of volumes. It comes
out as dcm2niix writes it: the volumes along a trailing channel axis, the spatial grid
from the first volume, and the frames at each slice position ordered by
TemporalPositionIdentifier, then InstanceNumber, then AcquisitionTime (enhanced files:
the file's InstanceNumber, then DimensionIndexValues last index first, then
TemporalPositionIndex, then frame number).
dcm2niix sorts classic files by (SeriesNumber, InstanceNumber) and breaks ties by
AcquisitionTime (nii_dicom_batch.cpp, fillTDCMsort / compareTDCMsort); it never sorts by
AcquisitionNumber, a counter vendors reuse: Philips writes several AcquisitionNumbers
within one volume of a DTI, and keying on it shuffles the volumes slice by slice.
Every slice position must hold the same number of frames, and per-volume labels (time
point, b-value, gradient) must agree across positions: otherwise a frame is missing or
duplicated, and stacking would shift the volumes against each other silently, so the
series is refused.

Philips diffusion series carry a derived isotropic ("trace") volume: b > 0 with a zero
gradient. It is not a diffusion direction, so it is left out of the DWI as dcm2niix
does (nii_saveDTI: Philips and isADCnotDTI, unless fewer than two volumes would remain);
``split_volumes(..., trace=True)`` gives that volume alone.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from ..errors import DicomSeriesError, shown_items
from .dicom_frames import Frame, floats, optional_float
from .dicom_geometry import DUPLICATE_MM, slice_axes, volume_geometry

# Frames stacked at one slice position sit at the very same IPP (written from the same
# prescription); a larger in-plane shift means a moving table or another field of view.
IN_PLANE_ATOL_MM = 0.01

# Private diffusion tags of GE (b-value first in 0043,xx39; gradient in 0019,xxBB-BD) and
# Siemens (0019,xx0C b-value, 0019,xx0E gradient), read when the public ones are absent.
GE_BVALUE = (0x0043, 0x1039)
GE_GRADIENT = ((0x0019, 0x10BB), (0x0019, 0x10BC), (0x0019, 0x10BD))
SIEMENS_BVALUE = (0x0019, 0x100C)
SIEMENS_GRADIENT = (0x0019, 0x100E)


@dataclass
class Volumes:
    """The frames of a 4D series, volume after volume, and what the volumes are."""

    frames: list[Frame]  # volume-major; slices in spatial order within each volume
    n_volumes: int
    lps: np.ndarray  # affine of the first volume
    geometry: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)  # merged into meta["dicom"]


@dataclass(frozen=True)
class _Label:
    """What a frame says about the volume it belongs to, and its rank within a position."""

    temporal: int | None
    instance: int | None
    acquisition_time: float | None  # seconds into the day (AcquisitionTime)
    b_value: float | None
    gradient: tuple[float, float, float] | None
    # Enhanced files: DimensionIndexValues, last index first. dcm2niix sorts frames by
    # them in that order, so a Philips DTI whose b=0 frames carry gradient index 65 ends
    # with the b=0 volume, as dcm2niix writes it.
    dimensions: tuple[int, ...] = ()
    # Enhanced files: the file's InstanceNumber (``instance`` is then the frame number).
    # dcm2niix sorts files by it before their frames, which orders a series written as
    # one multi-frame file per volume (Siemens XA).
    file_instance: int | None = None
    # AcquisitionDate (day number): a series that runs past midnight starts again at
    # 00:00 in AcquisitionTime, so the day sorts before the time.
    acquisition_day: int | None = None

    def sort_key(self) -> tuple:
        missing = -(2**62)  # absent numbers sort first, like dcm2niix's zero default
        return (
            missing if self.file_instance is None else self.file_instance,
            self.dimensions,
            missing if self.temporal is None else self.temporal,
            missing if self.instance is None else self.instance,
            missing if self.acquisition_day is None else self.acquisition_day,
            missing if self.acquisition_time is None else self.acquisition_time,
        )

    def volume_identity(self) -> tuple:
        # Time point and diffusion encoding belong to the volume, so they must be equal
        # across its slices; InstanceNumber and AcquisitionTime may run per slice.
        gradient = None if self.gradient is None else tuple(np.round(self.gradient, 4))
        return (self.temporal, self.b_value, gradient)

    def is_isotropic_trace(self) -> bool:
        """b > 0 without a direction: Philips' derived trace/ADC volume (dcm2niix's
        isADCnotDTI; an enhanced ISOTROPIC frame has no gradient at all)."""
        no_direction = self.gradient is None or not np.any(np.round(self.gradient, 4))
        return bool(self.b_value) and no_direction


def split_volumes(where: Path, frames: list[Frame], trace: bool = False) -> Volumes | None:
    """The volumes of a 4D series, or None when every frame has its own slice position.

    ``trace``: the Philips isotropic trace volume(s) alone instead of the series without
    them (refused when the series has none)."""
    _, _, normal = slice_axes(where, frames)
    distances = np.array([f.position @ normal for f in frames])
    order = np.argsort(distances, kind="stable")
    gaps = np.diff(distances[order])
    if not (gaps <= DUPLICATE_MM).any():
        if trace:
            raise _no_trace(where, "a 3D series")
        return None  # a plain 3D series: its geometry is checked as before
    groups = np.split(order, np.flatnonzero(gaps > DUPLICATE_MM) + 1)
    if len(groups) == 1:
        # One position, several frames: a single-slice time series (e.g. CT bolus
        # tracking) or copies of one slice. Neither is a volume.
        raise DicomSeriesError(
            where, f"{len(frames)} slices but no distinct positions: all at one place (a "
            "single-slice time series or duplicated files, not a volume)",
            hint="point at a volume, or read one of the files on its own",
        )
    if int(frames[0].dataset.get("SamplesPerPixel", 1) or 1) > 1:
        raise DicomSeriesError(
            where, f"colour 4D series ({len(frames)} frames at {len(groups)} positions): "
            "an image has only one channel axis", hint="split the volumes into one folder each",
        )
    stacks = [[frames[k] for k in group] for group in groups]
    _check_counts(where, stacks)
    labels = _keys_all_frames_give({id(f): _label(f) for f in frames})
    for stack in stacks:
        stack.sort(key=lambda f: labels[id(f)].sort_key())
        _check_stack(where, stack, labels)
    _check_same_volumes(where, stacks, labels)

    first_volume, lps, geometry = volume_geometry(where, [s[0] for s in stacks])
    by_first = {id(s[0]): s for s in stacks}
    stacks = [by_first[id(f)] for f in first_volume]  # the order volume_geometry chose
    volume_labels = [labels[id(f)] for f in stacks[0]]
    traces = isotropic_trace_volumes(str(frames[0].dataset.get("Manufacturer", "")),
                                     volume_labels)
    if trace and not traces:
        raise _no_trace(where, f"{len(volume_labels)} volumes, none of them b > 0 without a "
                        "gradient direction (or too few others to leave it out)")
    kept = traces if trace else [v for v in range(len(volume_labels)) if v not in traces]
    ordered = [stack[v] for v in kept for stack in stacks]
    facts = _volume_facts([volume_labels[v] for v in kept])
    if traces:
        facts["IsotropicTrace"] = "only" if trace else "left out"
    return Volumes(frames=ordered, n_volumes=len(kept), lps=lps, geometry=geometry,
                   facts=facts)


def _keys_all_frames_give(labels: dict[int, _Label]) -> dict[int, _Label]:
    """The labels without the order keys that only some frames carry.

    An absent number sorts first, so a TemporalPositionIdentifier (or InstanceNumber,
    AcquisitionTime) missing from one volume's files would move that volume to the front
    silently. Without the key the next one orders the volumes, and where none is left
    the frames tie and the series is refused as lacking the numbers that order it."""
    dropped = {}
    for name in ("temporal", "instance", "acquisition_day", "acquisition_time"):
        given = [getattr(label, name) is not None for label in labels.values()]
        if any(given) and not all(given):
            dropped[name] = None
    if not dropped:
        return labels
    return {key: replace(label, **dropped) for key, label in labels.items()}


def isotropic_trace_volumes(manufacturer: str, labels: list[_Label]) -> list[int]:
    """Indices of the volumes dcm2niix leaves out of a DWI (nii_dicom_batch.cpp,
    nii_saveDTI): Philips volumes with b > 0 and no gradient direction, unless fewer
    than two volumes would remain (a b=0 + trace pair, or an all-isotropic series)."""
    if "PHILIPS" not in manufacturer.upper():
        return []
    traces = [v for v, label in enumerate(labels) if label.is_isotropic_trace()]
    return traces if len(labels) - len(traces) >= 2 else []


def _no_trace(where: Path, what: str) -> DicomSeriesError:
    return DicomSeriesError(
        where, f"no isotropic trace volume to read: {what}",
        hint="read the series without asking for its trace")


def _check_counts(where: Path, stacks: list[list[Frame]]) -> None:
    counts = np.array([len(s) for s in stacks])
    typical = int(np.bincount(counts).argmax())
    odd = np.flatnonzero(counts != typical)
    if odd.size == 0:
        return
    shown = shown_items((f"slice {k + 1} holds {counts[k]}" for k in odd), 4)
    if typical == 1:  # a 3D series with a few slices twice, not a 4D one
        raise DicomSeriesError(
            where, f"{counts.sum()} slices at only {len(stacks)} distinct positions "
            f"(duplicate slices: {shown})", hint="remove the duplicated files",
        )
    raise DicomSeriesError(
        where, f"4D series with a missing or duplicated frame: {len(stacks)} slice "
        f"positions, most hold {typical} frames but {shown}",
        hint="a time point or diffusion direction is incomplete; re-export the series",
    )


def _check_stack(where: Path, stack: list[Frame], labels: dict[int, _Label]) -> None:
    """Frames at one position: same place in-plane, and each one a different volume."""
    positions = np.array([f.position for f in stack])
    shift = float(np.abs(positions - positions[0]).max())
    if shift > IN_PLANE_ATOL_MM:
        raise DicomSeriesError(
            where, f"frames at the same slice position are shifted in-plane by up to "
            f"{shift:.3g} mm (moving table or different fields of view)",
            hint="split the acquisitions into one folder each",
        )
    for a, b in pairwise(stack):
        key = labels[id(a)].sort_key()
        if key == labels[id(b)].sort_key() and a.index == b.index:
            raise DicomSeriesError(
                where, f"duplicated frame: {_name(a, where)} and {_name(b, where)} sit at the same "
                "position with the same temporal position, instance number and acquisition time",
                hint="remove the duplicated file (or the series lacks the numbers that order "
                "its volumes)",
            )


def _check_same_volumes(where: Path, stacks: list[list[Frame]],
                        labels: dict[int, _Label]) -> None:
    reference = [labels[id(f)].volume_identity() for f in stacks[0]]
    for k, stack in enumerate(stacks[1:], start=2):
        identity = [labels[id(f)].volume_identity() for f in stack]
        if identity != reference:
            v = next(i for i, (a, b) in enumerate(zip(identity, reference)) if a != b)
            raise DicomSeriesError(
                where, f"4D series with a missing or duplicated frame: volume {v + 1} is "
                f"{_describe(reference[v])} at slice 1 but {_describe(identity[v])} at "
                f"slice {k}", hint="a time point or diffusion direction is incomplete",
            )


def _describe(identity: tuple) -> str:
    temporal, b_value, gradient = identity
    parts = [f"time point {temporal}" if temporal is not None else ""]
    if b_value or (gradient is not None and any(gradient)):  # b=0 says nothing more
        parts.append(f"b={b_value or 0:g}")
        if gradient is not None:
            parts.append("gradient (" + ", ".join(f"{g:.4g}" for g in gradient) + ")")
    return " ".join(p for p in parts if p) or "unlabelled"


def _name(frame: Frame, where: Path) -> str:
    """The frame's file relative to the folder read (copies of one file name in two
    subfolders must read as two paths), and its frame number in a multi-frame file."""
    try:
        shown = frame.path.relative_to(where).as_posix()
    except ValueError:  # read from a list of files, not a folder
        shown = frame.path.name
    return shown + ("" if frame.index is None else f" frame {frame.index + 1}")


# -- what a frame says about its volume -------------------------------------------------------


def _label(frame: Frame) -> _Label:
    ds, item = frame.dataset, frame.item
    if item is not None:  # enhanced multi-frame: everything is per frame
        content = _first_item(item, "FrameContentSequence")
        b_value, gradient = _public_diffusion(_first_item(item, "MRDiffusionSequence"))
        if b_value is None:
            shared = ds.get("SharedFunctionalGroupsSequence")
            b_value, gradient = _public_diffusion(
                _first_item(shared[0], "MRDiffusionSequence") if shared else None)
        dimensions = content.get("DimensionIndexValues") if content else None
        if isinstance(dimensions, int):  # one dimension: pydicom gives a bare number
            dimensions = [dimensions]
        return _Label(temporal=_int(content.get("TemporalPositionIndex") if content else None),
                      instance=frame.index, acquisition_time=None, b_value=b_value,
                      gradient=gradient,
                      dimensions=tuple(int(v) for v in reversed(dimensions or [])),
                      file_instance=_int(ds.get("InstanceNumber")))
    b_value, gradient = _classic_diffusion(ds)
    day, seconds = acquisition_moment(ds)
    return _Label(
        temporal=_int(ds.get("TemporalPositionIdentifier")),
        instance=_int(ds.get("InstanceNumber")),
        acquisition_time=seconds,
        acquisition_day=day,
        b_value=b_value,
        gradient=gradient,
    )


def _first_item(dataset: Dataset | None, keyword: str) -> Dataset | None:
    if dataset is None or keyword not in dataset:
        return None
    sequence = dataset[keyword].value
    return sequence[0] if len(sequence) else None


def _public_diffusion(item: Dataset | None):
    if item is None:
        return None, None
    b_value = optional_float(item.get("DiffusionBValue"))
    direction = _first_item(item, "DiffusionGradientDirectionSequence")
    gradient = floats(direction.get("DiffusionGradientOrientation"), 3) if direction else None
    if gradient is None:
        gradient = floats(item.get("DiffusionGradientOrientation"), 3)
    return b_value, None if gradient is None else tuple(float(g) for g in gradient)


def _classic_diffusion(ds: Dataset):
    b_value, gradient = _public_diffusion(ds)
    if b_value is not None:
        return b_value, gradient
    if SIEMENS_BVALUE in ds and "SIEMENS" in str(ds.get("Manufacturer", "")).upper():
        direction = floats(_value(ds, SIEMENS_GRADIENT), 3)
        return (optional_float(_value(ds, SIEMENS_BVALUE)),
                None if direction is None else tuple(float(g) for g in direction))
    if GE_BVALUE in ds and "GE" in str(ds.get("Manufacturer", "")).upper():
        b_value = optional_float(_value(ds, GE_BVALUE))  # first of its four numbers
        direction = [optional_float(_value(ds, tag)) for tag in GE_GRADIENT]
        gradient = None if None in direction else tuple(float(d) for d in direction)
        return b_value, gradient
    return None, None


def _value(ds: Dataset, tag: tuple[int, int]):
    value = ds[tag].value if tag in ds else None
    if isinstance(value, bytes):  # implicit VR files leave private tags undecoded
        try:
            text = value.decode("ascii").strip("\x00 ")
        except UnicodeDecodeError:
            return None
        return text.split("\\") if "\\" in text else text
    return value


def acquisition_moment(ds: Dataset) -> tuple[int | None, float | None]:
    """(day number, seconds into the day) of the acquisition: AcquisitionDateTime, else
    AcquisitionDate and AcquisitionTime; the day is None where no date is given."""
    stamp = str(ds.get("AcquisitionDateTime") or "").strip()
    date, time = (stamp[:8], stamp[8:].split("+")[0].split("-")[0]) if stamp else (
        str(ds.get("AcquisitionDate") or "").strip(), ds.get("AcquisitionTime"))
    seconds = seconds_of_day(time)
    try:
        day = datetime.date(int(date[:4]), int(date[4:6]), int(date[6:8])).toordinal()
    except ValueError:  # no date, or not a DICOM DA
        day = None
    return (day if seconds is not None else None), seconds


def seconds_of_day(value) -> float | None:
    """A DICOM TM (HHMMSS.FFFFFF, leading parts only allowed) as seconds, or None."""
    text = str(value or "").strip().replace(":", "")  # ACR-NEMA wrote HH:MM:SS
    hours, minutes, seconds = text[:2], text[2:4] or "0", text[4:] or "0"
    try:
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _int(value) -> int | None:
    number = optional_float(value)
    return None if number is None else int(number)


def _volume_facts(labels: list[_Label]) -> dict[str, Any]:
    """NumberOfVolumes, which numbers vary between volumes, and diffusion encoding."""
    facts: dict[str, Any] = {"NumberOfVolumes": len(labels)}
    varied = []
    enhanced = any(label.dimensions for label in labels)
    for name, attribute in (("InstanceNumber", "file_instance"),
                            ("DimensionIndexValues", "dimensions"),
                            ("TemporalPositionIdentifier", "temporal"),
                            ("FrameNumber" if enhanced else "InstanceNumber", "instance"),
                            ("AcquisitionTime", "acquisition_time"),
                            ("DiffusionBValue", "b_value"),
                            ("DiffusionGradientOrientation", "gradient")):
        values = [getattr(label, attribute) for label in labels]
        if any(v is not None for v in values) and len(set(values)) > 1:
            varied.append(name)
    facts["VolumesVaryIn"] = varied
    b_values = [label.b_value for label in labels]
    gradients = [label.gradient for label in labels]
    diffusion = any(b for b in b_values if b) or any(
        g is not None and any(g) for g in gradients)
    if diffusion:
        # As stored in DICOM (patient frame for the public tags), one per volume, like
        # dcm2niix's .bval/.bvec before it rotates the vectors into the voxel frame.
        facts["DiffusionBValues"] = [b if b is not None else 0.0 for b in b_values]
        facts["DiffusionGradients"] = [list(g) if g is not None else [0.0, 0.0, 0.0]
                                       for g in gradients]
    return facts
