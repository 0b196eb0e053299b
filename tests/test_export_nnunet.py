"""``medimg-build export --to nnunet``: an nnU-Net v2 raw dataset from a store of the real
TotalSegmentator CT (four cases, one in the test split) and from BraTS-like four-channel
MR, checked against nnU-Net's documented rules (documentation/dataset_format.md,
manual_data_splits.md) and, where nnunetv2 is installed, by its own
``verify_dataset_integrity``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fixtures import drive
from fixtures.brats import make_brats2021
from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.harmonize.normalize import denormalize
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

CT_CASES = ["ct_a", "ct_b", "ct_c", "ct_d"]
TEST_CASE = "ct_d"  # named by the source's official test list
ENDING = ".nii.gz"


def export(store, out, *options: str) -> int:
    return main(["export", str(store), "--to", "nnunet", "--out", str(out), *options])


def voxels(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


@pytest.fixture(scope="module")
def ct_store(tmp_path_factory, shared_data) -> Path:
    """The real CT and its segmentation as four cases (patients) on the CT's own grid;
    the official list puts one in the test split, the others are dealt to train/val."""
    root = tmp_path_factory.mktemp("nnunet-ct")
    source = root / "src"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    base = shared_data / "totalsegmentator"
    for case_id in CT_CASES:
        (source / "images" / f"{case_id}.nii.gz").symlink_to(base / "example_ct_sm.nii.gz")
        (source / "labels" / f"{case_id}.nii.gz").symlink_to(base / "example_seg.nii.gz")
    (source / "test_list.txt").write_text(f"{TEST_CASE}\n")
    recipe = load_recipe("volume-folder").with_overrides({
        "harmonize": {"spacing": None},
        "split": {"fractions": {"train": 0.5, "val": 0.5, "test": None},
                  "lists": {"test": "test_list.txt"}}})
    report = build_store(recipe, source, root / "ct.zarr", progress=False)
    assert report.ok, report.failed
    return root / "ct.zarr"


@pytest.fixture(scope="module")
def brats_store(tmp_path_factory) -> Path:
    """BraTS 2021 in miniature (two cases with a seg, one without), z-scored without a
    clip (percentiles 0 and 100), so that the MR intensities come back."""
    root = tmp_path_factory.mktemp("nnunet-brats")
    make_brats2021(root / "src")
    recipe = load_recipe("brats").with_overrides(
        {"harmonize": {"intensity": {"preset": "mr", "percentiles": [0, 100]}}})
    report = build_store(recipe, root / "src", root / "brats.zarr", progress=False)
    assert report.ok, report.failed
    return root / "brats.zarr"


@pytest.fixture(scope="module")
def drive_store(tmp_path_factory) -> Path:
    """DRIVE in miniature (tests/fixtures/drive.py): a stack of 2D RGB photographs with
    FOV and vessel masks, split by the release's training/test folders."""
    root = tmp_path_factory.mktemp("nnunet-drive")
    drive.make(root / "src")
    report = build_store(load_recipe("drive"), root / "src", root / "drive.zarr",
                         progress=False)
    assert report.ok, report.failed
    return root / "drive.zarr"


