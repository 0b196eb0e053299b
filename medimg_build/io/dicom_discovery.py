"""Find every DICOM series in a folder tree of mixed files, reading headers only.

``discover_series(root)`` walks a tree (several patients, studies, series, DICOMDIR
indexes, reports, stray files) and returns one ``DicomSeriesRef`` per volume plus the
files it skipped and why; ``read_dicom_series(ref)`` reads one of them through the same
code as ``read_image(folder)``, so a series reads identically either way.

Grouping rules (those of dcm2niix's ``isSameSet``, minus its vendor-specific ones):

* files group by (StudyInstanceUID, SeriesInstanceUID); files whose SeriesInstanceUID is
  empty or missing (anonymizers strip it, e.g. TotalSegmentator's example CT) group by
  their folder plus SeriesNumber instead;
* one series UID is split into several volumes where SeriesNumber, the image part
  (dicom_parts: echo number, echo time, image kind magnitude/phase/real/imaginary/field
  map, as dcm2niix splits them), ImageOrientationPatient (localizers, mixed planes) or
  Rows/Columns differ; the part's ``split`` names what differs, e.g. ``"echo 2"``,
  ``"echo 2, fieldmap"`` or ``"orientation 2 (axial)"``. The parts of one enhanced file
  (a Philips field map and its magnitude) are refs sharing that file, each reading only
  its own frames;
* time points and diffusion directions of one series stay together (they are one 4D
  series): no split by TemporalPositionIdentifier, AcquisitionNumber or b-value;
* within a volume, a byte-identical copy of a file (same SOPInstanceUID, same bytes) is
  skipped as a duplicate; differing files with one SOPInstanceUID are kept (and refused
  by the reader as duplicate positions), never silently dropped.

Only headers are read, never pixel data: the element header of PixelData is checked
against the file size, so a truncated file is reported here rather than at decode time.
"""

from __future__ import annotations

import filecmp
import os
import warnings
from collections import Counter
from io import BytesIO
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.filereader import read_partial
from pydicom.tag import Tag

from ..errors import ImageReadError, MedimgError, one_line
from ..image import MedicalImage
from .dicom import read_dicom_files
from .dicom_files import DICOMDIR_SOP_CLASS, files_under, starts_without_preamble
from .dicom_frames import floats
from .dicom_geometry import ORIENTATION_ATOL
from .dicom_parts import (
    PART_KEYWORDS,
    PRIVATE_ELEMENTS,
    ImagePart,
    classic_part,
    enhanced_parts,
    part_names,
)
from .guard import read_guarded

__all__ = ["DicomDiscovery", "DicomSeriesRef", "SkippedFile", "discover_series",
           "group_datasets", "read_dicom_series"]

# The attributes grouping needs; everything else is skipped unparsed (specific_tags).
# The functional groups of enhanced files are read whole: they say each frame's part.
HEADER_TAGS = (
    "SOPClassUID", "SOPInstanceUID", "Modality", "StudyInstanceUID", "SeriesInstanceUID",
    "SeriesNumber", "SeriesDescription", "ImageOrientationPatient",
    "Rows", "Columns", "NumberOfFrames", "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence", *PART_KEYWORDS,
)


def _private_tags() -> list[int]:
    """Every private creator slot of the groups the parts read, and the elements they
    read in any block a creator may reserve (dcm2niix follows remapped blocks too)."""
    tags = []
    for group, offset, _ in PRIVATE_ELEMENTS:
        tags += [(group << 16) | block for block in range(0x10, 0x100)]
        tags += [(group << 16) | (block << 8) | offset for block in range(0x10, 0x100)]
    return sorted(set(tags))


_HEADER_TAG_NUMBERS = [Tag(keyword) for keyword in HEADER_TAGS] + [
    Tag(tag) for tag in _private_tags()]  # read_partial wants tags
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage SOP class
PIXEL_TAGS = {0x7FE00010, 0x7FE00009, 0x7FE00008}  # PixelData, Double/Float PixelData
UNDEFINED_LENGTH = 0xFFFFFFFF
HEAD_BYTES = 64 * 1024  # enough for a classic header; longer ones are re-read


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str  # one line: "not DICOM ...", "DICOMDIR index", "no pixel data (...)", ...


