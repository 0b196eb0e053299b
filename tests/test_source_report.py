"""Nothing a source holds is dropped in silence (issue 16, items 9 and 11): mask files
of no image, images without their declared mask, and files that are no images are
named in the build report and on the console; masks that pair with no image at all
stop the build.

Layouts: the volume-folder recipe's own (``images/<case>.nii.gz`` beside
``labels/<case>.nii.gz``, tests/fixtures/volume_folder.py); nnU-Net v2's channel-file
names as its documentation gives them (``imagesTr/la_003_0000.nii.gz`` with
``labelsTr/la_003.nii.gz``, MIC-DKFZ/nnUNet@0c4ce5b745f0afea009ea6ffc11f670adc071dd3:
documentation/dataset_format.md), which the issue found built "1 case, 0 failed" with
no mask and no word when put in images/ and labels/."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.errors import RecipeError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.source_report import SYSTEM_FILE, UNPAIRED_MASK
from medimg_build.recipe.sources import list_sources
from medimg_build.store.validate import validate_store

from fixtures.volume_folder import add_strays, write_volume

FAST = {"harmonize": {"spacing": None}}


def test_nnunet_channel_names_beside_their_labels_stop_the_build_and_name_the_nnunet_recipe(
        tmp_path):
    source = tmp_path / "src"
    for case in ("la_003", "la_004"):
        write_volume(source / "images" / f"{case}_0000.nii.gz")
        write_volume(source / "labels" / f"{case}.nii.gz", [0, 1])
    with pytest.raises(RecipeError) as refused:
        build_store(load_recipe("volume-folder").with_overrides(FAST), source,
                    tmp_path / "o.zarr", progress=False)
    message = str(refused.value)
    assert "none of its 2 mask file(s)" in message and "any of its 2 image(s)" in message
    assert "labels/la_003.nii.gz" in message and "images/la_003_0000.nii.gz" in message
    assert "it looked for labels/la_003_0000.nii.gz" in message
    assert "nnunet recipe" in message
    assert not (tmp_path / "o.zarr").exists()  # refused before any store is made


def test_a_mask_of_no_image_and_an_image_without_its_mask_are_named(tmp_path, capsys):
    source = tmp_path / "src"
    write_volume(source / "images" / "case000.nii.gz")
    write_volume(source / "labels" / "case000.nii.gz", [0, 1])
    write_volume(source / "images" / "case001.nii.gz")  # its mask is missing
    write_volume(source / "labels" / "case01.nii.gz", [0, 1])  # misnamed: pairs with nothing
    out = tmp_path / "o.zarr"
    assert main(["build", "volume-folder", "--source", str(source), "--out", str(out),
                 "--workers", "1", "--quiet", "--set", "harmonize.spacing=null"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("; 1 source file(s) skipped; 1 case(s) incomplete")
    assert f"  skipped 1: {UNPAIRED_MASK}: labels/case01.nii.gz" in printed
    assert ("  incomplete 1: built without a mask: none found at source.masks "
            "'labels/{case_id}.nii.gz': images/case001.nii.gz") in printed
    store = open_store(out)
    assert store.read_mask("case000") is not None and store.read_mask("case001") is None
    report = store.attrs["build_report"]
    assert report["skipped"] == {UNPAIRED_MASK: 1}
    assert report["incomplete"] == {"built without a mask: none found at source.masks "
                                    "'labels/{case_id}.nii.gz'": 1}
    assert validate_store(out) == []


def test_stray_files_in_an_images_folder_are_skipped_and_named_not_failed(tmp_path, capsys):
    source = tmp_path / "src"
    write_volume(source / "images" / "case000.nii.gz")
    write_volume(source / "labels" / "case000.nii.gz", [0, 1])
    strays = add_strays(source / "images")
    (source / "labels" / "._case000.nii.gz").write_bytes(b"\x00\x05\x16\x07" + bytes(20))
    out = tmp_path / "o.zarr"
    code = main(["build", "volume-folder", "--source", str(source), "--out", str(out),
                 "--workers", "1", "--quiet", "--set", "harmonize.spacing=null"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "1 case(s) built, 0 failed" in printed and "6 source file(s) skipped" in printed
    # The console names three of a reason and counts the rest; the listing names all.
    listing = list_sources(load_recipe("volume-folder"), source)
    assert set(listing.skipped) == {f"images/{name}" for name in strays} | {
        "labels/._case000.nii.gz"}
    assert "  skipped 1: not an image file medimg-build reads (.txt): images/notes.txt" in printed
    assert (f"  skipped 5: {SYSTEM_FILE}: images/.DS_Store, images/._case000.nii.gz, "
            "images/Thumbs.db, ... (2 more)") in printed
    assert open_store(out).attrs["build_report"]["skipped"][SYSTEM_FILE] == 5
    assert open_store(out).attrs["build_report"]["failed"] == {}


def test_class_folders_report_hidden_and_system_files_they_once_ignored(tmp_path):
    source = tmp_path / "src"
    for label in ("benign", "malignant"):
        (source / label).mkdir(parents=True)
        Image.fromarray(np.full((8, 8), 90, np.uint8)).save(source / label / "img1.png")
    (source / "benign" / "Thumbs.db").write_bytes(bytes.fromhex("d0cf11e0a1b11ae1"))
    (source / "benign" / ".hidden.png").write_bytes(b"")
    (source / "malignant" / "notes.txt").write_text("two more to come")
    report = build_store(load_recipe("class-folders"), source, tmp_path / "o.zarr",
                         progress=False)
    assert report.ok and len(report.built) == 2
    assert report.skipped == {
        "benign/.hidden.png": "hidden file (name starts with '.'), not read as a case",
        "benign/Thumbs.db": SYSTEM_FILE,
        "malignant/notes.txt": "not an image file medimg-build reads (.txt)"}


def test_a_case_missing_one_mask_layer_is_incomplete_and_its_other_layer_is_not_unpaired(
        tmp_path):
    """DRIVE's names (tests/fixtures/drive.py): field-of-view masks for every image,
    manual vessel tracings here only for the training image. The test image's FOV mask
    was looked for, so it is not a stray; the image is built without a mask and said
    to be; the build is not refused, since some masks pair."""
    from medimg_build.recipe.model import Recipe

    source = tmp_path / "src"
    for folder, name in (("training/images", "21_training.tif"), ("test/images", "01_test.tif")):
        (source / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(source / folder / name)
    for folder, name in (("training/mask", "21_training_mask.gif"),
                         ("training/1st_manual", "21_manual1.gif"),
                         ("test/mask", "01_test_mask.gif")):
        (source / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 255, np.uint8)).save(source / folder / name)
    recipe = Recipe.from_dict({**load_recipe("class-folders").data, "source": {
        "kind": "image_folder", "images": "*/images/*.tif",
        "path_pattern": r"(?P<set>training|test)/images/(?P<stem>(?P<number>\d\d)_"
                        r"(?:training|test))\.tif",
        "case_id": "stem", "patient_field": "stem",
        "masks": {"1": "{set}/mask/{stem}_mask.gif",
                  "2": "{set}/1st_manual/{number}_manual1.gif"}},
        "labels": {"segmentation": {"classes": {"0": "outside", "1": "fov", "2": "vessel"}}},
        "split": {"seed": 0, "fractions": {"train": 1.0}}})
    listing = list_sources(recipe, source)
    assert [case.case_id for case in listing.cases] == ["01_test", "21_training"]
    assert listing.skipped == {}
    assert listing.incomplete == {
        "test/images/01_test.tif": "built without a mask: not every layer of source.masks found"}


def test_a_dicom_series_without_a_seg_is_incomplete_and_segs_of_no_series_stop_the_build(
        tmp_path, shared_data):
    """TCIA's layout with DICOM SEG (tests/fixtures/tcia_seg.py): TCIA-0002's CT has no
    SEG, and is said to be built without a mask; without TCIA-0001's SEG, the one SEG
    left references no series of the tree, and the build stops."""
    from fixtures.tcia_seg import make_tcia_seg

    made = make_tcia_seg(tmp_path / "src", shared_data)
    listing = list_sources(load_recipe("tcia-seg"), made["root"])
    assert list(listing.incomplete.values()) == [
        "built without a mask: no DICOM SEG of the tree references it"]
    assert "/TCIA-0002/" in next(iter(listing.incomplete))
    made["seg"].unlink()
    with pytest.raises(RecipeError, match=r"none of its 1 DICOM SEG file\(s\) \(.*/TCIA-0003/"
                                          r".*\) references a series of the tree"):
        list_sources(load_recipe("tcia-seg"), made["root"])
