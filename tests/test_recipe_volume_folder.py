"""The bundled volume-folder recipe builds NIfTI pairs and a DICOM series folder."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store

from fixtures import volume_folder


def test_volume_folder_recipe_builds_its_fixture(shared_data, tmp_path):
    made = volume_folder.make(tmp_path / "src", shared_data)
    seg = np.asanyarray(nib.load(shared_data / "totalsegmentator" /
                                 "example_seg_dicom.nii.gz").dataobj)
    classes = {str(int(v)): f"structure_{int(v)}" for v in np.unique(seg)}
    recipe = load_recipe("volume-folder").with_overrides(
        {"labels": {"segmentation": {"classes": classes}}})
    out = tmp_path / "vf.zarr"
    report = build_store(recipe, tmp_path / "src", out, progress=False)
    assert report.ok and len(report.built) == made["cases"]
    assert validate_store(out) == []
    store = open_store(out)
    masks = [store.read_mask(c) for c in store.cases["case_id"]]
    assert sum(m is not None for m in masks) == made["with_mask"]
    # The mask sits on the structure it outlines: HU 60 under label 1.
    image, mask = store.read_image("case000").array, store.read_mask("case000").array
    assert abs(float(np.median(image[mask == 1])) - 60) <= 1
    assert all(s == "RAS" for s in (store.read_image(c).orientation
                                    for c in store.cases["case_id"]))