def check_documented_rules(folder: Path) -> dict:
    """nnU-Net v2's raw dataset rules as documentation/dataset_format.md states them;
    returns dataset.json."""
    assert re.fullmatch(r"Dataset\d{3}_[A-Za-z0-9_]+", folder.name)
    dataset = json.loads((folder / "dataset.json").read_text())
    assert {"channel_names", "labels", "numTraining", "file_ending"} <= set(dataset)
    assert dataset["file_ending"] == ENDING
    labels = dataset["labels"]
    assert labels["background"] == 0
    assert sorted(labels.values()) == list(range(len(labels)))  # consecutive
    n_channels = len(dataset["channel_names"])
    assert sorted(dataset["channel_names"]) == [str(c) for c in range(n_channels)]
    names = sorted(p.name for p in (folder / "imagesTr").iterdir())
    identifiers = sorted({name[:-len(f"_0000{ENDING}")] for name in names})
    assert len(identifiers) == dataset["numTraining"]
    assert names == sorted(f"{i}_{c:04d}{ENDING}" for i in identifiers
                           for c in range(n_channels))
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == \
        [f"{i}{ENDING}" for i in identifiers]
    for identifier in identifiers:
        seg = nib.load(folder / "labelsTr" / f"{identifier}{ENDING}")
        assert set(np.unique(np.asanyarray(seg.dataobj)).tolist()) <= set(labels.values())
        for c in range(n_channels):
            image = nib.load(folder / "imagesTr" / f"{identifier}_{c:04d}{ENDING}")
            assert image.shape == seg.shape
            assert np.allclose(image.affine, seg.affine, atol=1e-4)
    splits = json.loads((folder / "splits_final.json").read_text())
    assert isinstance(splits, list) and splits
    for fold in splits:
        assert set(fold) == {"train", "val"} and fold["val"]
        assert sorted(fold["train"] + fold["val"]) == identifiers
    return dataset


def test_real_ct_nnunet_dataset(ct_store, tmp_path, capsys):
    out = tmp_path / "nnUNet_raw"
    assert export(ct_store, out, "--dataset-id", "501") == 0
    store = open_store(ct_store)
    folder = out / "Dataset501_volume_folder"
    assert f"{folder}: 4 case(s)" in capsys.readouterr().out
    dataset = check_documented_rules(folder)
    assert dataset["channel_names"] == {"0": "CT"}  # nnU-Net's CT normalization
    cases = store.cases.set_index("case_id")
    training = sorted(c for c in CT_CASES if cases.loc[c, "split"] != "test")
    assert cases.loc[TEST_CASE, "split"] == "test"
    assert dataset["numTraining"] == len(training) == 3
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == [f"{TEST_CASE}_0000{ENDING}"]
    assert (folder / "labelsTs" / f"{TEST_CASE}{ENDING}").is_file()
    # The store's classes renumbered 0, 1, 2, ... in their order; HU as stored.
    classes = {int(v) for v in store.attrs["labels"]["segmentation"]["classes"]} | {0}
    numbers = {value: n for n, value in enumerate(sorted(classes))}
    assert dataset["medimg_build"]["label_values"] == {
        name: sorted(classes)[n] for name, n in dataset["labels"].items()}
    for case_id in training:
        mask = store.read_mask(case_id).array
        renumbered = np.vectorize(numbers.get)(mask)
        assert np.array_equal(voxels(folder / "labelsTr" / f"{case_id}{ENDING}"), renumbered)
        assert np.array_equal(voxels(folder / "imagesTr" / f"{case_id}_0000{ENDING}"),
                              store.read_image(case_id).array)
    # Splits: folds of patients (one case each here), fold 0 the store's train/val.
    splits = json.loads((folder / "splits_final.json").read_text())
    val = sorted(c for c in training if cases.loc[c, "split"] == "val")
    assert len(splits) == len(training)
    if val:
        assert splits[0] == {"train": sorted(set(training) - set(val)), "val": val}


def test_four_channels_become_four_nnunet_channels(brats_store, tmp_path):
    out = tmp_path / "raw"
    assert export(brats_store, out, "--dataset-name", "BraTS21 mini") == 0
    folder = out / "Dataset500_BraTS21_mini"
    dataset = check_documented_rules(folder)
    assert dataset["channel_names"] == {"0": "t1", "1": "t1ce", "2": "t2", "3": "flair"}
    # BraTS values 0/1/2/4 become nnU-Net's consecutive 0/1/2/3.
    assert dataset["labels"] == {"background": 0, "necrotic tumour core": 1,
                                 "peritumoral edema": 2, "enhancing tumour": 3}
    store = open_store(brats_store)
    steps = store.cases.set_index("case_id")["steps"]
    for case_id in ["BraTS2021_00000", "BraTS2021_00002"]:
        stored = store.read_image(case_id)
        params = next(s for s in steps[case_id] if s["name"] == "normalize_mr")["params"]
        intensities = denormalize(stored.array, params)
        for c in range(4):
            # The int16 source values, which the undone float32 z-score is within 0.01 of.
            channel = voxels(folder / "imagesTr" / f"{case_id}_{c:04d}{ENDING}")
            assert channel.dtype == np.int16
            assert np.abs(channel - intensities[..., c]).max() < 0.01
            assert np.array_equal(channel, np.rint(intensities[..., c]))
        seg = voxels(folder / "labelsTr" / f"{case_id}{ENDING}")
        assert np.array_equal(seg, np.array([0, 1, 2, 0, 3])[store.read_mask(case_id).array])
    # The validation case has no seg: not a training case, its images in imagesTs.
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == [
        f"BraTS2021_00001_{c:04d}{ENDING}" for c in range(4)]


