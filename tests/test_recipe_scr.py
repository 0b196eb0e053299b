"""The bundled SCR recipe builds JSRT raw images with the SCR masks combined into one
label map as each case's mask. Layout (All247images/, scratch/fold1|fold2/masks/<structure>/)
verified against the SCR data page and public scripts cited in tests/fixtures/scr.py."""

from __future__ import annotations

from collections import Counter

import numpy as np
import xarray as xr

from medimg_build import open_store
from medimg_build.recipe import parsers
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.sources import list_sources
from medimg_build.store.validate import validate_store

from fixtures import scr


def test_scr_recipe_builds_jsrt_raw_images(tmp_path):
    made = scr.make(tmp_path)
    recipe = load_recipe("scr")
    out = tmp_path / "scr.zarr"
    report = build_store(recipe, tmp_path, out, progress=False)
    assert report.ok and len(report.built) == made["cases"]
    assert validate_store(out) == []

    store = open_store(out)
    classes = store.attrs["labels"]["classification"]["nodule"]["classes"]
    labels = {case: classes[int(v)] for case, v in store.labels("nodule").items()}
    assert Counter(labels.values()) == made["per_class"]
    assert labels["JPCLN001"] == "yes" and labels["JPCNN001"] == "no"
    cases = store.cases.set_index("case_id")
    # SCR's folds (scratch/fold1, scratch/fold2) are kept and are the official split:
    # fold1 trains, fold2 tests (the old recipe took the folder "fold1" as a column only,
    # and split at random).
    assert cases["scr_folder"].to_dict() == made["folds"]
    split = store.cases.set_index("case_id")["split"].to_dict()
    assert split == {name: {"fold1": "train", "fold2": "test"}[fold]
                     for name, fold in made["folds"].items()}
    # Inverted: the lungs (dark on film, high raw values) are dark in the store.
    ds = xr.open_zarr(out)
    image = ds["image"].sel(case="JPCLN001").values[0].astype(float)  # (y, x) 512 x 512
    assert image[250, 150] < image[50, 256]  # right lung field vs. above the lungs
    # The combined SCR map is the stored mask, on the stacked image grid.
    mask = ds["mask"].sel(case="JPCLN001").values  # (y, x)
    assert set(np.unique(mask)) <= {0, 1, 2, 3} and {1, 2} <= set(np.unique(mask))
    assert image[mask == 1].mean() < image[mask == 0].mean()  # lung fields are dark


def test_jsrt_raw_and_scr_labels_share_one_grid(tmp_path):
    made = scr.make(tmp_path)
    listing = list_sources(load_recipe("scr"), tmp_path)
    assert listing.skipped == {}
    case = next(c for c in listing.cases if c.case_id == "JPCLN002")
    image = parsers.load(case.loader, case.image_path, case.loader_args)
    assert image.spatial_shape == (1024, 1024) and image.spacing == (0.35, 0.35)
    assert image.meta["pixel_spacing_known"] and image.meta["intensity"]["bits_stored"] == 12
    density = made["made"]["JPCLN002"]["density"]
    np.testing.assert_array_equal(image.array.T, 4095 - density)  # higher = brighter
    mask = parsers.load("scr_labels", case.image_path,
                        {"masks": case.fields["scr_masks"], "bin": 2})
    np.testing.assert_allclose(mask.affine, image.affine)
    labels = mask.array.T
    np.testing.assert_array_equal(labels, made["made"]["JPCLN002"]["labels"])
    # The clavicle crosses the lung apex: there it is the clavicle (3), below it lung (1).
    assert labels[250, 300] == 3 and labels[300, 300] == 1 and labels[700, 500] == 2


def test_macos_forks_of_images_and_masks_are_system_files(tmp_path):
    """Red-team (issue 16 item 11), on the real JSRT/SCR names (All247images/JPCLN001.IMG;
    scratch/fold1/masks/<structure>/JPCLN001.gif, public scripts: find_string ids
    26012228199, 31268795893): ``._JPCLN001.IMG`` and ``._JPCLN001.gif`` forks were
    reported as an image without SCR masks and as a mask without an image."""
    made = scr.make(tmp_path)
    image = next((tmp_path / "All247images").glob("*.IMG"))
    fork_image = image.with_name(f"._{image.name}")
    mask = next((tmp_path / "scratch").rglob(f"{image.stem}.gif"))
    fork_mask = mask.with_name(f"._{mask.name}")
    for fork in (fork_image, fork_mask):
        fork.write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X")
    listing = list_sources(load_recipe("scr"), tmp_path)
    assert len(listing.cases) == made["cases"]
    for fork in (fork_image, fork_mask):
        assert ".DS_Store, ._*" in listing.skipped[fork.relative_to(tmp_path).as_posix()]