@dataclass(frozen=True)
class DicomSeriesRef:
    """One readable volume: a series, or one part of a series that had to be split."""

    study_uid: str
    series_uid: str  # "" when the files carry none (grouped by folder + SeriesNumber)
    split: str  # "" unless the series UID holds several volumes; then what differs
    files: tuple[Path, ...]  # sorted
    modality: str | None
    series_description: str
    series_number: int | None
    n_frames: int  # 2D frames of this volume (a multi-frame file counts its frames)
    label: str  # e.g. "#4 'T1 SAG' MR [echo 2]"; no patient identifiers
    # The image part (dicom_parts) all its frames share; reading selects its frames.
    image_kind: str = ""  # magnitude, phase, real, imaginary, fieldmap (Hz) or ""
    echo: int | None = None  # EchoNumbers
    echo_time: float | None = None  # ms

    @property
    def part(self) -> ImagePart:
        return ImagePart(self.image_kind, self.echo, self.echo_time)

    @property
    def folder(self) -> Path:
        """The deepest folder holding all files (where errors point)."""
        return Path(os.path.commonpath([str(p.parent) for p in self.files]))

    @property
    def key(self) -> tuple[str, str, str]:
        """Unique within one discovery: (study UID, series UID or folder#number, split)."""
        series = self.series_uid or f"{self.folder}#{self.series_number}"
        return (self.study_uid, series, self.split)


