"""Source kinds for datasets beyond one file per case: channels stacked from several
files (BraTS), facts read from paths (MURA, class folders), named parsers."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medimg_build import open_store
from medimg_build.errors import RecipeError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import Recipe, load_recipe
from medimg_build.store.validate import validate_store

AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS-stored, like most NIfTI from DICOM


def test_channels_of_one_case_are_stacked_even_when_saved_in_another_axis_order(tmp_path):
    source = tmp_path / "brats"
    rng = np.random.default_rng(0)
    volumes = {}
    for case in ["BraTS_001", "BraTS_002"]:
        folder = source / case
        folder.mkdir(parents=True)
        for index, name in enumerate(["t1", "t1ce", "t2", "flair"]):
            data = (rng.random((12, 10, 8)) * 1000 + index * 2000).astype(np.float32)
            volumes[case, name] = data
            image = nib.Nifti1Image(data, AFFINE)
            if name == "t2":  # saved flipped along i: same grid, other axis order
                flipped = AFFINE.copy()
                flipped[0, 0], flipped[0, 3] = 1.0, -11.0
                image = nib.Nifti1Image(data[::-1].copy(), flipped)
            nib.save(image, folder / f"{case}_{name}.nii.gz")
        seg = np.zeros((12, 10, 8), np.uint8)
        seg[3:6, 3:6, 2:5] = 4
        nib.save(nib.Nifti1Image(seg, AFFINE), folder / f"{case}_seg.nii.gz")
    recipe = load_recipe("volume-folder").with_overrides({
        "modality": "MR", "organ": "brain",
        "source": {"images": "BraTS_*", "case_id": "name",
                   "channels": [f"{{path}}/{{case_id}}_{n}.nii.gz"
                                for n in ["t1", "t1ce", "t2", "flair"]],
                   "channel_names": ["t1", "t1ce", "t2", "flair"],
                   "masks": "{path}/{case_id}_seg.nii.gz"},
        "labels": {"segmentation": {"classes": {"0": "background", "4": "enhancing"}}},
        "harmonize": {"spacing": None, "intensity": {"preset": "none", "window": None}}})
    out = tmp_path / "brats.zarr"
    assert build_store(recipe, source, out, progress=False).ok
    assert validate_store(out) == []
    store = open_store(out)
    image = store.read_image("BraTS_001")
    assert image.array.shape == (12, 10, 8, 4)  # RAS: i flipped from the LPS files
    for index, name in enumerate(["t1", "t1ce", "t2", "flair"]):
        np.testing.assert_allclose(image.array[..., index], volumes["BraTS_001", name][::-1, ::-1],
                                   rtol=1e-6)
    assert set(np.unique(store.read_mask("BraTS_001").array)) == {0, 4}


def _mura_tree(root: Path) -> None:
    """MURA's layout: <split>/XR_<PART>/patient<ID>/study<N>_<label>/image<M>.png."""
    studies = [("train", "ELBOW", "00011", 1, "negative", 2),
               ("train", "ELBOW", "00011", 2, "positive", 1),
               ("train", "WRIST", "00012", 1, "positive", 3),
               ("valid", "HAND", "11185", 1, "negative", 1)]
    for split, part, patient, study, label, n in studies:
        folder = root / "MURA-v1.1" / split / f"XR_{part}" / f"patient{patient}" / f"study{study}_{label}"
        folder.mkdir(parents=True)
        for image in range(1, n + 1):
            Image.fromarray(np.full((20, 16), 40 * image, np.uint8)).save(folder / f"image{image}.png")
    (root / "MURA-v1.1" / "train" / "README.txt").write_text("not an image")
    odd = root / "MURA-v1.1" / "train" / "XR_ELBOW" / "patient00011" / "scan.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(odd)


