"""Named source parsers and image loaders, for what a recipe's YAML cannot express
(LIDC's XML reads, DeepLesion's PNG slice folders, a Decathlon dataset.json).

A recipe says ``source: {kind: parser, parser: NAME, options: {...}}``; the parser
``NAME`` turns the source folder into cases. A case may name a loader (``CaseSource.
loader``) when its pixels need more than ``read_image``. Both are registered by name,
so a recipe stays data and a worker process finds the function by importing this
package."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import RecipeError
from ...image import MedicalImage
from ..sections import ParserSource
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
OPTIONS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {}  # name -> (known, required)
LOADERS: dict[str, Loader] = {}


def parser(name: str, options: Iterable[str] = (),
           required: Iterable[str] = ()) -> Callable[[Parser], Parser]:
    """Register a parser under ``name`` with the recipe options it reads (``options``)
    and those it cannot do without (``required``): run_parser refuses any other, so a
    misspelt option is an error rather than a default silently used."""
    def register(function: Parser) -> Parser:
        PARSERS[name] = function
        OPTIONS[name] = (frozenset(options) | frozenset(required), tuple(required))
        return function
    return register


def loader(name: str) -> Callable[[Loader], Loader]:
    def register(function: Loader) -> Loader:
        LOADERS[name] = function
        return function
    return register


def run_parser(source: ParserSource, root: Path, key: bytes):
    _import_all()
    name = source.parser
    if name not in PARSERS:
        raise RecipeError(None, f"unknown source parser {name!r}",
                          hint=f"known parsers: {', '.join(sorted(PARSERS)) or 'none'}")
    options = source.options
    _check_options(name, options)
    return PARSERS[name](options, root, key)


def _check_options(name: str, options: dict[str, Any]) -> None:
    known, required = OPTIONS[name]
    missing = [option for option in required if option not in options]
    problems = [f"missing option(s) {missing}"] if missing else []
    for option in sorted(set(options) - known):
        close = difflib.get_close_matches(option, sorted(known), n=1)
        problems.append(f"unknown option {option!r}"
                        + (f" (did you mean {close[0]!r}?)" if close else ""))
    if problems:
        raise RecipeError(None, f"{name} parser: {'; '.join(problems)}",
                          hint=f"its source.options are {', '.join(sorted(known)) or 'none'}")


def load(name: str, path: Path, args: dict[str, Any]) -> MedicalImage:
    _import_all()
    return LOADERS[name](path, **args)


def _import_all() -> None:
    """Import every parser module once, so that each registers itself."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
