"""The bundled msd / msd-mr recipes build Decathlon tasks recreated from the real
TotalSegmentator CT and MR (tests/fixtures/msd.py, whose docstring cites where the real
tarball layout and Task05_Prostate's dataset.json were checked); label names come from
dataset.json, or from the label files when a task folder has none."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.errors import RecipeError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.source_report import SYSTEM_FILE
from medimg_build.store.validate import validate_store
from fixtures.msd import make_task03_liver, make_task05_prostate


def test_task03_liver_builds_with_the_label_names_of_its_dataset_json(tmp_path, shared_data):
    made = make_task03_liver(tmp_path / "src", shared_data)
    recipe = load_recipe("msd")
    out = tmp_path / "liver.zarr"
    report = build_store(recipe, made["task"], out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert validate_store(out) == []

    store = open_store(out)
    assert sorted(store.cases["case_id"]) == made["cases"]
    # The vocabulary is dataset.json's, while the recorded recipe is the file as written.
    assert store.attrs["labels"]["segmentation"]["classes"] == made["labels"]
    assert store.attrs["recipe"]["sha256"] == recipe.content_hash
    for case_id, values in made["label_values"].items():
        mask = store.read_mask(case_id)
        assert sorted(int(v) for v in np.unique(mask.array)) == values
        assert store.read_image(case_id).spacing == pytest.approx((1.5, 1.5, 1.5))
    assert set(store.cases["msd_task"]) == {"Task03_Liver"}
    # The test image and the tarballs' macOS "._" forks are reported, not built.
    reasons = list(report.skipped.values())
    assert reasons.count("test image without labels (options.include_test is false)") == 1
    assert reasons.count(SYSTEM_FILE) == made["n_junk"]


def test_task05_prostate_keeps_its_4d_channels_and_refuses_the_ct_recipe(tmp_path,
                                                                         shared_data):
    made = make_task05_prostate(tmp_path / "src", shared_data)
    out = tmp_path / "prostate.zarr"
    report = build_store(load_recipe("msd-mr"), tmp_path / "src", out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert validate_store(out) == []
    store = open_store(out)
    assert store.attrs["labels"]["segmentation"]["classes"] == made["labels"]
    for case_id, values in made["label_values"].items():
        image = store.read_image(case_id)
        assert image.n_channels == 2
        assert sorted(int(v) for v in np.unique(store.read_mask(case_id).array)) == values
    assert set(store.cases["channels"]) == {"T2,ADC"}
    reasons = list(report.skipped.values())
    assert reasons.count("test image without labels (options.include_test is false)") == 1
    assert reasons.count(SYSTEM_FILE) == made["n_junk"]
    with pytest.raises(RecipeError, match=r"modality is \['T2', 'ADC'\] \(MR\).*msd-mr"):
        build_store(load_recipe("msd"), tmp_path / "src", tmp_path / "x.zarr", progress=False)


def test_missing_label_files_are_counted(tmp_path, shared_data):
    made = make_task03_liver(tmp_path / "src", shared_data)
    (made["task"] / "labelsTr" / "liver_1.nii.gz").unlink()
    report = build_store(load_recipe("msd"), made["task"], tmp_path / "o.zarr",
                         progress=False)
    assert report.built == ["liver_0"]
    assert report.skipped["dataset.json training: ./labelsTr/liver_1.nii.gz"] == \
        "training entry without its label file"
    dataset = json.loads((made["task"] / "dataset.json").read_text())
    assert dataset["numTraining"] == 2


def test_numtraining_not_matching_the_training_list_is_reported(tmp_path, shared_data):
    made = make_task03_liver(tmp_path / "src", shared_data)
    path = made["task"] / "dataset.json"
    dataset = json.loads(path.read_text())
    path.write_text(json.dumps({**dataset, "numTraining": 131}, indent=4))
    report = build_store(load_recipe("msd"), made["task"], tmp_path / "o.zarr",
                         progress=False)
    assert sorted(report.built) == made["cases"]
    assert report.skipped["dataset.json numTraining"] == \
        'numTraining is 131 but "training" lists 2 cases'


def test_a_task_folder_without_dataset_json_builds_with_the_classes_of_its_labels(
        tmp_path, shared_data):
    """Task folders are often passed around without dataset.json: imagesTr/<case>.nii.gz
    pairs with labelsTr/<case>.nii.gz, classes are the values found in the labels."""
    made = make_task03_liver(tmp_path / "src", shared_data)
    (made["task"] / "dataset.json").unlink()
    (made["task"] / "._dataset.json").unlink()
    out = tmp_path / "liver.zarr"
    report = build_store(load_recipe("msd"), tmp_path / "src", out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert validate_store(out) == []
    store = open_store(out)
    # liver_0 holds 0, 1, 2 and liver_1 0, 1: their union, recorded in the store.
    assert store.attrs["labels"]["segmentation"]["classes"] == {
        "0": "background", "1": "label_1", "2": "label_2"}
    for case_id, values in made["label_values"].items():
        assert sorted(int(v) for v in np.unique(store.read_mask(case_id).array)) == values
    reasons = list(report.skipped.values())
    assert reasons.count("test image without labels (options.include_test is false)") == 1
    assert reasons.count(SYSTEM_FILE) == made["n_junk"]


def test_without_dataset_json_unpaired_images_and_labels_are_reported(tmp_path,
                                                                      shared_data):
    made = make_task05_prostate(tmp_path / "src", shared_data)
    task = made["task"]
    (task / "dataset.json").unlink()
    (task / "labelsTr" / "prostate_04.nii.gz").rename(task / "labelsTr" / "prostate_99.nii.gz")
    report = build_store(load_recipe("msd-mr"), task, tmp_path / "o.zarr", progress=False)
    assert report.built == ["prostate_16"]
    assert report.skipped["imagesTr/prostate_04.nii.gz"] == \
        "image without its label file labelsTr/prostate_04.nii.gz"
    assert report.skipped["labelsTr/prostate_99.nii.gz"] == \
        "label file without its image imagesTr/prostate_99.nii.gz"
    # The 4D image keeps its two channels, unnamed: nothing names them.
    store = open_store(tmp_path / "o.zarr")
    assert store.read_image("prostate_16").n_channels == 2
    assert set(store.cases["channels"]) == {""}


def test_an_nnunet_dataset_is_sent_to_the_nnunet_recipe(tmp_path, shared_data):
    from fixtures.nnunet import make_dataset005_prostate
    made = make_dataset005_prostate(tmp_path / "src", shared_data)
    with pytest.raises(RecipeError, match=r"missing key\(s\).*by the nnunet recipe"):
        build_store(load_recipe("msd-mr"), made["dataset"], tmp_path / "o.zarr",
                    progress=False)
