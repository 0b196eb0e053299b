"""Every parser declares the source.options it reads, and one check refuses the others:
a misspelt option was silently ignored by most parsers (the default used instead)."""

from __future__ import annotations

import pytest

from medimg_build.errors import RecipeError
from medimg_build.recipe.model import Recipe, load_recipe
from medimg_build.recipe.parsers import OPTIONS, PARSERS, _import_all
from medimg_build.recipe.sources import list_sources


def _with_options(name: str, **options) -> Recipe:
    recipe = load_recipe(name)
    written = recipe.data["source"]
    source = {**written, "options": {**written.get("options", {}), **options}}
    return Recipe.from_dict({**recipe.data, "source": source})


def test_every_parser_declares_its_options():
    _import_all()
    assert set(OPTIONS) == set(PARSERS)


@pytest.mark.parametrize("recipe, typo, meant", [
    ("deeplesion", "tabel", "table"), ("lidc-idri", "consensus", "consensus_level"),
    ("scr", "bins", "bin"), ("cbis-ddsm", "table", "tables"),
    ("cervical-screening", "relabels", "relabel")])
def test_a_misspelt_option_is_refused_with_the_one_meant(tmp_path, recipe, typo, meant):
    with pytest.raises(RecipeError, match=f"unknown option {typo!r} \\(did you mean "
                                          f"{meant!r}\\?\\)"):
        list_sources(_with_options(recipe, **{typo: "x"}), tmp_path)


def test_a_missing_required_option_is_named(tmp_path):
    recipe = load_recipe("adni")
    written = recipe.data["source"]
    options = {k: v for k, v in written["options"].items() if k != "key_column"}
    broken = Recipe.from_dict({**recipe.data, "source": {**written, "options": options}})
    with pytest.raises(RecipeError, match=r"table_join parser: missing option\(s\) "
                                          r"\['key_column'\]"):
        list_sources(broken, tmp_path)
