"""The recipe parsed once into frozen dataclasses (recipe/sections.py) that mirror the
schema: the same names, the schema's defaults, read-only all the way down; the recipe's
data, hash and pickled form unchanged."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import types

import pytest

from medimg_build.limits import DEFAULT_MAX_VOXELS
from medimg_build.recipe.model import Recipe, bundled_recipes, load_recipe, recipe_schema
from medimg_build.recipe.sections import (
    BoxLabels, Classification, DicomTree, Harmonize, ImageFolder, ImageTable, Intensity,
    LandmarkLabels, Labels, Limits, ParserSource, Read, RecipeSections, Segmentation, Split,
    StoreSettings, TablePixelSpacing, VolumeFolder, parse,
)
from medimg_build.resources import recipes_dir
from medimg_build.yaml_input import load_yaml

# Each object of the schema (by its path in the schema) and the class that mirrors it.
MIRRORS = {
    (): RecipeSections,
    ("$defs", "volume_folder"): VolumeFolder,
    ("$defs", "image_table"): ImageTable,
    ("$defs", "image_table", "properties", "pixel_spacing"): TablePixelSpacing,
    ("$defs", "dicom_tree"): DicomTree,
    ("$defs", "image_folder"): ImageFolder,
    ("$defs", "parser"): ParserSource,
    ("$defs", "labels"): Labels,
    ("$defs", "classification"): Classification,
    ("$defs", "segmentation"): Segmentation,
    ("$defs", "boxes"): BoxLabels,
    ("$defs", "landmarks"): LandmarkLabels,
    ("$defs", "harmonize"): Harmonize,
    ("$defs", "harmonize", "properties", "intensity"): Intensity,
    ("$defs", "split"): Split,
    ("properties", "read"): Read,
    ("properties", "limits"): Limits,
    ("properties", "store"): StoreSettings,
}


def _schema_object(path: tuple[str, ...]) -> dict:
    found = recipe_schema()
    for key in path:
        found = found[key]
    return found


def _default(field: dataclasses.Field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _frozen_all_the_way(value, where: str) -> None:
    assert not isinstance(value, (list, dict, set)), f"{where} is a mutable {type(value)}"
    if dataclasses.is_dataclass(value):
        assert type(value).__dataclass_params__.frozen, f"{where} is not frozen"
        for field in dataclasses.fields(value):
            _frozen_all_the_way(getattr(value, field.name), f"{where}.{field.name}")
    elif isinstance(value, tuple):
        for number, item in enumerate(value):
            _frozen_all_the_way(item, f"{where}[{number}]")
    elif isinstance(value, types.MappingProxyType) and where != "recipe.source.options":
        for key, item in value.items():
            _frozen_all_the_way(item, f"{where}[{key!r}]")


@pytest.mark.parametrize("path", MIRRORS, ids=lambda p: ".".join(p) or "top")
def test_each_section_mirrors_its_schema_object(path):
    """The same property names, no other key possible, the schema's defaults, and a
    default for no property the schema requires (but the source kinds' constant)."""
    schema, section = _schema_object(path), MIRRORS[path]
    fields = {field.name: field for field in dataclasses.fields(section)}
    assert set(fields) == set(schema["properties"])
    assert schema["additionalProperties"] is False
    for name, spec in schema["properties"].items():
        if "default" in spec:
            assert _default(fields[name]) == spec["default"], name
    for name in schema.get("required", []):
        has_default = (fields[name].default is not dataclasses.MISSING
                       or fields[name].default_factory is not dataclasses.MISSING)
        assert not has_default or "const" in schema["properties"][name], name


@pytest.mark.parametrize("recipe", bundled_recipes(), ids=lambda r: r.name)
def test_every_bundled_recipe_parses_frozen_and_keeps_its_hash(recipe):
    written = load_yaml((recipes_dir() / f"{recipe.name}.yaml").read_text())
    assert recipe.data == written  # parsing changed nothing of what is hashed and stored
    canonical = json.dumps(written, sort_keys=True, separators=(",", ":")).encode()
    assert recipe.content_hash == hashlib.sha256(canonical).hexdigest()
    assert recipe.describe()["content"] == written
    assert recipe.source.kind == written["source"]["kind"]
    assert isinstance(recipe.harmonize.intensity, Intensity)
    assert all(isinstance(spec, Classification) for spec in recipe.labels.classification)
    for field in dataclasses.fields(RecipeSections):
        _frozen_all_the_way(getattr(recipe, field.name), f"recipe.{field.name}")
    # Pickled (to Dask and process workers) as its data, parsed again on arrival.
    arrived = pickle.loads(pickle.dumps(recipe))
    assert arrived == recipe and arrived.content_hash == recipe.content_hash


def test_sections_refuse_assignment_and_misspelt_names():
    recipe = load_recipe("nih-chestxray14")
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.harmonize.intensity.preset = "mr"
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.labels.classification[0].classes = ("a",)
    with pytest.raises(TypeError):
        recipe.source.columns["Patient Age"] = "age"
    with pytest.raises(AttributeError):
        recipe.harmonize.intensty  # noqa: B018 -- a typo is an error, not a silent None


def test_defaults_apply_where_the_recipe_says_nothing():
    recipe = Recipe.from_dict({
        "name": "least", "version": "1", "modality": "CT", "organ": "lung", "layout": "stack",
        "source": {"kind": "volume_folder", "images": "*.nii.gz"},
        "harmonize": {"intensity": {"preset": "ct"}}})
    assert recipe.labels == Labels() and recipe.labels.classification == ()
    assert recipe.labels.segmentation is None and recipe.labels.annotations() == {}
    assert recipe.title is None and recipe.source.case_id == "stem"
    assert recipe.split == Split() and recipe.split.fractions == {"train": 1.0}
    assert recipe.split.seed == 0 and recipe.split.lists == {}
    assert recipe.source.masks_overlap == "higher_wins" and recipe.source.patient_id == "case_id"
    assert recipe.harmonize.interpolation == "linear" and recipe.harmonize.channels == "keep"
    assert recipe.limits.max_voxels == DEFAULT_MAX_VOXELS
    assert recipe.store.pyramid_levels == 1 and recipe.store.cases_per_shard is None
    assert recipe.read.philips_scaling is None


def test_with_overrides_is_parsed_again():
    recipe = load_recipe("volume-folder")
    changed = recipe.with_overrides({"harmonize": {"shape": [64, 64, 32],
                                                   "intensity": {"preset": "mr"}},
                                     "split": {"seed": 7}})
    assert isinstance(changed, Recipe) and changed.harmonize.shape == (64, 64, 32)
    assert changed.harmonize.intensity == Intensity(preset="mr")
    assert changed.split.seed == 7 and changed.split.fractions == recipe.split.fractions
    assert recipe.harmonize.intensity.preset == "ct" and recipe.split.seed != 7


def test_the_source_section_is_the_class_of_its_kind():
    kinds = {recipe.data["source"]["kind"]: type(recipe.source) for recipe in bundled_recipes()}
    assert kinds == {"volume_folder": VolumeFolder, "image_table": ImageTable,
                     "dicom_tree": DicomTree, "image_folder": ImageFolder,
                     "parser": ParserSource}


def test_parse_reads_a_written_section():
    boxes = parse(BoxLabels, {"image_column": "image", "label_column": "label",
                              "format": "xywh", "columns": ["x", "y", "w", "h"]})
    assert boxes.columns == ("x", "y", "w", "h") and boxes.table is None
    assert boxes.convention == "corner" and boxes.slice_base == 0
    assert parse(LandmarkLabels, {"image_column": "i", "label_column": "l",
                                  "columns": ["x", "y"]}).convention == "index"
