"""The parts of a DICOM series that dcm2niix writes as separate images.

One series UID (even one enhanced file) may hold images that are not one volume: the
magnitude and the phase of a field map, several echoes, a field map in Hz beside its
magnitude. Stacked together they would come out as channels of one 4D image, silently
wrong. Each frame therefore gets an ``ImagePart``, from the header attributes dcm2niix
uses (``nii_dicom.cpp::readDICOMx``, split in ``nii_dicom_batch.cpp::isSameSet``):

* image kind, one of ``IMAGE_KINDS`` or "" when the headers do not say:
  - ImageType (0008,0008) with its values joined by "_": "_M_"/"_MAGNITUDE_" magnitude,
    "_P_"/"PHASE" phase, "_R_"/"_REAL_" real, "_I_"/"_IMAGINARY_" imaginary (Philips
    "M_FFE\\M", "SW_P\\SW_P", Siemens "P\\ND", ...); an ImageType holding both "B0" and
    "MAP" is a field map in Hz (Philips "B0 MAP");
  - ComplexImageComponent (0008,9208): MAGNITUDE, PHASE, REAL, IMAGINARY;
  - GE's private image type (0043,xx2F): 0/1/2/3 magnitude/phase/real/imaginary;
  - GE 3D B0 maps (pulse sequence (0019,xx9C) "b0map" or (0019,xx9E) "B0map", with
    ImagesInAcquisition (0020,1002) unequal to the locations (0021,xx4F)): the first
    volume (InstanceNumber up to the locations) is the field map in Hz (dcm2niix issue 501);
  - enhanced files, per frame: ComplexImageComponent of MRImageFrameTypeSequence,
    FrameType "FIELD_MAP", and Philips' private per-frame ImageType (2005,xx0F).
  When several say something, the kind is the first of fieldmap, phase, real, imaginary,
  magnitude (dcm2niix names a file "_ph"/"_real"/"_fieldmaphz" on the same flags).
* echo: EchoNumbers (0018,0086);
* echo time: EchoTime (0018,0081), per frame EffectiveEchoTime (MREchoSequence) in
  enhanced files. dcm2niix splits where either the echo number or the echo time differs.

X-ray images (CT, DX...: an Exposure (0018,1152) and no echo time) are never split by
kind or echo time, as dcm2niix stacks them whatever those say.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from ..errors import DicomSeriesError

if TYPE_CHECKING:  # dicom_frames imports this module
    from .dicom_frames import Frame

IMAGE_KINDS = ("magnitude", "phase", "real", "imaginary", "fieldmap")  # fieldmap: in Hz
_PRIORITY = ("fieldmap", "phase", "real", "imaginary", "magnitude")
_COMPONENTS = {"MA": "magnitude", "PH": "phase", "RE": "real", "IM": "imaginary"}
_GE_IMAGE_TYPES = {0: "magnitude", 1: "phase", 2: "real", 3: "imaginary"}
_TE_DECIMALS = 4  # ms; DS values carry a few decimals, echoes differ by milliseconds

# Private elements, by (group, element offset, creator) as dcm2niix remaps them.
GE_SEQUENCE = (0x0019, 0x9C, "GEMS_ACQU_01")  # pulse sequence name, e.g. "b0map"
GE_INTERNAL_SEQUENCE = (0x0019, 0x9E, "GEMS_ACQU_01")  # e.g. "B0map"
GE_LOCATIONS = (0x0021, 0x4F, "GEMS_RELA_01")  # locations in acquisition
GE_IMAGE_TYPE = (0x0043, 0x2F, "GEMS_PARM_01")  # 0/1/2/3 magnitude/phase/real/imaginary
PHILIPS_PER_FRAME = (0x2005, 0x0F, "PHILIPS MR IMAGING DD 005")  # per-frame private item
PRIVATE_ELEMENTS = (GE_SEQUENCE, GE_INTERNAL_SEQUENCE, GE_LOCATIONS, GE_IMAGE_TYPE)
# Public attributes the part of a classic file depends on (discovery reads only these).
PART_KEYWORDS = ("ImageType", "ComplexImageComponent", "EchoNumbers", "EchoTime",
                 "Exposure", "Manufacturer", "InstanceNumber", "ImagesInAcquisition",
                 "SliceThickness", "SpacingBetweenSlices")


@dataclass(frozen=True)
class ImagePart:
    """What sets a frame's image apart from the other images of its series."""

    image_kind: str = ""  # one of IMAGE_KINDS, or "" when the headers do not say
    echo: int | None = None  # EchoNumbers
    echo_time: float | None = None  # ms

    def describe(self) -> str:
        """One line, e.g. "echo 2 phase"; "" for a part the headers say nothing about."""
        words = [] if self.echo is None else [f"echo {self.echo}"]
        return " ".join(words + ([self.image_kind] if self.image_kind else []))

    def sort_key(self) -> tuple:
        return (self.echo is None, self.echo or 0, _sort_kind(self.image_kind),
                self.echo_time is None, self.echo_time or 0.0)