def test_image_folder_reads_class_patient_and_study_from_paths(tmp_path):
    _mura_tree(tmp_path)
    recipe = Recipe.from_dict({
        "name": "mura-like", "version": "1", "modality": "DX", "organ": "musculoskeletal",
        "layout": "stack",
        "source": {"kind": "image_folder", "images": "MURA-v1.1/**/*.png",
                   "path_pattern": r"MURA-v1\.1/(?P<split>train|valid)/XR_(?P<part>[A-Z]+)/"
                                   r"patient(?P<patient>\d+)/study(?P<study>\d+)_"
                                   r"(?P<label>positive|negative)/image(?P<image>\d+)\.png",
                   "case_id": "{patient}_{part}_{study}_{image}", "patient_field": "patient",
                   "columns": {"part": "body_part", "study": "study"}},
        "labels": {"classification": [{"name": "abnormal", "column": "label", "kind": "binary",
                                       "classes": ["negative", "positive"]}]},
        "harmonize": {"shape": [32, 32], "intensity": {"preset": "xray"}}})
    out = tmp_path / "mura.zarr"
    report = build_store(recipe, tmp_path, out, progress=False)
    assert report.ok and len(report.built) == 7
    assert list(report.skipped.values()) == ["path does not match source.path_pattern"]
    assert validate_store(out) == []
    store = open_store(out)
    labels = store.labels("abnormal")
    assert labels["00011_ELBOW_2_1"] == 1 and labels["00011_ELBOW_1_2"] == 0
    cases = store.cases.set_index("case_id")
    assert cases.loc["00012_WRIST_1_3", "body_part"] == "WRIST"
    # All images of patient 00011 share one split.
    assert cases.loc[cases.index.str.startswith("00011"), "split"].nunique() == 1


def test_image_folder_case_id_template_must_use_captured_groups(tmp_path):
    _mura_tree(tmp_path)
    recipe = Recipe.from_dict({
        "name": "bad", "version": "1", "modality": "DX", "organ": "musculoskeletal",
        "layout": "stack",
        "source": {"kind": "image_folder", "images": "**/*.png",
                   "path_pattern": r".*/patient(?P<patient>\d+)/.*", "case_id": "{visit}"},
        "harmonize": {"shape": [8, 8], "intensity": {"preset": "xray"}}})
    with pytest.raises(RecipeError, match=r"names 'visit'.*it has \['patient'\]"):
        build_store(recipe, tmp_path, tmp_path / "o.zarr", progress=False)


def test_unknown_parser_is_named(tmp_path):
    recipe = Recipe.from_dict({
        "name": "p", "version": "1", "modality": "CT", "organ": "lung", "layout": "volumes",
        "source": {"kind": "parser", "parser": "no_such_parser"},
        "harmonize": {"intensity": {"preset": "ct"}}})
    with pytest.raises(RecipeError, match="unknown source parser 'no_such_parser'"):
        build_store(recipe, tmp_path, tmp_path / "o.zarr", progress=False)


def test_layered_masks_combine_into_one_label_map(tmp_path):
    """One binary file per structure (organ, then lesion inside it): the higher label
    wins where they overlap; a case missing a layer has no mask."""
    source = tmp_path / "src"
    for folder in ("images", "organ", "lesion"):
        (source / folder).mkdir(parents=True)
    for case in ("a", "b"):
        image = np.full((10, 10, 6), -100, np.int16)
        organ = np.zeros(image.shape, np.uint8)
        organ[2:8, 2:8, 1:5] = 1
        lesion = np.zeros(image.shape, np.uint8)
        lesion[4:6, 4:6, 2:4] = 255
        nib.save(nib.Nifti1Image(image, AFFINE), source / "images" / f"{case}.nii.gz")
        nib.save(nib.Nifti1Image(organ, AFFINE), source / "organ" / f"{case}.nii.gz")
        if case == "a":
            nib.save(nib.Nifti1Image(lesion, AFFINE), source / "lesion" / f"{case}.nii.gz")
    recipe = load_recipe("volume-folder").with_overrides({
        "source": {"masks": {"1": "organ/{case_id}.nii.gz", "2": "lesion/{case_id}.nii.gz"}},
        "labels": {"segmentation": {"classes": {"0": "bg", "1": "organ", "2": "lesion"}}},
        "harmonize": {"spacing": None}})
    out = tmp_path / "layers.zarr"
    assert build_store(recipe, source, out, progress=False).ok
    store = open_store(out)
    values, counts = np.unique(store.read_mask("a").array, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == {0: 600 - 144, 1: 144 - 8, 2: 8}
    assert store.read_mask("b") is None


def test_image_folder_skips_a_file_whose_case_id_is_unsafe(tmp_path):
    for name in ("ok.png", "bad name.png"):
        (tmp_path / "benign").mkdir(exist_ok=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "benign" / name)
    recipe = load_recipe("class-folders").with_overrides({"harmonize": {"shape": [8, 8]}})
    report = build_store(recipe, tmp_path, tmp_path / "o.zarr", progress=False)
    assert report.built == ["benign_ok"]
    assert "not a safe name" in report.skipped["benign/bad name.png"]
