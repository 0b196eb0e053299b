"""An nnU-Net v1 raw task (nnUNet_raw_data/Task001_BrainTumour) as nnU-Net v1's
convert_MSD_dataset / split_4d wrote it: the Decathlon's dataset.json kept as it was
(modality, labels "0": "background", training entries naming ./imagesTr/BRATS_001.nii.gz)
while imagesTr holds one file per channel, BRATS_001_0000.nii.gz ... _0003 (nnU-Net v1
documentation dataset_conversion.md; nnunetv2 2.8.1 dataset_conversion/
convert_raw_dataset_from_old_nnunet_format.py reads these folders; the Task01 dataset.json
keys and names as in MSD's tarball, see /work/notes/i16-research-B.md 8.4). The nnunet
recipe builds it; the msd recipes find none of the listed files and must say why, not
"no cases found with parser pattern '.'"."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.errors import RecipeError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

MODALITY = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
LABELS = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}


def _v1_task(root):
    task = root / "nnUNet_raw_data" / "Task001_BrainTumour"
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (task / folder).mkdir(parents=True)
    training = []
    for case in ("BRATS_001", "BRATS_002"):
        for channel in range(4):  # channel k holds 10 * (k + 1): its order can be checked
            nib.save(nib.Nifti1Image(np.full((6, 6, 4), 10.0 * (channel + 1), np.float32),
                                     np.eye(4)), task / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
        seg = np.zeros((6, 6, 4), np.uint8)
        seg[0], seg[1], seg[2] = 1, 2, 3
        nib.save(nib.Nifti1Image(seg, np.eye(4)), task / "labelsTr" / f"{case}.nii.gz")
        training.append({"image": f"./imagesTr/{case}.nii.gz",
                         "label": f"./labelsTr/{case}.nii.gz"})
    (task / "dataset.json").write_text(json.dumps({
        "name": "BRATS", "description": "Gliomas segmentation tumour and oedema in on brain images",
        "reference": "https://www.med.upenn.edu/sbia/brats2017.html", "licence": "CC-BY-SA 4.0",
        "relase": "2.0 04/05/2018", "tensorImageSize": "4D", "modality": MODALITY,
        "labels": LABELS, "numTraining": 2, "numTest": 0, "training": training, "test": []},
        indent=4))
    return task


def test_msd_recipe_on_an_nnunet_v1_task_names_the_nnunet_recipe(tmp_path):
    task = _v1_task(tmp_path)
    with pytest.raises(RecipeError, match=r"_0000.*nnunet recipe"):
        build_store(load_recipe("msd-mr"), task, tmp_path / "o.zarr", progress=False)


def test_nnunet_recipe_builds_an_nnunet_v1_task(tmp_path):
    task = _v1_task(tmp_path)
    out = tmp_path / "o.zarr"
    report = build_store(load_recipe("nnunet"), task.parent, out, progress=False)
    assert report.ok and sorted(report.built) == ["BRATS_001", "BRATS_002"]
    store = open_store(out)
    assert store.attrs["labels"]["segmentation"]["classes"] == LABELS
    assert set(store.cases["channels"]) == {"FLAIR,T1w,t1gd,T2w"}
    means = store.cases.set_index("case_id").loc["BRATS_001", "intensity"]["mean"]
    assert [float(m) for m in means] == [10.0, 20.0, 30.0, 40.0]
    values, counts = np.unique(store.read_mask("BRATS_001").array, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == {0: 72, 1: 24, 2: 24, 3: 24}
