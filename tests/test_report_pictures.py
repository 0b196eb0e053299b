"""The QC report draws pictures as they were taken (issue 19): a real DICOM CR (the SIIM
file: PixelSpacing, no ImageOrientationPatient) and a real ChestX-ray14 PNG, row 0 at
the top and column 0 at the left, with no anatomical direction letters -- in the
thumbnails the report writes and in what Chromium shows of the page.

Orientation is judged against the source file's own pixels: a chest film is far from
symmetric top to bottom (neck and shoulders above, the diaphragm's bright dome below),
so the thumbnail, shrunk, correlates with the source as acquired much better than with
the source flipped or turned."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medimg_build import open_store
from medimg_build.io import read_image
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.report import write_report
from medimg_build.report.reading import picture_cases, planes_of, read_case
from medimg_build.report.views import CONVENTION, PICTURE

from fixtures import chest_films
from fixtures.chest_films import FILMS
from required import missing

CHROMIUM = Path("/usr/bin/chromium")
SIZE = 32  # both images shrunk to this before they are compared


@pytest.fixture(scope="module")
def chest_report(tmp_path_factory, shared_data) -> Path:
    root = tmp_path_factory.mktemp("films")
    chest_films.make(root / "source", shared_data)
    recipe = load_recipe("nih-chestxray14").with_overrides(
        {**chest_films.OVERRIDES, "harmonize": {"shape": [256, 256]}})
    assert build_store(recipe, root / "source", root / "films.zarr", progress=False).ok
    return write_report(root / "films.zarr", root / "report")


def source_rows_first(shared: Path, case_id: str) -> np.ndarray:
    """The source file's pixels as stored in it: (rows, columns), row 0 first."""
    return np.asarray(read_image(shared / "torchxrayvision" / "tests" / FILMS[case_id][0])
                      .array, dtype=np.float32).T


def shrunk(pixels: np.ndarray) -> np.ndarray:
    grey = pixels.mean(axis=2) if pixels.ndim == 3 else pixels
    small = Image.fromarray(np.asarray(grey, np.float32), "F").resize((SIZE, SIZE),
                                                                      Image.BILINEAR)
    return np.asarray(small, dtype=np.float64)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def assert_drawn_as_acquired(drawn: np.ndarray, source: np.ndarray, what: str) -> None:
    """``drawn`` (rows, columns[, RGB]) shows ``source`` as acquired: it matches the
    source far better than the source upside down or turned half round, and better
    than the source mirrored (a chest is nearly symmetric left to right: the heart and
    the film's side marker tell them apart)."""
    drawn, source = shrunk(drawn), shrunk(source)
    as_acquired = correlation(drawn, source)
    assert as_acquired > 0.9, f"{what}: correlation {as_acquired:.2f} with the source"
    for name, other, margin in (("upside down", source[::-1], 0.2),
                                ("turned 180 degrees", source[::-1, ::-1], 0.2),
                                ("mirrored", source[:, ::-1], 0.02)):
        flipped = correlation(drawn, other)
        assert as_acquired > flipped + margin, \
            f"{what} looks {name}: correlation {as_acquired:.3f}, {flipped:.3f} {name}"


def thumbnail_of(report: Path, case_id: str) -> Path:
    """The case's one thumbnail (a 2D case has one plane), whatever view it was drawn as."""
    (found,) = (report.parent / "images").glob(f"*_{case_id}_*.png")
    return found


def direction_letters(rgb: np.ndarray) -> int:
    """Pixels of the yellow (#ffd84d) of the direction letters: an X-ray is grey."""
    red, green, blue = (rgb[..., c].astype(int) for c in range(3))
    return int(((red > 200) & (green > 150) & (blue < 140) & (red - blue > 90)).sum())


