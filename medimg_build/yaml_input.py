"""YAML that users download or type (recipes, --set values, catalogs, collections),
read without aliases.

An alias (``*name``) repeats a node anchored elsewhere; nested, a few kilobytes of
them expand to billions of elements ("billion laughs"), and a recipe's free-form
``source.options`` would carry them into the build. No recipe needs one, so the reader
refuses every alias at the place it stands, before anything is expanded.
"""

from __future__ import annotations

from typing import Any

import yaml


class AliasRefused(yaml.composer.ComposerError):
    """A YAML alias, refused (module docstring)."""


class _NoAliasLoader(yaml.SafeLoader):
    # The pure-Python loader: libyaml's (CSafeLoader) composes in C, where an alias
    # could not be stopped before it is expanded.
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise AliasRefused(None, None, "YAML aliases (*name) are not accepted: write "
                               "the value out", self.peek_event().start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` without aliases: AliasRefused (a yaml.YAMLError) at the first."""
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader)


def yaml_problem(error: yaml.YAMLError, limit: int = 200) -> str:
    """What is wrong, and where, in one short line for an error message."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark else ""
    problem = " ".join(str(getattr(error, "problem", None) or "invalid syntax").split())
    return f"{where} ({problem[:limit]})"
