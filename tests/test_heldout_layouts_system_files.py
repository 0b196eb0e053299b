"""Downloads as a Mac's unzip or a FAT/exFAT copy leaves them (tests/fixtures/macos_zip.py:
``__MACOSX/`` mirroring the tree with ``._`` AppleDouble copies of every image and mask,
``._`` forks, ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, ``notes.txt`` beside the
files), and one mask file without its image. Each is skipped and reported (summary and
stored build_report), never read as an image or mask, never a failed case; the build
succeeds. Real layouts: tests/fixtures/brats.py, nih_chestxray14.py, msd.py, nnunet.py,
cervical_screening.py (their citations)."""

from __future__ import annotations

import shutil

import pytest

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.source_report import SYSTEM_FILE, UNPAIRED_MASK

from fixtures import cervical_screening, drive, nih_chestxray14
from fixtures.brats import make_brats2020, make_brats2023
from fixtures.macos_zip import add_macosx_folder, add_strays
from fixtures.msd import make_task03_liver, make_task05_prostate
from fixtures.nnunet import make_dataset005_prostate, make_dataset220_kits2023


def _stored_files(out) -> list[str]:
    return [f for files in open_store(out).cases["source_files"] for f in files]


@pytest.mark.parametrize("recipe, make", [("brats", make_brats2020),
                                          ("brats2023", make_brats2023)])
