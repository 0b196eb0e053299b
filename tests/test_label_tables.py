"""Label tables as real releases write them: a trailing comma on every line (NIH's
Data_Entry_2017*.csv) is an unnamed empty column, while rows with one field more
than their header are refused instead of read shifted by one column."""

from __future__ import annotations

import pytest

from medimg_build.errors import RecipeError
from medimg_build.recipe.label_tables import read_label_table


def test_trailing_comma_on_header_and_rows_is_an_empty_last_column(tmp_path):
    table = tmp_path / "Data_Entry_2017_v2020.csv"
    table.write_text("Image Index,Finding Labels,Patient Sex,\n00000001_000.png,Cardiomegaly,M,\n")
    read = read_label_table(table)
    assert list(read.columns) == ["Image Index", "Finding Labels", "Patient Sex", "Unnamed: 3"]
    assert read.iloc[0].tolist() == ["00000001_000.png", "Cardiomegaly", "M", ""]


def test_rows_longer_than_the_header_are_refused_not_shifted(tmp_path):
    """pandas took the first field for an index and read 'Image Index' from the next
    one: every image named by its finding, every sex read from the view position."""
    table = tmp_path / "Data_Entry_2017.csv"
    table.write_text("Image Index,Finding Labels,Patient Gender\n"
                     "00000001_000.png,Cardiomegaly,M,\n")
    with pytest.raises(RecipeError, match="Data_Entry_2017.csv: has rows with more fields "
                                          "than its header names"):
        read_label_table(table)


@pytest.mark.parametrize("recipe, key", [("deeplesion", "source.options.table"),
                                         ("cbis-ddsm", "source.options.tables")])
def test_a_missing_table_names_the_recipe_key_that_names_it(tmp_path, recipe, key):
    """Parsers name their tables under source.options; the refusal pointed to
    source.table, a key these recipes do not have (--set refuses it)."""
    from medimg_build.recipe.model import load_recipe
    from medimg_build.recipe.sources import list_sources

    (tmp_path / "Images_png").mkdir()
    (tmp_path / "Mass-Training_P_00001_LEFT_CC").mkdir()
    with pytest.raises(RecipeError, match="label table not found") as raised:
        list_sources(load_recipe(recipe), tmp_path)
    assert key in str(raised.value) and "source.table" not in str(raised.value).replace(key, "")
