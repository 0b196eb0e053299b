"""Recipes are data validated against schema/recipe.schema.json, with clear errors."""

from __future__ import annotations

import pytest

from medimg_build.errors import RecipeError
from medimg_build.recipe.model import bundled_recipes, load_recipe


def test_bundled_recipes_validate_and_hash_stably():
    recipes = {r.name: r for r in bundled_recipes()}
    assert {"volume-folder", "nih-chestxray14"} <= set(recipes)
    again = {r.name: r.content_hash for r in bundled_recipes()}
    assert {n: r.content_hash for n, r in recipes.items()} == again


def test_content_hash_ignores_formatting_but_not_content(tmp_path):
    recipe = load_recipe("volume-folder")
    reformatted = tmp_path / "r.yaml"
    import yaml
    reformatted.write_text(yaml.safe_dump(recipe.data, default_flow_style=True))
    assert load_recipe(reformatted).content_hash == recipe.content_hash
    changed = recipe.with_overrides({"harmonize": {"spacing": [1.0, 1.0, 1.0]}})
    assert changed.content_hash != recipe.content_hash


@pytest.mark.parametrize("overrides, expected", [
    ({"harmonize": {"spacing": [-1, 1, 1]}}, "harmonize.spacing.0"),
    ({"sourc": {}}, "'sourc' was unexpected"),
    ({"source": {"imgs": "x"}}, "'imgs' was unexpected"),
    ({"harmonize": {"intensity": {"preset": "fancy"}}}, "'fancy' is not one of"),
    ({"layout": "pile"}, "layout"),
    ({"organ": "elbow"}, "organ"),
])
def test_recipe_mistakes_are_one_line_errors_naming_the_file(overrides, expected):
    recipe = load_recipe("volume-folder")
    with pytest.raises(RecipeError) as caught:
        recipe.with_overrides(overrides)
    message = str(caught.value)
    assert expected in message
    assert message.startswith(recipe.path)
    assert "\n" not in message


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nsource:\n  kind: [unclosed\n")
    with pytest.raises(RecipeError, match=r"broken.yaml: is not valid YAML at line"):
        load_recipe(path)


def test_unknown_recipe_name():
    with pytest.raises(RecipeError, match="no such recipe"):
        load_recipe("no-such-recipe")


def test_none_override_removes_a_key():
    recipe = load_recipe("volume-folder").with_overrides(
        {"harmonize": {"intensity": {"preset": "mr", "window": None}}})
    assert recipe.data["harmonize"]["intensity"] == {"preset": "mr"}


def test_another_intensity_preset_starts_afresh():
    recipe = load_recipe("volume-folder")  # ct, with a window
    mr = recipe.with_overrides({"harmonize": {"intensity": {"preset": "mr"}}})
    assert mr.data["harmonize"]["intensity"] == {"preset": "mr"}
    same = recipe.with_overrides({"harmonize": {"intensity": {"window": [-100, 200]}}})
    assert same.data["harmonize"]["intensity"] == {"preset": "ct", "window": [-100, 200]}