def test_brats_case_folders_copied_under_macosx_are_no_second_case(tmp_path, recipe, make):
    """BraTS' recursive case glob (**/BraTS20*_001/) found __MACOSX/.../BraTS20_Training_001/
    as a second case of the same id and the build stopped ("case id ... used twice")."""
    source = tmp_path / "src"
    made = make(source)
    forks = add_macosx_folder(source)
    out = tmp_path / "out.zarr"
    report = build_store(load_recipe(recipe), source, out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    macosx = {where: why for where, why in report.skipped.items() if "__MACOSX" in where}
    assert macosx and set(macosx.values()) == {SYSTEM_FILE}
    assert set(macosx) <= set(forks) | {f.rsplit("/", 1)[0] for f in forks}
    assert not any("__MACOSX" in f or "/._" in f for f in _stored_files(out))
    stored = open_store(out).attrs["build_report"]
    assert stored["skipped"][SYSTEM_FILE] == len(macosx) and stored["failed"] == {}


def test_chestxray14_with_forks_and_a_macosx_copy_builds_every_listed_image(
        tmp_path, shared_data):
    """The image glob **/*.png found __MACOSX/images_001/images/._00000001_000.png and
    the ._ fork beside the image under one name, and the build stopped ("two image files
    are named"); a fork beside an image alone was "image without a table row"."""
    source = tmp_path / "nih"
    made = nih_chestxray14.make(source, shared_data)
    images = sorted(source.glob("images_*/images"))
    strays = [f"{folder.relative_to(source).as_posix()}/{name}" for folder in images
              for name in add_strays(folder)]
    forks = add_macosx_folder(source, images[0].parent)
    out = tmp_path / "nih.zarr"
    report = build_store(load_recipe("nih-chestxray14"), source, out, progress=False)
    assert report.ok and len(report.built) == made["cases"]
    png = [f for f in strays + forks if f.endswith(".png")]  # what the glob finds
    assert png and {where: report.skipped.get(where) for where in png} == dict.fromkeys(
        png, SYSTEM_FILE)
    assert not any("__MACOSX" in f or "/._" in f for f in _stored_files(out))


@pytest.mark.parametrize("recipe, make, seg", [
    ("brats", make_brats2020, "BraTS20_Training_999/BraTS20_Training_999_seg.nii"),
    ("brats2023", make_brats2023, "BraTS-GLI-00999-000/BraTS-GLI-00999-000-seg.nii.gz")])
def test_a_brats_case_folder_holding_only_its_seg_is_an_unpaired_mask(tmp_path, recipe,
                                                                       make, seg):
    """A case folder whose images are gone but whose seg is there (a partial copy) was a
    failed case ("..._t1.nii*: no such file"): its seg is a mask without an image."""
    source = tmp_path / "src"
    made = make(source)
    real_seg = sorted(source.rglob("*[-_]seg.nii*"))[0]
    labelled = real_seg.parent.parent  # the training folder
    (labelled / seg).parent.mkdir()
    shutil.copy(real_seg, labelled / seg)
    out = tmp_path / "out.zarr"
    report = build_store(load_recipe(recipe), source, out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    where = (labelled / seg).relative_to(source).as_posix()
    assert report.skipped[where] == UNPAIRED_MASK
    assert report.skipped[where.rsplit("/", 1)[0]] == \
        "no image: none of its source.channels files found"
    assert open_store(out).attrs["build_report"]["skipped"][UNPAIRED_MASK] == 1


def _cervical(root, shared):
    return cervical_screening.make(root)


@pytest.mark.parametrize("recipe, make, folders", [
    ("msd", make_task03_liver, ["Task03_Liver/imagesTr", "Task03_Liver/labelsTr"]),
    ("msd-mr", make_task05_prostate, ["Task05_Prostate/imagesTr", "Task05_Prostate/imagesTs"]),
    ("nnunet", make_dataset005_prostate, ["Dataset005_Prostate/imagesTr",
                                          "Dataset005_Prostate/labelsTr"]),
    ("nnunet-ct", make_dataset220_kits2023, ["Dataset220_KiTS2023/labelsTr"]),
    ("cervical-screening", _cervical, ["train/train/Type_1", "test_stg2"])])
def test_parsers_report_system_files_under_the_one_reason(tmp_path, shared_data, recipe,
                                                          make, folders):
    """The parsers named system files each in their own words ("file not listed in
    dataset.json" for msd's .DS_Store and Thumbs.db, "not a .nii.gz file" for nnunet's
    Thumbs.db, "hidden file" for the cervical ._ forks), so the stored build_report's
    counts by reason did not say what they were; cervical's rglob read __MACOSX/ too."""
    source = tmp_path / "src"
    make(source, shared_data)
    forks = add_macosx_folder(source, source / folders[0])
    strays = [f"{folder}/{name}" for folder in folders
              for name in add_strays(source / folder) if name != "notes.txt"]
    report = build_store(load_recipe(recipe), source, tmp_path / "out.zarr", progress=False)
    assert report.ok and report.built
    found = [f for f in strays + forks if f in report.skipped]
    assert {f: report.skipped[f] for f in found} == dict.fromkeys(found, SYSTEM_FILE)
    # Those its reading finds: every ._ fork beside an image, and under __MACOSX/ those
    # of the cervical parser's search of the whole source (the others read one folder).
    assert {f for f in strays if f.endswith((".jpg", ".nii.gz"))} <= set(found)
    assert {f for f in forks if f.endswith(".jpg")} <= set(found)


def test_an_msd_label_file_without_a_training_entry_is_an_unpaired_mask(
        tmp_path, shared_data):
    """Task03_Liver/labelsTr/liver_99.nii.gz, listed nowhere in dataset.json, was "file not
    listed in dataset.json" like a notes.txt; it is a mask paired with no image."""
    make_task03_liver(tmp_path / "src", shared_data)
    labels = tmp_path / "src" / "Task03_Liver" / "labelsTr"
    shutil.copy(sorted(labels.glob("liver_*.nii.gz"))[0], labels / "liver_99.nii.gz")
    report = build_store(load_recipe("msd"), tmp_path / "src", tmp_path / "o.zarr",
                         progress=False)
    assert report.ok
    assert report.skipped["Task03_Liver/labelsTr/liver_99.nii.gz"] == UNPAIRED_MASK


@pytest.mark.parametrize("recipe, make, folders", [
    ("nih-chestxray14", nih_chestxray14.make, ["images_001/images"]),
    ("drive", lambda root, shared: drive.make(root), ["training/images", "test/images"]),
    ("cervical-screening", _cervical, ["train/train/Type_1", "test/test"]),
    ("brats", lambda root, shared: make_brats2020(root),
     ["BraTS2020_TrainingData/MICCAI_BraTS2020_TrainingData/BraTS20_Training_001"])])
def test_system_files_beside_the_images_a_narrow_glob_misses_are_reported(
        tmp_path, shared_data, recipe, make, folders):
    """A glob for images (**/*.png, */images/*.tif, *.jpg, case folders) never met the
    .DS_Store, Thumbs.db and desktop.ini among them: they went unreported."""
    source = tmp_path / "src"
    make(source, shared_data)
    strays = {f"{folder}/{name}" for folder in folders for name in
              (".DS_Store", "Thumbs.db", "desktop.ini")}
    for folder in folders:
        add_strays(source / folder)
    report = build_store(load_recipe(recipe), source, tmp_path / "out.zarr", progress=False)
    assert report.ok and report.built
    assert {f: report.skipped.get(f) for f in strays} == dict.fromkeys(strays, SYSTEM_FILE)