def test_rgb_stack_pictures_become_2d_nnunet_channels(drive_store, tmp_path):
    """A stack store of 2D RGB pictures: three 2D channel files per case, the release's
    test images (with their masks) apart, folds of the training patients."""
    out = tmp_path / "raw"
    assert export(drive_store, out, "--dataset-id", "504") == 0
    folder = out / "Dataset504_drive"
    dataset = check_documented_rules(folder)
    assert dataset["channel_names"] == {"0": "OP_0", "1": "OP_1", "2": "OP_2"}
    store = open_store(drive_store)
    cases = store.cases.set_index("case_id")
    test = sorted(cases.index[cases["split"] == "test"])
    assert test and dataset["numTraining"] == len(cases) - len(test)
    assert sorted(p.name for p in (folder / "labelsTs").iterdir()) == [
        f"{c}{ENDING}" for c in test]
    case_id = test[0]
    stored = store.read_image(case_id)
    params = next(s for s in cases.loc[case_id, "steps"]
                  if s["name"] == "normalize_unit_range")["params"]
    for c in range(3):
        image = nib.load(folder / "imagesTs" / f"{case_id}_{c:04d}{ENDING}")
        assert image.shape == stored.spatial_shape  # 2D
        # The photographs' own 8-bit values (the float16 k/255 undone and rounded).
        assert image.get_data_dtype() == np.uint8
        assert np.array_equal(np.asanyarray(image.dataobj),
                              np.rint(denormalize(stored.array, params)[..., c]))
    assert np.array_equal(voxels(folder / "labelsTs" / f"{case_id}{ENDING}"),
                          store.read_mask(case_id).array)  # 0..3 already consecutive
    splits = json.loads((folder / "splits_final.json").read_text())
    assert len(splits) == min(5, dataset["numTraining"])  # no val split: patient folds
    assert sorted(c for fold in splits for c in fold["val"]) == sorted(
        set(cases.index) - set(test))


def test_nnunet_verify_dataset_integrity_passes(ct_store, brats_store, drive_store, tmp_path,
                                                capfd):
    pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.verify_dataset_integrity import (
        verify_dataset_integrity,
    )

    assert export(ct_store, tmp_path / "raw", "--dataset-id", "502") == 0
    assert export(brats_store, tmp_path / "raw", "--dataset-id", "503") == 0
    assert export(drive_store, tmp_path / "raw", "--dataset-id", "504") == 0  # 2D
    for folder in sorted((tmp_path / "raw").iterdir()):
        verify_dataset_integrity(str(folder), num_processes=1)  # raises on an error
    # It only prints what it calls warnings (affine, origin or direction of an image
    # and its seg differing), from its worker processes too.
    printed = capfd.readouterr().out
    assert printed.count("verify_dataset_integrity Done") == 3
    assert "error:" not in printed.lower() and "warning" not in printed.lower()