@dataclass(frozen=True)
class DicomDiscovery:
    root: Path
    series: list[DicomSeriesRef]
    skipped: list[SkippedFile]

    def summary(self) -> str:
        lines = [f"{self.root}: {len(self.series)} series, {len(self.skipped)} files skipped"]
        lines += [f"  {ref.label}: {len(ref.files)} files in {ref.folder}" for ref in self.series]
        lines += [f"  skipped {s.path}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


def discover_series(root: str | os.PathLike) -> DicomDiscovery:
    """Every DICOM series under ``root`` (a folder, searched recursively, or one file)."""
    root = Path(root).expanduser()
    if root.is_dir():
        paths = files_under(root)
    elif root.is_file():
        paths = [root]
    else:
        raise ImageReadError(root, "no such file or folder", hint="check the path")
    headers, skipped = [], []
    for path in paths:
        found = _read_header(path)
        (skipped if isinstance(found, SkippedFile) else headers).append(found)
    series, duplicates = _group(headers)
    return DicomDiscovery(root=root, series=series, skipped=skipped + duplicates)


def group_datasets(pairs: Iterable[tuple[Path, Dataset]]) -> list[DicomSeriesRef]:
    """Already-read image datasets grouped by the rules above (used by read_image)."""
    series, _ = _group([_Header.of(path, ds) for path, ds in pairs])
    return series


def read_dicom_series(ref: DicomSeriesRef) -> MedicalImage:
    """Exactly the ref's files, through the same frame/geometry/pixel code as a folder."""
    try:
        return read_guarded(ref.folder,
                            lambda: read_dicom_files(ref.folder, ref.files, ref.part))
    except MedimgError as error:
        # Name the series too: a split part shares its folder with its siblings.
        raise type(error)(error.path, f"series {ref.label}: {error.problem}",
                          hint=error.hint) from error


# -- reading headers ------------------------------------------------------------------------


@dataclass
class _Header:
    path: Path
    sop_uid: str
    study_uid: str
    series_uid: str
    series_number: int | None
    description: str
    modality: str | None
    orientation: np.ndarray | None
    size: tuple[int, int]
    parts: dict[ImagePart, int]  # frames of each part (several in one enhanced file)

    @classmethod
    def of(cls, path: Path, ds: Dataset) -> _Header:
        return cls(
            path=path,
            sop_uid=_text(ds.get("SOPInstanceUID")),
            study_uid=_text(ds.get("StudyInstanceUID")),
            series_uid=_text(ds.get("SeriesInstanceUID")),
            series_number=_int(ds.get("SeriesNumber")),
            description=" ".join(_text(ds.get("SeriesDescription")).split()),
            modality=_text(ds.get("Modality")) or None,
            orientation=floats(ds.get("ImageOrientationPatient"), 6),
            size=(_int(ds.get("Rows")) or 0, _int(ds.get("Columns")) or 0),
            parts=_parts(ds),
        )


def _parts(ds: Dataset) -> dict[ImagePart, int]:
    if "PerFrameFunctionalGroupsSequence" in ds:
        return dict(Counter(enhanced_parts(ds)))
    return {classic_part(ds): _int(ds.get("NumberOfFrames")) or 1}


def _read_header(path: Path) -> _Header | SkippedFile:
    if path.name.upper() == "DICOMDIR":
        return SkippedFile(path, "DICOMDIR index")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
            if head[128:132] != b"DICM":
                return _without_preamble(path, head, size)
            # Parse from memory: pydicom calls tell() per element, a syscall on a real
            # file (GE headers hold ~700 elements). Headers longer than the first read
            # (enhanced multi-frame) end without reaching the pixels, or inside an
            # element or sequence cut by the read: parse the file.
            try:
                ds, pixels = _parse(BytesIO(head))
            except Exception:  # noqa: BLE001 - cut short; a whole file's error is kept
                if len(head) == size:
                    raise
                pixels = {}
            if not pixels and len(head) < size:
                handle.seek(0)
                ds, pixels = _parse(handle)
    except Exception as error:  # noqa: BLE001 - any failure here makes the file unusable
        return SkippedFile(path, f"unreadable: {type(error).__name__}: "
                                 f"{one_line(str(error), 200)}")
    file_meta = getattr(ds, "file_meta", None) or Dataset()
    if (file_meta.get("MediaStorageSOPClassUID") == DICOMDIR_SOP_CLASS
            or "DirectoryRecordSequence" in ds):
        return SkippedFile(path, "DICOMDIR index")
    if not pixels:
        return SkippedFile(path, f"no pixel data ({_sop_name(ds, file_meta)})")
    if (ds.get("SOPClassUID") or file_meta.get("MediaStorageSOPClassUID")) == SEGMENTATION:
        # Labels of another series, not an image: recipes pair them with their image.
        return SkippedFile(path, "segmentation (DICOM SEG), not an image series")
    if pixels["length"] != UNDEFINED_LENGTH and pixels["start"] + pixels["length"] > size:
        have = max(size - pixels["start"], 0)
        return SkippedFile(path, f"unreadable: pixel data truncated ({have} of "
                                 f"{pixels['length']} bytes present)")
    if "Rows" not in ds or "Columns" not in ds:
        return SkippedFile(path, "unreadable: pixel data without Rows/Columns")
    return _Header.of(path, ds)


def _without_preamble(path: Path, head: bytes, size: int) -> _Header | SkippedFile:
    """An old ACR-NEMA style image is part of its series, as in read_image(folder)
    (read as implicit VR little endian there); anything else says what it is."""
    if size == 0:
        return SkippedFile(path, "not DICOM (empty file)")
    # Anything that does not start like a DICOM element (text, PNG, NIfTI) is not worth
    # a parse attempt.
    if starts_without_preamble(head):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = read_partial(BytesIO(head), stop_when=None, force=True,
                                  specific_tags=_HEADER_TAG_NUMBERS)
        except Exception:  # noqa: BLE001 - not parseable: not DICOM after all
            ds = None
        if ds is not None and "SOPClassUID" in ds:
            if "Rows" not in ds:
                file_meta = getattr(ds, "file_meta", None) or Dataset()
                return SkippedFile(path, f"no pixel data ({_sop_name(ds, file_meta)})")
            if ds.get("SOPClassUID") == SEGMENTATION:
                return SkippedFile(path, "segmentation (DICOM SEG), not an image series")
            return _Header.of(path, ds)
    return SkippedFile(path, "not DICOM (no 'DICM' marker at byte 128)")


def _parse(source) -> tuple[Dataset, dict[str, int]]:
    """The header up to the pixel data, and where the pixel data value starts and ends."""
    pixels: dict[str, int] = {}

    def at_pixels(tag, vr, length) -> bool:
        # Called with the source positioned at the value: remember where it ends.
        if tag in PIXEL_TAGS:
            pixels.update(start=source.tell(), length=length)
            return True
        return False

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd values in unrelated tags
        ds = read_partial(source, stop_when=at_pixels, specific_tags=_HEADER_TAG_NUMBERS)
    return ds, pixels


def _sop_name(ds: Dataset, file_meta: Dataset) -> str:
    uid = ds.get("SOPClassUID") or file_meta.get("MediaStorageSOPClassUID")
    if uid is None:
        return "no SOP class"
    return str(getattr(uid, "name", "") or uid)


# -- grouping -------------------------------------------------------------------------------


def _group(headers: list[_Header]) -> tuple[list[DicomSeriesRef], list[SkippedFile]]:
    groups: dict[tuple, list[_Header]] = {}
    for header in headers:
        if header.series_uid:
            key: tuple = (header.study_uid, header.series_uid)
        else:
            key = (header.study_uid, "", str(header.path.parent), header.series_number)
        groups.setdefault(key, []).append(header)
    series: list[DicomSeriesRef] = []
    duplicates: list[SkippedFile] = []
    for members in groups.values():
        for split, part, volume in _split(members):
            kept = _without_duplicates(volume, duplicates)
            series.append(_ref(kept, split, part))
    series.sort(key=lambda ref: (str(ref.files[0]), ref.part.sort_key(), ref.split))
    return series, duplicates


def _split(members: list[_Header]) -> list[tuple[str, ImagePart, list[_Header]]]:
    """One series UID's files as volumes: by SeriesNumber, part, orientation, size. A
    file holding several parts (an enhanced field map) is in the volume of each."""
    planes: list[np.ndarray] = []  # representatives, matched within ORIENTATION_ATOL

    def plane(orientation: np.ndarray | None) -> int:
        if orientation is None:
            return -1
        for k, known in enumerate(planes):
            if np.allclose(orientation, known, atol=ORIENTATION_ATOL):
                return k
        planes.append(orientation)
        return len(planes) - 1

    volumes: dict[tuple, list[_Header]] = {}
    for h in members:
        k = plane(h.orientation)
        for part in h.parts:
            volumes.setdefault((h.series_number, part, k, h.size), []).append(h)
    if len(volumes) == 1:
        ((_, part, _, _),) = volumes
        return [("", part, members)]
    named = _named(volumes, planes, echo_time=False)
    if len({name for name, _, _ in named}) < len(named):  # only the echo time differs
        named = _named(volumes, planes, echo_time=True)
    return named


def _named(volumes: dict[tuple, list[_Header]], planes: list[np.ndarray], echo_time: bool,
           ) -> list[tuple[str, ImagePart, list[_Header]]]:
    varies = [len({signature[k] for signature in volumes}) > 1 for k in range(4)]
    part_name = part_names(list({signature[1] for signature in volumes}), echo_time)
    named = []
    for (number, part, k, (rows, cols)), volume in volumes.items():
        words = []
        if varies[0]:
            words.append(f"series number {number}")
        if varies[1]:
            words.append(part_name[part])
        if varies[2]:
            words.append("no orientation" if k < 0 else
                         f"orientation {k + 1} ({_plane_name(planes[k])})")
        if varies[3]:
            words.append(f"{cols}x{rows}")
        named.append((", ".join(w for w in words if w), part, volume))
    return named


def _plane_name(orientation: np.ndarray) -> str:
    normal = np.abs(np.cross(orientation[:3], orientation[3:]))
    if normal.max() < 0.8:  # more than ~37 degrees off every axis
        return "oblique"
    return ("sagittal", "coronal", "axial")[int(np.argmax(normal))]


def _without_duplicates(part: list[_Header], duplicates: list[SkippedFile]) -> list[_Header]:
    # Only byte-identical copies (a folder copied twice, "series (1)") are dropped; files
    # that share a SOPInstanceUID but differ (re-encoded, edited) stay, and the reader
    # refuses their duplicate positions loudly instead of discovery picking one silently.
    first: dict[str, list[Path]] = {}
    kept = []
    for h in sorted(part, key=lambda h: h.path):
        same = [p for p in first.get(h.sop_uid, []) if _identical(p, h.path)] if h.sop_uid else []
        if same:
            duplicates.append(SkippedFile(h.path, f"duplicate of {same[0]} (identical file)"))
            continue
        first.setdefault(h.sop_uid, []).append(h.path)
        kept.append(h)
    return kept


def _identical(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _ref(volume: list[_Header], split: str, part: ImagePart) -> DicomSeriesRef:
    head = volume[0]
    number = "?" if head.series_number is None else head.series_number
    label = (f"#{number} '{head.description or 'no description'}' "
             f"{head.modality or 'unknown modality'}" + (f" [{split}]" if split else ""))
    return DicomSeriesRef(
        study_uid=head.study_uid, series_uid=head.series_uid, split=split,
        files=tuple(h.path for h in volume), modality=head.modality,
        series_description=head.description, series_number=head.series_number,
        n_frames=sum(h.parts[part] for h in volume), label=label,
        image_kind=part.image_kind, echo=part.echo, echo_time=part.echo_time,
    )


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
