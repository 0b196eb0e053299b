"""What a user sees stays what it was before the recipe was parsed into frozen sections
(issue 17): the parsed recipe holds tuples and read-only mappings where the YAML has
lists and mappings, and a refusal that quotes a recipe value must still quote it as the
recipe writes it, not as ``('a.csv', 'b.csv')`` or ``mappingproxy({...})``. Each
expected text is what the code before the refactor (0fa4446) printed."""

from __future__ import annotations

import pytest

from medimg_build.errors import RecipeError
from medimg_build.harmonize.normalize import IntensityError
from medimg_build.io import read_image
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.pipeline import harmonize_image
from medimg_build.recipe.sources import list_sources

from fixtures.volume_folder import write_volume

FAST = {"harmonize": {"spacing": None}}


def test_a_list_of_table_names_none_present_is_quoted_as_a_list(tmp_path):
    """nih-chestxray14's source.table lists two releases' names."""
    with pytest.raises(RecipeError) as refused:
        list_sources(load_recipe("nih-chestxray14"), tmp_path)
    assert ("label table not found: none of ['Data_Entry_2017_v2020.csv', "
            "'Data_Entry_2017.csv'] is there") in str(refused.value)


def test_layered_masks_that_pair_with_no_image_are_quoted_as_a_mapping(tmp_path):
    source = tmp_path / "src"
    for case in ("la_003", "la_004"):
        write_volume(source / "images" / f"{case}_0000.nii.gz")
        write_volume(source / "labels" / f"{case}.nii.gz", [0, 1])
    recipe = load_recipe("volume-folder").with_overrides(
        {**FAST, "source": {"masks": {"1": "labels/{case_id}.nii.gz"}}})
    with pytest.raises(RecipeError) as refused:
        list_sources(recipe, source)
    message = str(refused.value)
    assert "by source.masks {'1': 'labels/{case_id}.nii.gz'}: image" in message
    assert "mappingproxy" not in message


@pytest.mark.parametrize("intensity, quoted", [
    ({"window": [100, 50]}, "CT window [100, 50] is not a pair"),
    ({"preset": "mr", "percentiles": [99, 1]}, "MR percentiles [99, 1] is not a pair"),
])
def test_an_intensity_pair_the_preset_refuses_is_quoted_as_written(tmp_path, intensity,
                                                                   quoted):
    """The schema takes any two numbers; the preset refuses low >= high, and the case's
    failure (kept in the store's build report) quotes the recipe's pair."""
    write_volume(tmp_path / "case.nii.gz")
    recipe = load_recipe("volume-folder").with_overrides(
        {"harmonize": {"spacing": None, "intensity": intensity}})
    image = read_image(tmp_path / "case.nii.gz")  # NIfTI: the recipe gives the modality
    image = image.replace(meta={**image.meta, "modality": "CT"})
    with pytest.raises(IntensityError) as refused:
        harmonize_image(image, recipe.harmonize)
    assert quoted in str(refused.value)


def test_intensity_parameters_are_the_ones_given_as_written():
    recipe = load_recipe("volume-folder")
    assert recipe.harmonize.intensity.parameters() == {"window": [-1024, 3071]}
    mr = recipe.with_overrides({"harmonize": {"intensity": {"preset": "mr"}}})
    assert mr.harmonize.intensity.parameters() == {}
