"""DRIVE as today's grand-challenge download unpacks: the test set without its manual
tracings. https://drive.grand-challenge.org/ withholds test/1st_manual and test/2nd_manual
("20 test images (no annotations available)", the DRIVE Dataset class found by the
search corpus; the recipe's own comment says so too); training/ is as in DRIVE.zip
(tests/fixtures/drive.py). A stack store has one mask array, so the test images cannot
join the traced training images: they fail alone with the reason, whatever order the
cases are written in. Before, the writer kept whichever kind of case it saw first (here
the maskless test images, as "test" sorts before "training") and failed every traced
training image with "mask dtype uint8 where the store has None"."""

from __future__ import annotations

import shutil

import numpy as np
import xarray as xr

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

from fixtures import drive


def test_drive_without_test_tracings_keeps_the_traced_images(tmp_path):
    made = drive.make(tmp_path)
    for withheld in ("1st_manual", "2nd_manual"):
        shutil.rmtree(tmp_path / "test" / withheld)
    out = tmp_path / "drive.zarr"
    report = build_store(load_recipe("drive"), tmp_path, out, progress=False)
    assert sorted(report.built) == ["21_training", "22_training", "34_training"]
    assert sorted(report.failed) == ["01_test", "02_test"]
    assert all("no mask, where other cases of this stack store have one" in why
               for why in report.failed.values())
    mask = xr.open_zarr(out)["mask"].sel(case="21_training").values
    np.testing.assert_array_equal(mask & 2 != 0, made["made"]["21_training"]["vessels"])


def test_drive_training_images_of_that_download_build_alone(tmp_path):
    drive.make(tmp_path)
    shutil.rmtree(tmp_path / "test" / "1st_manual")
    recipe = load_recipe("drive").with_overrides({"source": {"images": "training/images/*.tif"}})
    report = build_store(recipe, tmp_path, tmp_path / "drive.zarr", progress=False)
    assert report.ok and len(report.built) == 3


def test_a_maskless_image_that_fails_is_reported_once_as_failed(tmp_path):
    """The withheld test tracings leave 01_test and 02_test without a mask: listed as
    incomplete, then failed by the stack store's rule. Each is reported once, as what
    happened to it (failed), on the console and in the stored build_report."""
    drive.make(tmp_path)
    for withheld in ("1st_manual", "2nd_manual"):
        shutil.rmtree(tmp_path / "test" / withheld)
    out = tmp_path / "drive.zarr"
    report = build_store(load_recipe("drive"), tmp_path, out, progress=False)
    assert sorted(report.failed) == ["01_test", "02_test"]
    assert report.incomplete == {}
    summary = report.summary()
    assert "incomplete" not in summary
    assert [line.split(":")[0] for line in summary.splitlines() if "01_test" in line] == [
        "  failed 01_test"]
    stored = open_store(out).attrs["build_report"]
    assert "incomplete" not in stored and len(stored["failed"]) == 2