def _sort_kind(kind: str) -> int:
    return IMAGE_KINDS.index(kind) if kind in IMAGE_KINDS else -1


# -- the part of one frame --------------------------------------------------------------


def classic_part(ds: Dataset) -> ImagePart:
    """The part of a classic (single-frame) file, or of a mosaic's tiles."""
    echo = _first_int(ds.get("EchoNumbers"))
    if _is_xray(ds):
        return ImagePart(echo=echo)
    kinds = _image_type_kinds(ds.get("ImageType"))
    kinds |= _component_kinds(ds.get("ComplexImageComponent"))
    kinds |= _ge_kinds(ds)
    return ImagePart(_one_kind(kinds), echo, _echo_time(ds.get("EchoTime")))


def enhanced_part(ds: Dataset, item: Dataset, shared: Dataset) -> ImagePart:
    """The part of one frame of an enhanced file: its per-frame item (or the shared one)."""
    frame_type = _group(item, shared, "MRImageFrameTypeSequence")
    private = _private_item(item)
    kinds = _component_kinds(frame_type.get("ComplexImageComponent"))
    if private is not None:
        kinds |= _image_type_kinds(private.get("ImageType"))
    if "FIELD_MAP" in _values(frame_type.get("FrameType")):
        kinds.add("fieldmap")
    if not kinds:  # the frame says nothing: the file's own ImageType holds for it
        kinds = _image_type_kinds(ds.get("ImageType"))
        kinds |= _component_kinds(ds.get("ComplexImageComponent"))
    echo = _first_int((private or Dataset()).get("EchoNumbers", ds.get("EchoNumbers")))
    echo_time = _echo_time(_group(item, shared, "MREchoSequence").get("EffectiveEchoTime"))
    if echo_time is None:
        echo_time = _echo_time(ds.get("EchoTime"))
    return ImagePart(_one_kind(kinds), echo, echo_time)


def enhanced_parts(ds: Dataset) -> list[ImagePart]:
    """The part of every frame of an enhanced file, in frame order."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared_item = shared[0] if shared else Dataset()
    return [enhanced_part(ds, item, shared_item)
            for item in ds.get("PerFrameFunctionalGroupsSequence", [])]


def _group(item: Dataset, shared: Dataset, keyword: str) -> Dataset:
    # A functional group holds for one frame in its per-frame item, for all in the shared.
    for source in (item, shared):
        if keyword in source and len(source[keyword].value):
            return source[keyword].value[0]
    return Dataset()


def _is_xray(ds: Dataset) -> bool:
    # dcm2niix takes Exposure for the echo time of X-ray images and stacks them as a whole.
    return "Exposure" in ds and not (_echo_time(ds.get("EchoTime")) or 0.0) > 0


def _values(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        value = str(value).split("\\")
    return [str(v).strip().upper() for v in value]


def _image_type_kinds(value) -> set[str]:
    # dcm2niix's own test: the values joined by "_" (so "M_FFE\\M" is "_M_FFE_M_"), and
    # a letter counts only between underscores. Its quirks are kept on purpose: a last
    # value "P" alone is not a phase to dcm2niix either.
    joined = "_".join(_values(value))
    kinds = {kind for kind, words in (
        ("real", ("_R_", "_REAL_")), ("magnitude", ("_M_", "_MAGNITUDE_")),
        ("imaginary", ("_I_", "_IMAGINARY_")), ("phase", ("_P_", "PHASE")),
    ) if any(word in joined for word in words)}
    if "B0" in joined and "MAP" in joined:
        kinds.add("fieldmap")
    return kinds


def _component_kinds(value) -> set[str]:
    text = str(value or "").strip().upper()
    return {_COMPONENTS[text[:2]]} if text[:2] in _COMPONENTS else set()


def _ge_kinds(ds: Dataset) -> set[str]:
    if "GE" not in str(ds.get("Manufacturer", "")).upper():
        return set()
    kinds = set()
    ge_type = _first_int(private_value(ds, *GE_IMAGE_TYPE))
    if ge_type in _GE_IMAGE_TYPES:
        kinds.add(_GE_IMAGE_TYPES[ge_type])
    if _ge_fieldmap_volume(ds):
        kinds.add("fieldmap")
    return kinds


def _ge_fieldmap_volume(ds: Dataset) -> bool:
    """GE 3D B0 map (dcm2niix issue 501): the series holds two volumes, the field map in
    Hz first, then the magnitude; the tell is ImagesInAcquisition counting both volumes
    while the private LocationsInAcquisition counts one."""
    sequence = str(private_value(ds, *GE_SEQUENCE) or "")
    internal = str(private_value(ds, *GE_INTERNAL_SEQUENCE) or "").strip()
    if "b0map" not in sequence and internal != "B0map":
        return False
    images = _first_int(ds.get("ImagesInAcquisition")) or 0
    locations = _first_int(private_value(ds, *GE_LOCATIONS)) or 0
    instance = _first_int(ds.get("InstanceNumber"))
    if images <= 0 or locations <= 0 or images == locations or instance is None:
        return False
    thickness = _float(ds.get("SliceThickness"))
    spacing = _float(ds.get("SpacingBetweenSlices"))
    if thickness and spacing:  # ZIP2-interpolated slices: locations count acquired ones
        locations *= max(int(round(thickness / spacing)), 1)
    return instance <= locations


def _one_kind(kinds: set[str]) -> str:
    return next((kind for kind in _PRIORITY if kind in kinds), "")


def private_value(ds: Dataset, group: int, offset: int, creator: str):
    """A private element's value wherever its creator reserved its block, or None."""
    for tag in ds.keys():
        if tag >> 16 != group or not 0x10 <= (tag & 0xFFFF) <= 0xFF:
            continue  # private creators sit at (gggg,0010-00FF)
        if str(ds[tag].value).strip().upper() == creator.upper():
            element = (group << 16) | ((tag & 0xFF) << 8) | offset
            return ds[element].value if element in ds else None
    return None


