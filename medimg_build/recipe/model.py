"""Recipes: YAML data that says where a source's images and labels are and how to
harmonize them. Loading validates against ``schema/recipe.schema.json``, then parses
the recipe once into frozen dataclasses, one per section (``sections.py``)."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..errors import RecipeError
from ..resources import recipes_dir, schema_dir
from ..yaml_input import load_yaml, yaml_problem
from .sections import RecipeSections, section_fields


@lru_cache(maxsize=None)
def recipe_schema() -> dict[str, Any]:
    return json.loads((schema_dir() / "recipe.schema.json").read_text())


@dataclass(frozen=True, kw_only=True)
class Recipe(RecipeSections):
    """A validated recipe: its sections parsed (``RecipeSections``: read them as
    attributes, ``recipe.harmonize.intensity.preset``), and ``data``, the plain mapping
    from the YAML file, which is what is hashed and recorded in stores."""

    data: dict[str, Any] = field(repr=False)
    path: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str | None = None) -> Recipe:
        validator = jsonschema.Draft202012Validator(recipe_schema())
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            raise RecipeError(path or data.get("name", "<recipe>"), _describe(errors[0]),
                              hint="see schema/recipe.schema.json")
        return cls.parsed(copy.deepcopy(data), path)

    @classmethod
    def parsed(cls, data: dict[str, Any], path: str | None = None) -> Recipe:
        """The recipe of ``data`` already validated (unpickling: nothing to check)."""
        return cls(**section_fields(RecipeSections, data), data=data, path=path)

    def __reduce__(self):
        # Sent to workers as its data, parsed again there: read-only mappings do not pickle.
        return Recipe.parsed, (self.data, self.path)

    def with_overrides(self, overrides: dict[str, Any]) -> Recipe:
        """A new recipe with ``overrides`` deep-merged in (a None value removes the key),
        validated again. Choosing another intensity preset replaces the intensity
        section: the old preset's parameters do not apply to the new one."""
        merged = _deep_merge(self.data, overrides)
        intensity = (overrides.get("harmonize") or {}).get("intensity") or {}
        if intensity.get("preset") not in (None, self.harmonize.intensity.preset):
            # Another preset starts afresh: the CT window means nothing to the MR preset.
            merged["harmonize"]["intensity"] = {k: v for k, v in intensity.items()
                                                if v is not None}
        return Recipe.from_dict(merged, self.path)

    @property
    def content_hash(self) -> str:
        """sha256 of the recipe's canonical JSON: equal for equal content, whatever the
        YAML formatting."""
        canonical = json.dumps(self.data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """The recipe's identity as recorded in a store."""
        return {"name": self.name, "version": self.version,
                "sha256": self.content_hash, "content": self.data}


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load a recipe from a YAML path, or by name from the bundled ``recipes/``."""
    path = Path(name_or_path)
    if not path.exists():
        bundled = recipes_dir() / f"{name_or_path}.yaml"
        if not bundled.exists():
            raise RecipeError(path, "no such recipe file or bundled recipe",
                              hint="give a YAML path, or a name from `medimg-build recipes`")
        path = bundled
    try:
        data = load_yaml(path.read_text())
    except UnicodeDecodeError as error:
        raise RecipeError(path, f"is not a text file (byte {error.start} is not UTF-8)",
                          hint="a recipe is a YAML text file") from error
    except yaml.YAMLError as error:
        raise RecipeError(path, f"is not valid YAML{yaml_problem(error)}",
                          hint="fix the syntax of the recipe") from None
    if not isinstance(data, dict):
        raise RecipeError(path, "is not a YAML mapping", hint="a recipe is a mapping of keys")
    return Recipe.from_dict(data, str(path))


def bundled_recipes() -> list[Recipe]:
    return [load_recipe(p) for p in sorted(recipes_dir().glob("*.yaml"))]


def _describe(error: jsonschema.ValidationError) -> str:
    location = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "oneOf" and error.context:
        # Name the closest alternative's problem rather than "is not valid under any".
        best = jsonschema.exceptions.best_match(error.context)
        return _describe(best)
    return f"{location}: {error.message}"


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
