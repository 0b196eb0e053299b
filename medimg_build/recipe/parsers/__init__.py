"""Named source parsers and image loaders, for what a recipe's YAML cannot express
(LIDC's XML reads, DeepLesion's PNG slice folders, a Decathlon dataset.json).

A recipe says ``source: {kind: parser, parser: NAME, options: {...}}``; the parser
``NAME`` turns the source folder into cases. A case may name a loader (``CaseSource.
loader``) when its pixels need more than ``read_image``. Both are registered by name,
so a recipe stays data and a worker process finds the function by importing this
package."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import RecipeError
from ...image import MedicalImage
from ..sources import SourceListing

Parser = Callable[[dict[str, Any], Path, bytes], Any]  # (options, root, key) -> SourceListing
Loader = Callable[..., MedicalImage]



@dataclass(frozen=True)
class ParsedListing(SourceListing):
    """A parser's cases plus the label vocabulary the source itself declares (a
    Decathlon dataset.json's "labels"), as a ``labels`` section of a recipe, e.g.
    ``{"segmentation": {"classes": {"0": "background", "1": "liver"}}}``. The build
    puts each of its label kinds' keys over the recipe's (recipe/build.py)."""

    labels: dict[str, Any] = field(default_factory=dict)


PARSERS: dict[str, Parser] = {}
LOADERS: dict[str, Loader] = {}


def parser(name: str) -> Callable[[Parser], Parser]:
    def register(function: Parser) -> Parser:
        PARSERS[name] = function
        return function
    return register


def loader(name: str) -> Callable[[Loader], Loader]:
    def register(function: Loader) -> Loader:
        LOADERS[name] = function
        return function
    return register


def run_parser(source: dict[str, Any], root: Path, key: bytes):
    _import_all()
    name = source["parser"]
    if name not in PARSERS:
        raise RecipeError(None, f"unknown source parser {name!r}",
                          hint=f"known parsers: {', '.join(sorted(PARSERS)) or 'none'}")
    return PARSERS[name](source.get("options", {}), root, key)


def load(name: str, path: Path, args: dict[str, Any]) -> MedicalImage:
    _import_all()
    return LOADERS[name](path, **args)


def _import_all() -> None:
    """Import every parser module once, so that each registers itself."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