def test_store_pictures_are_planned_as_acquired(chest_report, shared_data):
    """The arrays the report draws: the stored image's rows and columns, unflipped, and
    those the source's."""
    store = open_store(chest_report.parent.parent / "films.zarr")
    flags = picture_cases(store.cases).set_axis(store.cases["case_id"])
    assert flags.to_dict() == {"00000001_000": True, "siim-cr": True}
    for case_id in FILMS:
        case = read_case(store, case_id, pd.DataFrame(), pd.DataFrame(), picture=True)
        (plane,) = planes_of(case)
        assert plane.view is PICTURE and plane.view.edges == ("", "", "", "")
        drawn = plane.extract(case.image.array)
        stored = store.case(case_id)["image"].values[0]  # (y, x): rows, columns
        np.testing.assert_array_equal(drawn, stored)
        assert_drawn_as_acquired(drawn, source_rows_first(shared_data, case_id), case_id)


def test_report_thumbnails_show_the_cr_and_the_png_as_acquired(chest_report, shared_data):
    html = chest_report.read_text()
    assert CONVENTION.split(":")[0] not in html  # no anatomical view, no convention
    for case_id in FILMS:
        thumbnail = thumbnail_of(chest_report, case_id)
        assert thumbnail.stem.endswith(f"_{PICTURE.name}"), f"{case_id}: {thumbnail.name}"
        rgb = np.asarray(Image.open(thumbnail).convert("RGB"))
        assert direction_letters(rgb) == 0, f"{case_id}: direction letters drawn"
        assert_drawn_as_acquired(rgb, source_rows_first(shared_data, case_id), case_id)


# -- in a browser ---------------------------------------------------------------------


def screenshot(page: Path, png: Path, profile: Path, size=(1280, 4000)) -> np.ndarray:
    """The page as Chromium draws it, one CSS pixel a screen pixel (thumbnails are shown
    at their own 256 px), in a window tall enough for the first tiles below the card."""
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is missing (apt-get install chromium)", "MEDIMG_REQUIRE_BROWSER")
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1", "--force-color-profile=srgb",
         f"--user-data-dir={profile}", f"--screenshot={png}",
         f"--window-size={size[0]},{size[1]}", page.as_uri()],
        check=True, capture_output=True, timeout=180)
    return np.asarray(Image.open(png).convert("RGB"))


def locate(page: np.ndarray, tile: np.ndarray) -> tuple[int, int, float]:
    """Where the grey ``tile`` sits in the grey ``page``: the top-left (row, column) of
    the least sum of squared differences (correlation by FFT, window sums by an integral
    image), and the mean absolute difference there."""
    (height, width), (h, w) = page.shape, tile.shape
    spectrum = np.fft.rfft2(page) * np.conj(np.fft.rfft2(tile, page.shape))
    products = np.fft.irfft2(spectrum, page.shape)[:height - h + 1, :width - w + 1]
    integral = np.pad(page ** 2, ((1, 0), (1, 0))).cumsum(axis=0).cumsum(axis=1)
    window = (integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w]
              + integral[:-h, :-w])
    row, column = np.unravel_index(np.argmin(window - 2 * products), window.shape)
    found = page[row:row + h, column:column + w]
    return int(row), int(column), float(np.abs(found - tile).mean())


def test_chromium_shows_the_cr_and_the_png_as_acquired(chest_report, shared_data, tmp_path):
    page = screenshot(chest_report, tmp_path / "report.png", tmp_path / "profile")
    grey_page = page.astype(np.float64).mean(axis=2)
    for case_id in FILMS:
        thumbnail = np.asarray(Image.open(thumbnail_of(chest_report, case_id)).convert("RGB"))
        row, column, difference = locate(grey_page, thumbnail.astype(np.float64).mean(axis=2))
        assert difference < 3, f"{case_id}: its thumbnail is not on the page as written"
        shown = page[row:row + thumbnail.shape[0], column:column + thumbnail.shape[1]]
        assert direction_letters(shown) == 0
        assert_drawn_as_acquired(shown, source_rows_first(shared_data, case_id),
                                 f"{case_id} in Chromium")
