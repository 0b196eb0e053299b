"""The keys a recipe may have, read from its schema: a ``--set`` key that names none of
them is refused with the closest real one (``harmonise.spacing`` -> ``harmonize.spacing``),
before the schema's own "additional properties" message would name only the last part."""

from __future__ import annotations

import difflib
from typing import Any

from ..errors import RecipeError
from .model import recipe_schema


def check_key(key: str, recipe_path: str | None, option: str = "--set") -> None:
    """RecipeError when the dotted ``key`` (given with ``option``: ``--set``, or a
    collection's ``set``) names no recipe setting, suggesting the closest one. Below a mapping of free keys (class values, column maps) or a list,
    anything goes: the schema checks the value."""
    schema = recipe_schema()
    node: dict[str, Any] | None = schema
    parts = key.split(".")
    for depth, part in enumerate(parts):
        node = _resolved(node, schema)
        known = _properties(node, schema)
        if not known or _free_keys(node, schema):
            return
        if part not in known:
            parent = ".".join(parts[:depth])
            close = difflib.get_close_matches(part, sorted(known), n=1, cutoff=0.6)
            where = f"under {parent}" if parent else "at the top level"
            hint = (f"did you mean {'.'.join([*parts[:depth], close[0], *parts[depth + 1:]])}?"
                    if close else f"keys {where}: {', '.join(sorted(known))}")
            raise RecipeError(recipe_path, f"{option} {key}: a recipe has no key {part!r} "
                              f"{where}", hint=hint)
        node = known[part]


def _resolved(node: dict[str, Any] | None, schema: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its local ``$ref`` followed (``#/$defs/name``)."""
    while isinstance(node, dict) and "$ref" in node and node["$ref"].startswith("#/"):
        target: Any = schema
        for step in node["$ref"][2:].split("/"):
            target = target[step]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node or {}


def _alternatives(node: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [node] + [_resolved(branch, schema) for word in ("oneOf", "anyOf", "allOf")
                     for branch in node.get(word, [])]


def _properties(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The named keys of a mapping setting, over all its alternatives."""
    known: dict[str, Any] = {}
    for branch in _alternatives(node, schema):
        known.update(branch.get("properties", {}))
    return known


def _free_keys(node: dict[str, Any], schema: dict[str, Any]) -> bool:
    """Whether a mapping setting takes keys the schema does not name."""
    return any(branch.get("patternProperties") or
               branch.get("additionalProperties", True) is not False
               for branch in _alternatives(node, schema) if branch.get("properties"))
