"""The Decathlon's test images are its official test split: dataset.json lists them under
"test" (["./imagesTs/liver_132.nii.gz", ...]; Task03_Liver layout and dataset.json as in
tests/fixtures/msd.py, which cites the real files), and a task folder without dataset.json
keeps them in imagesTs/. Built with include_test, they must land in the "test" split, as
the nnunet recipe puts imagesTs; before, they were dealt into train and val by hash,
unlabelled images in the training split."""

from __future__ import annotations

import pytest

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

from fixtures.msd import make_task03_liver

WITH_TEST = {"source": {"options": {"modality": "CT", "include_test": True}}}


@pytest.mark.parametrize("with_json", [True, False], ids=["dataset_json", "no_dataset_json"])
def test_msd_test_images_are_the_test_split(tmp_path, shared_data, with_json):
    """The Decathlon's test images (dataset.json "test", or imagesTs/ of a task folder
    without dataset.json) are the test split, not dealt into train/val."""
    made = make_task03_liver(tmp_path / "src", shared_data)
    if not with_json:
        (made["task"] / "dataset.json").unlink()
    out = tmp_path / "liver.zarr"
    report = build_store(load_recipe("msd").with_overrides(WITH_TEST), made["task"], out,
                         progress=False)
    assert report.ok
    splits = dict(open_store(out).cases.set_index("case_id")["split"])
    assert [splits[c] for c in made["test"]] == ["test"]
    assert {splits[c] for c in made["cases"]} <= {"train", "val"}