def _private_item(item: Dataset) -> Dataset | None:
    value = private_value(item, *PHILIPS_PER_FRAME)
    return value[0] if value else None


def _first_int(value) -> int | None:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        return int(float(value)) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _float(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _echo_time(value) -> float | None:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    time = _float(value)
    return None if time is None else round(time, _TE_DECIMALS)


# -- frames grouped by part ---------------------------------------------------------------


def frames_by_part(frames: list[Frame]) -> dict[ImagePart, list[Frame]]:
    """The frames of each part, parts in echo, kind, echo time order."""
    grouped: dict[ImagePart, list[Frame]] = {}
    for frame in frames:
        grouped.setdefault(frame.part, []).append(frame)
    return {part: grouped[part] for part in sorted(grouped, key=ImagePart.sort_key)}


def part_names(parts: list[ImagePart], echo_time: bool | None = None) -> dict[ImagePart, str]:
    """Each part named by what differs between them ("echo 2", "fieldmap", "echo 2,
    phase"). The echo time is named if ``echo_time``; by default only where the echo
    numbers and kinds do not already tell the parts apart."""
    def words(part: ImagePart, with_time: bool) -> str:
        said = []
        if len({p.echo for p in parts}) > 1:
            said.append(f"echo {'?' if part.echo is None else part.echo}")
        if with_time and len({p.echo_time for p in parts}) > 1:
            said.append("TE unknown" if part.echo_time is None else f"TE {part.echo_time:g} ms")
        if len({p.image_kind for p in parts}) > 1:
            said.append(part.image_kind or "image kind not given")
        return ", ".join(said)

    names = {part: words(part, bool(echo_time)) for part in parts}
    if echo_time is None and len(set(names.values())) < len(names):
        names = {part: words(part, True) for part in parts}
    return names


def one_part(where: Path, frames: list[Frame], part: ImagePart | None = None) -> list[Frame]:
    """The frames of ``part``; without one, all frames if they are one part, else a
    DicomSeriesError naming the parts (they would stack into one silently mixed image)."""
    grouped = frames_by_part(frames)
    if part is not None:
        if part not in grouped:
            raise DicomSeriesError(
                where, f"no frame is the part {part.describe() or 'asked for'} (the files "
                f"hold {_listed(grouped)})", hint="discover the series again: the files "
                "changed since discover_series read them")
        return grouped[part]
    if len(grouped) == 1:
        return frames
    names = part_names(list(grouped))
    listed = "; ".join(f"{names[p]} ({len(f)} frames)" for p, f in grouped.items())
    raise DicomSeriesError(
        where, f"holds {len(grouped)} images that dcm2niix writes separately: {listed}",
        hint="read each with medimg_build.io.dicom_discovery (discover_series, then "
        "read_dicom_series), or build them all as cases with the dicom-tree recipe")


def _listed(grouped: dict[ImagePart, list[Frame]]) -> str:
    return "; ".join(f"{p.describe() or 'unlabelled'} ({len(f)} frames)"
                     for p, f in grouped.items())

