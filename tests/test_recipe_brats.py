"""The bundled brats recipe builds a miniature BraTS 2021 download (tests/fixtures/brats.py):
four sequences stacked as channels in the recipe's order, seg as mask with labels 0/1/2/4."""

from __future__ import annotations

import numpy as np

from fixtures.brats import make_brats2021
from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store


def test_brats2021_builds_four_channels_and_its_tumour_labels(tmp_path):
    made = make_brats2021(tmp_path / "src")
    out = tmp_path / "brats.zarr"
    report = build_store(load_recipe("brats"), tmp_path / "src", out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert validate_store(out) == []

    store = open_store(out)
    assert sorted(store.cases["case_id"]) == made["cases"]
    classes = store.attrs["labels"]["segmentation"]["classes"]
    assert sorted(int(v) for v in classes) == [0, 1, 2, 4]
    for case_id in made["cases"]:
        image = store.read_image(case_id)
        assert image.n_channels == 4
        mask = store.read_mask(case_id)
        if case_id in made["with_seg"]:
            assert sorted(int(v) for v in np.unique(mask.array)) == made["label_values"][case_id]
        else:  # the validation download has no seg
            assert mask is None
    # Channels in the recipe's order t1, t1ce, t2, flair: the enhancing tumour (4) is
    # bright on t1ce only, the edema (2) brightest on t2 and flair.
    image = store.read_image("BraTS2021_00000").array
    mask = store.read_mask("BraTS2021_00000").array
    enhancing = image[mask == 4].mean(axis=0)
    edema = image[mask == 2].mean(axis=0)
    assert np.argmax(enhancing) == 1
    assert np.argmax(edema - enhancing) in (2, 3)
