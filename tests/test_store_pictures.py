"""A store remembers which of its cases are pictures (issue 19): ``read_image`` gives a
picture back in picture space (``is_picture``, axes ``column,row``), in both layouts and
both formats, and a store of pictures without boxes or landmarks has empty tables with
row and column columns, not R, A, S. The fact is the case table's
``original_orientation`` (``store/pictures.py``); stores without it still read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medimg_build import open_store
from medimg_build.case import Case
from medimg_build.image import MedicalImage
from medimg_build.io import read_image
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store import create_store

from fixtures import chest_films

PICTURE_BOX = ["row_min", "row_max", "column_min", "column_max"]
WORLD_BOX = ["R_min", "R_max", "A_min", "A_max", "S_min", "S_max"]
STORES = [("stack", ".zarr"), ("stack", ".h5"), ("volumes", ".zarr"), ("volumes", ".h5")]


@pytest.fixture(scope="module")
def film_stores(tmp_path_factory, shared_data) -> dict[tuple[str, str], str]:
    """The real SIIM CR and NIH PNG built into a store of each layout and format."""
    root = tmp_path_factory.mktemp("film-stores")
    source = chest_films.make(root / "source", shared_data)
    built = {}
    for layout, suffix in STORES:
        recipe = load_recipe("nih-chestxray14").with_overrides(
            {**chest_films.OVERRIDES, "layout": layout, "harmonize": {"shape": [64, 64]}})
        out = root / f"{layout}{suffix}"
        assert build_store(recipe, source, out, progress=False).ok
        built[layout, suffix] = str(out)
    return built


@pytest.mark.parametrize("layout, suffix", STORES)
def test_read_image_gives_a_picture_back_as_a_picture(film_stores, layout, suffix):
    store = open_store(film_stores[layout, suffix])
    assert sorted(store.cases["case_id"]) == sorted(chest_films.FILMS)
    for case_id in chest_films.FILMS:
        image = store.read_image(case_id)
        assert image.is_picture, case_id
        assert image.orientation == "column,row"  # not "RA"
        assert "orientation=column,row" in repr(image)
        # Pixels and affine as stored: nothing reoriented on the way out.
        np.testing.assert_array_equal(image.array.T, store.case(case_id)["image"].values[0])


@pytest.mark.parametrize("layout, suffix", STORES)
def test_a_store_of_pictures_without_boxes_has_row_column_tables(film_stores, layout,
                                                                  suffix):
    store = open_store(film_stores[layout, suffix])
    boxes, points = store.boxes(), store.landmarks()
    assert len(boxes) == len(points) == 0
    assert set(PICTURE_BOX) <= set(boxes.columns) and not set(WORLD_BOX) & set(boxes.columns)
    assert {"row", "column"} <= set(points.columns)
    assert not {"R", "A", "S"} & set(points.columns)


# -- stores that do not (or cannot) say it ------------------------------------------------


def _store(path, rows: dict[str, list], spatial_ndim: int = 2):
    """A stack store of two blank cases written directly, with the case table ``rows``."""
    shape = (8, 6, 4)[:spatial_ndim]
    ids = [f"c{i}" for i in range(2)]
    writer = create_store(path, "stack", n_cases=2, attrs={})
    for index, case_id in enumerate(ids):
        image = MedicalImage(np.zeros(shape, np.uint8), np.diag([0.5, 0.5, 2.0, 1.0]),
                             spatial_ndim, {"space": "image"})
        writer.write_case(index, Case(case_id, image))
    writer.close(pd.DataFrame({"case_id": ids, **rows}))
    return open_store(path)


def test_a_store_without_the_fact_still_reads_as_before(tmp_path):
    store = _store(tmp_path / "s.zarr", {})  # no original_orientation column at all
    image = store.read_image("c0")
    assert not image.is_picture and image.orientation == "RA"
    assert set(WORLD_BOX) <= set(store.boxes().columns)


def test_a_store_built_before_pictures_were_named(tmp_path):
    """Before issue 19 a PNG's row said "RA" and its spacing_unit "pixel"; a 2D source in
    mm (a slice of a volume, a CR of then) cannot be told from a slice, and reads as one."""
    store = _store(tmp_path / "s.zarr", {"original_orientation": ["RA", "RA"],
                                         "spacing_unit": ["pixel", "mm"]})
    assert store.read_image("c0").is_picture
    assert not store.read_image("c1").is_picture
    # A table holding both kinds of case: an empty table has both sets of columns.
    assert set(WORLD_BOX + PICTURE_BOX) <= set(store.boxes().columns)


def test_a_volume_with_pixel_spacing_unknown_is_no_picture(tmp_path):
    store = _store(tmp_path / "s.zarr", {"original_orientation": ["LPS", "column,row"],
                                         "spacing_unit": ["pixel", "pixel"]}, spatial_ndim=3)
    assert not store.read_image("c0").is_picture
    assert store.read_image("c0").orientation == "RAS"


def test_a_picture_of_unknown_pixel_size_says_pixel_not_mm(tmp_path, shared_data):
    """A PNG states no pixel size: its image, read from the file or from a store, says
    its spacings are in pixels, as the case table's spacing_unit does."""
    png = shared_data / "torchxrayvision" / "tests" / "00000001_000.png"
    assert "spacing=(1, 1) pixel" in repr(read_image(png))  # was "(1, 1) mm"
    assert read_image(png).spacing_unit == "pixel"
    store = _store(tmp_path / "s.zarr", {"original_orientation": ["column,row"] * 2,
                                         "spacing_unit": ["pixel", "mm"]})
    assert " pixel, orientation=column,row" in repr(store.read_image("c0"))
    assert store.read_image("c0").spacing_unit == "pixel"
    assert store.read_image("c1").spacing_unit == "mm"


@pytest.mark.parametrize("layout, suffix", STORES)
def test_read_image_gives_each_case_its_own_modality(film_stores, layout, suffix):
    """The SIIM film is a CR (its header), NIH's PNG a DX (the recipe): read_image said
    the store's DX for both, though the case table knows each."""
    store = open_store(film_stores[layout, suffix])
    assert {c: store.read_image(c).meta["modality"] for c in chest_films.FILMS} == {
        "siim-cr": "CR", "00000001_000": "DX"}