@pytest.mark.parametrize("options, message", [
    (["--dataset-id", "1000"], "dataset id 1000 is not a three-digit id"),
    (["--dataset-id", "0"], "dataset id 0 is not a three-digit id"),
    (["--dataset-id", "7"], "dataset id 7 is taken by Dataset007_Other"),
    (["--case", "ct_a", "ct_x"], "no case 'ct_x' in the store"),
])
def test_nnunet_refusals(ct_store, tmp_path, capsys, options, message):
    out = tmp_path / "raw"
    (out / "Dataset007_Other").mkdir(parents=True)
    assert export(ct_store, out, *options) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
    assert [p.name for p in out.iterdir()] == ["Dataset007_Other"]  # nothing written


def test_a_store_without_segmentation_is_refused(reference_stores, tmp_path, capsys):
    assert export(reference_stores.xray, tmp_path / "raw") == 2
    assert "no segmentation classes" in capsys.readouterr().err


def test_region_based_labels_come_back_as_nnunet_wrote_them(tmp_path, shared_data, capfd):
    """KiTS2023 as nnU-Net's converter writes it (region-based: kidney [1, 2, 3], masses
    [2, 3], tumor 2; regions_class_order [1, 3, 2]), built and exported: the same labels
    and order, the same mask values. Before: three exclusive classes named after the
    regions, so value 1 (kidney tissue alone) was called "kidney" and nnU-Net would train
    softmax classes where the source trained sigmoid regions."""
    from fixtures.nnunet import make_dataset220_kits2023

    made = make_dataset220_kits2023(tmp_path / "src", shared_data)
    source = json.loads((made["dataset"] / "dataset.json").read_text())
    recipe = load_recipe("nnunet-ct").with_overrides({"harmonize": {"spacing": None}})
    assert build_store(recipe, made["dataset"], tmp_path / "kits.zarr", progress=False).ok
    assert export(tmp_path / "kits.zarr", tmp_path / "raw", "--dataset-id", "520") == 0
    folder = next((tmp_path / "raw").iterdir())
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == source["labels"]
    assert dataset["regions_class_order"] == source["regions_class_order"] == [1, 3, 2]
    store = open_store(tmp_path / "kits.zarr")
    for case_id in made["cases"]:
        assert np.array_equal(voxels(folder / "labelsTr" / f"{case_id}{ENDING}"),
                              store.read_mask(case_id).array)
    from nnunetv2.experiment_planning.verify_dataset_integrity import (
        verify_dataset_integrity,
    )
    verify_dataset_integrity(str(folder), num_processes=1)
    assert "verify_dataset_integrity Done" in capfd.readouterr().out


def test_the_ignore_class_stays_nnunets_ignore_label(tmp_path, capfd):
    """A store whose class 1 is "ignore" (unannotated voxels) and 2 "liver": nnU-Net
    wants "ignore" as the largest label. Before: renamed "ignore (1)", an ordinary class
    nnU-Net would learn to predict. Now liver is 1 and ignore 2, as named."""
    from fixtures import volume_folder

    source = tmp_path / "src"
    for case_id in ("ca", "cb"):
        volume_folder.write_volume(source / "images" / f"{case_id}.nii.gz")
        volume_folder.write_volume(source / "labels" / f"{case_id}.nii.gz", [0, 1, 2])
    recipe = load_recipe("volume-folder").with_overrides({
        "harmonize": {"spacing": None},
        "labels": {"segmentation": {"classes": {"1": "ignore", "2": "liver"}}}})
    assert build_store(recipe, source, tmp_path / "s.zarr", progress=False).ok
    assert export(tmp_path / "s.zarr", tmp_path / "raw") == 0
    folder = next((tmp_path / "raw").iterdir())
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "liver": 1, "ignore": 2}
    store = open_store(tmp_path / "s.zarr")
    for case_id in ("ca", "cb"):
        stored = store.read_mask(case_id).array
        exported = voxels(next(folder.glob(f"labelsT[rs]/{case_id}{ENDING}")))
        assert np.array_equal(exported == 2, stored == 1)
        assert np.array_equal(exported == 1, stored == 2)
    from nnunetv2.experiment_planning.verify_dataset_integrity import (
        verify_dataset_integrity,
    )
    verify_dataset_integrity(str(folder), num_processes=1)
    assert "verify_dataset_integrity Done" in capfd.readouterr().out
