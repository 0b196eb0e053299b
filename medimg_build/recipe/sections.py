"""A recipe's sections as frozen dataclasses, parsed once after schema validation.

They mirror ``schema/recipe.schema.json``: one class per object of the schema, one
field per property, under the property's name, so a misspelt setting is an
AttributeError where it is read rather than a silent ``.get()`` None. The schema stays
what decides validity (the classes never see an unvalidated recipe); a field's default
is the schema's ``default`` where it has one (tests/test_recipe_sections.py holds them
to it), else what the code did with the setting absent. Lists are tuples and mappings
read-only (``MappingProxyType``); a free-form mapping (``source.options``, checked by
its parser) stays a mapping rather than invented fields."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, TypeVar

from ..limits import DEFAULT_MAX_VOXELS

Section = TypeVar("Section")
GEOMETRY_TOLERANCE_MM = 0.01  # how far a mask's grid may be from its image's


def _empty() -> Mapping[str, Any]:
    return types.MappingProxyType({})


# -- source: one class per source kind ------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class _SourceKind:
    """What the build asks of any source kind. A kind without such a setting answers
    with these class values (a volume folder names no table), not with a field: the
    fields are the schema's properties, no more."""

    # Source column -> case table column.
    columns: ClassVar[Mapping[str, str]] = types.MappingProxyType({})
    table: ClassVar[str | tuple[str, ...] | None] = None  # the label table
    channel_names: ClassVar[tuple[str, ...] | None] = None
    pixel_spacing: ClassVar[TablePixelSpacing | None] = None  # from the table's rows

    @property
    def searched(self) -> str:
        """What the kind looks for, as a 'no cases found' error names it."""
        return "."


@dataclass(frozen=True, kw_only=True)
class VolumeFolder(_SourceKind):
    kind: str = "volume_folder"
    images: str
    masks: str | Mapping[str, str] | None = None
    masks_overlap: str = "higher_wins"
    case_id: str = "stem"
    patient_id: str = "case_id"
    patient_pattern: str | None = None
    channels: tuple[str, ...] = ()
    channel_names: tuple[str, ...] | None = None

    @property
    def searched(self) -> str:
        return self.images


@dataclass(frozen=True, kw_only=True)
class TablePixelSpacing:
    """Table columns giving each picture's pixel size (recipe/table_spacing.py)."""

    columns: tuple[str, ...]  # mm along a row (x) and down a column (y)
    measured_on: tuple[str, ...] | None = None  # (width, height) the spacing is of


@dataclass(frozen=True, kw_only=True)
class ImageTable(_SourceKind):
    kind: str = "image_table"
    table: str | tuple[str, ...] = field()  # required: field() hides _SourceKind's None
    column_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=_empty)
    image_column: str
    image_suffix: str = ""
    images: str
    patient_column: str | None = None
    columns: Mapping[str, str] = field(default_factory=_empty)
    masks: str | None = None
    mask_column: str | None = None
    patient_pattern: str | None = None
    pixel_spacing: TablePixelSpacing | None = None

    @property
    def searched(self) -> str:
        return self.images


@dataclass(frozen=True, kw_only=True)
class DicomTree(_SourceKind):
    kind: str = "dicom_tree"
    root: str = "."
    modalities: tuple[str, ...] | None = None
    min_frames: int = 1
    segmentations: bool = False

    @property
    def searched(self) -> str:
        return self.root


@dataclass(frozen=True, kw_only=True)
class ImageFolder(_SourceKind):
    kind: str = "image_folder"
    images: str
    path_pattern: str | None = None
    case_id: str = "stem"
    patient_field: str | None = None
    masks: str | Mapping[str, str] | None = None
    masks_overlap: str = "higher_wins"
    columns: Mapping[str, str] = field(default_factory=_empty)

    @property
    def searched(self) -> str:
        return self.images


@dataclass(frozen=True, kw_only=True)
class ParserSource(_SourceKind):
    kind: str = "parser"
    parser: str
    options: Mapping[str, Any] = field(default_factory=_empty)  # free-form: the parser's
    columns: Mapping[str, str] = field(default_factory=_empty)


Source = VolumeFolder | ImageTable | DicomTree | ImageFolder | ParserSource


# -- labels ---------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Classification:
    name: str
    column: str
    kind: str
    classes: tuple[str, ...] | str  # or "from_data" until the build resolves it
    separator: str = "|"
    none: tuple[str, ...] = ()
    missing: tuple[str, ...] = ("",)


@dataclass(frozen=True, kw_only=True)
class Segmentation:
    classes: Mapping[str, str] | str  # label value (a string) -> name, or "from_data"
    geometry_tolerance_mm: float = GEOMETRY_TOLERANCE_MM
    regions: Mapping[str, tuple[int, ...]] | None = None
    regions_class_order: tuple[int, ...] | None = None
    map: Mapping[str, int] = field(default_factory=_empty)


