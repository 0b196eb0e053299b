"""The bundled brats recipe builds BraTS 2020 and 2021 from their real downloads
(tests/fixtures/brats.py says where each layout was verified): four sequences stacked as
channels in the recipe's order, the seg as mask with labels 0/1/2/4 -- case 355 of 2020
included, whose seg the release names W39_1998.09.19_Segm.nii."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fixtures.brats import make_brats2020, make_brats2021
from medimg_build import open_store
from medimg_build.errors import RecipeError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store

SUFFIXES = ["_t1", "_t1ce", "_t2", "_flair"]  # the recipe's channel order


def build(tmp_path, recipe="brats"):
    out = tmp_path / f"{recipe}.zarr"
    return build_store(load_recipe(recipe), tmp_path / "src", out, progress=False), out


def check_channel_order(store, case_id, labels):
    """Channels T1, T1Gd, T2, FLAIR: the enhancing tumour is brightest on T1Gd, the edema
    brighter than it on T2 and FLAIR."""
    image, mask = store.read_image(case_id).array, store.read_mask(case_id).array
    enhancing = image[mask == labels["enhancing"]].mean(axis=0)
    edema = image[mask == labels["edema"]].mean(axis=0)
    assert np.argmax(enhancing) == 1
    assert np.argmax(edema - enhancing) in (2, 3)


def check_built(report, out, made, classes, suffixes):
    """Every case built, channels read from the files of ``suffixes`` in that order (the
    store's source_files: channels first, then the mask), masks as the fixture wrote."""
    assert report.ok, report.failed
    assert sorted(report.built) == made["cases"]
    assert validate_store(out) == []
    store = open_store(out)
    assert sorted(store.cases["case_id"]) == made["cases"]
    assert sorted(int(v) for v in store.attrs["labels"]["segmentation"]["classes"]) == classes
    cases = store.cases.set_index("case_id")
    # Patients (stored as pseudonyms) group the cases as the release's names say.
    for case_id, patient in made["patients"].items():
        same = {c for c, p in made["patients"].items() if p == patient}
        assert set(cases.index[cases["patient_id"] == cases.loc[case_id, "patient_id"]]) == same
    files = cases["source_files"]
    for case_id in made["cases"]:
        names = [Path(f).name for f in files[case_id]]
        assert [n.split(".nii")[0] for n in names[:4]] == [
            f"{case_id}{suffix}" for suffix in suffixes]
        assert len(names) == (5 if case_id in made["with_seg"] else 4)
        image = store.read_image(case_id)
        assert image.n_channels == 4
        mask = store.read_mask(case_id)
        if case_id in made["with_seg"]:
            assert sorted(int(v) for v in np.unique(mask.array)) == made["label_values"][case_id]
        else:  # the validation downloads have no seg
            assert mask is None
    return store


@pytest.mark.parametrize("download", ["synapse", "kaggle"])
def test_brats2021_builds_four_channels_and_its_tumour_labels(tmp_path, download):
    # Kaggle's top folder BraTS2021_Training_Data starts with "BraTS20" as the case
    # folders do: it must not be taken for a case (it failed as one before).
    made = make_brats2021(tmp_path / "src", download)
    report, out = build(tmp_path)
    store = check_built(report, out, made, [0, 1, 2, 4], SUFFIXES)
    check_channel_order(store, "BraTS2021_00000", {"enhancing": 4, "edema": 2})


def test_brats2020_kaggle_download_builds_every_case_case_355_with_its_mask(tmp_path):
    # Uncompressed .nii files, the download folders BraTS2020_TrainingData/ around
    # MICCAI_BraTS2020_TrainingData/, CSVs beside the cases, 355's seg misnamed.
    made = make_brats2020(tmp_path / "src")
    report, out = build(tmp_path)
    store = check_built(report, out, made, [0, 1, 2, 4], SUFFIXES)
    assert report.skipped == {}  # the CSVs are not folders: never taken for cases
    assert store.read_mask("BraTS20_Training_355") is not None
    assert made["label_values"]["BraTS20_Training_355"] == [0, 1, 2, 4]
    check_channel_order(store, "BraTS20_Training_001", {"enhancing": 4, "edema": 2})


def test_brats2020_mask_value_outside_the_release_labels_fails_its_case(tmp_path):
    make_brats2020(tmp_path / "src")
    seg_path = next((tmp_path / "src").rglob("BraTS20_Training_001_seg.nii"))
    seg = nib.load(seg_path)
    data = np.asarray(seg.dataobj).copy()
    data[data == 4] = 3  # a 2023-style ET in a 2020 seg
    nib.save(nib.Nifti1Image(data, seg.affine), seg_path)
    report, _ = build(tmp_path)
    assert list(report.failed) == ["BraTS20_Training_001"]
    assert "mask values [3] are not in the segmentation classes [0, 1, 2, 4]" in \
        report.failed["BraTS20_Training_001"]


def test_brats2020_a_missing_sequence_fails_its_case_naming_the_file(tmp_path):
    make_brats2020(tmp_path / "src")
    next((tmp_path / "src").rglob("BraTS20_Training_001_t2.nii")).unlink()
    report, _ = build(tmp_path)
    assert list(report.failed) == ["BraTS20_Training_001"]
    assert "BraTS20_Training_001_t2.nii*: no such file" in report.failed["BraTS20_Training_001"]


@pytest.mark.parametrize("original, copy, message", [
    ("BraTS20_Training_001_t1.nii", "BraTS20_Training_001_t1.nii.gz",
     r"BraTS20_Training_001: 2 files match source.channels '\{path\}/\{case_id\}_t1.nii\*': "
     r"BraTS20_Training_001_t1.nii, BraTS20_Training_001_t1.nii.gz"),
    ("W39_1998.09.19_Segm.nii", "BraTS20_Training_355_seg.nii",
     r"BraTS20_Training_355: 2 files match source.masks '\{path\}/\*_\[sS\]eg\*.nii\*': "
     r"BraTS20_Training_355_seg.nii, W39_1998.09.19_Segm.nii")])
def test_two_files_for_one_sequence_or_seg_are_refused_not_guessed(tmp_path, original, copy,
                                                                    message):
    # A copy unpacked beside its archive (x.nii and x.nii.gz), or 355's seg renamed
    # while the release's name was kept: which one is meant is not ours to guess.
    make_brats2020(tmp_path / "src")
    found = next((tmp_path / "src").rglob(original))
    (found.parent / copy).write_bytes(found.read_bytes())
    with pytest.raises(RecipeError, match=message):
        build(tmp_path)