@dataclass(frozen=True, kw_only=True)
class BoxLabels:
    """``labels.boxes``: bounding boxes from a table with one row per box."""

    table: str | None = None  # None: the source's parser gives each case's rows
    image_column: str
    label_column: str
    format: str
    columns: tuple[str, ...]
    slice_column: str | None = None
    slice_base: int = 0
    convention: str = "corner"
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class LandmarkLabels:
    """``labels.landmarks``: named points from a table with one row per point."""

    table: str | None = None
    image_column: str
    label_column: str
    columns: tuple[str, ...]
    convention: str = "index"
    slice_column: ClassVar[str | None] = None  # a point's slice is one of its columns
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class Labels:
    classification: tuple[Classification, ...] = ()
    segmentation: Segmentation | None = None
    boxes: BoxLabels | None = None
    landmarks: LandmarkLabels | None = None

    def annotations(self) -> dict[str, BoxLabels | LandmarkLabels]:
        """The annotation kinds the recipe declares, by name (boxes, landmarks)."""
        declared = {"boxes": self.boxes, "landmarks": self.landmarks}
        return {kind: spec for kind, spec in declared.items() if spec is not None}


# -- harmonize, split and the small settings ------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Intensity:
    preset: str
    window: tuple[float, float] | None = None
    percentiles: tuple[float, float] | None = None
    dtype: str | None = None

    def parameters(self) -> dict[str, Any]:
        """The preset's parameters the recipe gives, as the YAML writes them: pairs as
        lists, which ``normalize`` quotes in its refusals ("CT window [100, 50]")."""
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                 if f.name != "preset" and getattr(self, f.name) is not None}
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in given.items()}


@dataclass(frozen=True, kw_only=True)
class Harmonize:
    orientation: str | None = None
    spacing: tuple[float, ...] | None = None
    shape: tuple[int, ...] | None = None
    interpolation: str = "linear"
    channels: str = "keep"
    intensity: Intensity


@dataclass(frozen=True, kw_only=True)
class Split:
    seed: int = 0
    fractions: Mapping[str, float] = field(
        default_factory=lambda: types.MappingProxyType({"train": 1.0}))
    column: str | None = None
    values: Mapping[str, str] = field(default_factory=_empty)
    lists: Mapping[str, str] = field(default_factory=_empty)
    stratify: str | None = None


@dataclass(frozen=True, kw_only=True)
class Read:
    philips_scaling: str | None = None  # None: io/read_options.py's default


@dataclass(frozen=True, kw_only=True)
class Limits:
    max_voxels: int = DEFAULT_MAX_VOXELS


@dataclass(frozen=True, kw_only=True)
class StoreSettings:
    cases_per_shard: int | None = None  # None: the layout's own choice
    compression_level: int | None = None
    pyramid_levels: int = 1


@dataclass(frozen=True, kw_only=True)
class RecipeSections:
    """The top level of a recipe, every section parsed."""

    name: str
    version: str
    title: str | None = None
    description: str | None = None
    modality: str
    organ: str
    license: str | None = None
    citation: str | None = None
    url: str | None = None
    layout: str
    source: Source
    labels: Labels = field(default_factory=Labels)
    harmonize: Harmonize
    split: Split = field(default_factory=Split)
    read: Read = field(default_factory=Read)
    limits: Limits = field(default_factory=Limits)
    store: StoreSettings = field(default_factory=StoreSettings)


# -- parsing --------------------------------------------------------------------------

def parse(section: type[Section], written: Mapping[str, Any]) -> Section:
    """``written`` (a schema-valid section, as in the YAML) as the frozen ``section``:
    absent keys take their field's default."""
    return section(**section_fields(section, written))


def section_fields(section: type, written: Mapping[str, Any]) -> dict[str, Any]:
    """The parsed values of the keys ``written`` gives, by field name (for a class
    that adds fields of its own, as ``Recipe`` adds its ``data``)."""
    hints = _hints(section)
    return {f.name: _parsed(hints[f.name], written[f.name])
            for f in dataclasses.fields(section) if f.name in written}


@cache
def _hints(section: type) -> dict[str, Any]:
    return typing.get_type_hints(section)


def _parsed(hint: Any, value: Any) -> Any:
    """One value by its field's type: a section (or, for a union of sections, the one
    whose ``kind`` the value names), a tuple of sections, or plain data frozen."""
    members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    sections = [m for m in members if dataclasses.is_dataclass(m)]
    if len(sections) == 1:
        return parse(sections[0], value)
    if sections:
        by_kind = {kind_class.kind: kind_class for kind_class in sections}
        return parse(by_kind[value["kind"]], value)
    item = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else None
    if dataclasses.is_dataclass(item):
        return tuple(parse(item, each) for each in value)
    if hint == Mapping[str, Any]:  # free-form (parser options): read-only at the top only
        return types.MappingProxyType(copy.deepcopy(dict(value)))
    return _frozen(value)


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return types.MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value
