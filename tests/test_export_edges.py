"""``medimg-build export`` at its edges (issue 19 red team): output paths under a file,
file names two cases would share, case ids and dataset ids nnU-Net cannot take, the
header of pictures without a pixel size, and 8-bit pictures back as their own pixels
(the real ChestX-ray14 and TBX11K PNGs of tests/data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medimg_build.cli import main
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

AFFINE = np.array([[0.8, 0, 0, -20], [0, 0.8, 0, -30], [0, 0, 2.5, 10], [0, 0, 0, 1]])
NIH_PNGS = ["00000001_000.png", "00027426_000.png"]  # 512 x 512, 8-bit grey


def export(store, out, to: str, *options: str) -> int:
    return main(["export", str(store), "--to", to, "--out", str(out), *options])


def error_line(capsys) -> str:
    error = capsys.readouterr().err.strip()
    assert error.startswith("medimg-build: error: ") and "\n" not in error
    return error


def volume_store(root: Path, case_ids: list[str], unlabelled: tuple[str, ...] = (),
                 affine: np.ndarray = AFFINE, **recipe: dict) -> Path:
    """A volume-folder store of small int16 volumes, each with a two-label mask but
    those ``unlabelled``, every case in the train split (unless ``recipe`` overrides
    say otherwise), on the source grid."""
    rng = np.random.default_rng(0)
    (root / "src" / "images").mkdir(parents=True)
    (root / "src" / "labels").mkdir()
    for case_id in case_ids:
        image = rng.integers(-1000, 2000, (12, 10, 4)).astype(np.int16)
        mask = np.zeros(image.shape, np.uint8)
        mask[2:5, 3:6, 1:3], mask[6:9, 3:6, 1:3] = 1, 2
        nib.save(nib.Nifti1Image(image, affine), root / "src" / "images" / f"{case_id}.nii.gz")
        if case_id not in unlabelled:
            nib.save(nib.Nifti1Image(mask, affine),
                     root / "src" / "labels" / f"{case_id}.nii.gz")
    recipe = load_recipe("volume-folder").with_overrides({
        "harmonize": {"spacing": None},
        "split": {"fractions": {"train": 1.0, "val": None, "test": None}}, **recipe})
    report = build_store(recipe, root / "src", root / "store.zarr", progress=False)
    assert report.ok, report.failed
    return root / "store.zarr"


def picture_store(root: Path, shared_data: Path, shape: int) -> Path:
    """The two real ChestX-ray14 PNGs as a class-folders stack (pictures: no pixel
    size) at ``shape`` x ``shape``: 512 is their own grid, 256 a resampled one."""
    (root / "src" / "nih").mkdir(parents=True)
    for name in NIH_PNGS:
        shutil.copy(shared_data / "torchxrayvision" / "tests" / name, root / "src" / "nih")
    recipe = load_recipe("class-folders").with_overrides({"harmonize": {"shape": [shape, shape]}})
    report = build_store(recipe, root / "src", root / "pictures.zarr", progress=False)
    assert report.ok, report.failed
    return root / "pictures.zarr"


@pytest.mark.parametrize("to", ["nifti", "nnunet"])
def test_an_out_inside_a_file_is_refused_in_one_line(tmp_path, capsys, to):
    """Before: a FileExistsError traceback from mkdir."""
    store = volume_store(tmp_path, ["a"])
    (tmp_path / "notes.txt").write_text("a file")
    assert export(store, tmp_path / "notes.txt" / "out", to) == 2
    error = error_line(capsys)
    assert f"inside {tmp_path / 'notes.txt'}, which is a file" in error


def test_out_dot_exports_into_the_working_directory(tmp_path, monkeypatch):
    """``cd empty-folder && medimg-build export STORE --to nifti --out .``: before, a
    ValueError traceback ("PosixPath('.') has an empty name"). The folder is filled in
    place, not replaced (a shell standing in it would see a deleted folder)."""
    store = volume_store(tmp_path, ["a"])
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    inode = here.stat().st_ino
    assert export(store, ".", "nifti") == 0
    assert sorted(p.name for p in Path(".").iterdir()) == ["a.json", "a.nii.gz",
                                                           "a_mask.nii.gz"]
    assert here.stat().st_ino == inode
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_a_mask_file_name_two_cases_would_share_is_refused(tmp_path, capsys):
    """Case x's mask and case x_mask's image are both x_mask.nii.gz: before, one
    silently replaced the other. Exported apart, each is whole."""
    store = volume_store(tmp_path, ["x", "x_mask"])
    assert export(store, tmp_path / "out", "nifti") == 2
    error = error_line(capsys)
    assert "the mask of case 'x' and the image of case 'x_mask'" in error
    assert "x_mask.nii.gz" in error and not (tmp_path / "out").exists()
    assert export(store, tmp_path / "x", "nifti", "--case", "x") == 0
    assert export(store, tmp_path / "x_mask", "nifti", "--case", "x_mask") == 0
    image = np.asanyarray(nib.load(tmp_path / "x_mask" / "x_mask.nii.gz").dataobj)
    assert image.dtype == np.int16  # the image, not x's mask
    assert set(np.unique(nib.load(tmp_path / "x" / "x_mask.nii.gz").dataobj)) == {0, 1, 2}


def test_an_nnunet_training_case_ending_in_seg_is_refused(tmp_path, capsys):
    """nnU-Net's preprocessed dataset drops every '<id>_seg.b2nd' from its case list
    (nnUNetDatasetBlosc2.get_identifiers), where case x's segmentation also goes: a
    case 'x_seg' would vanish from training or be overwritten. Before: written."""
    store = volume_store(tmp_path, ["x", "x_seg", "y"])
    assert export(store, tmp_path / "raw", "nnunet") == 2
    error = error_line(capsys)
    assert "case 'x_seg'" in error and "'_seg'" in error and "--case" in error
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())
    assert export(store, tmp_path / "raw", "nnunet", "--case", "x", "y") == 0


def test_every_nnunet_fold_keeps_a_patient_on_one_side(tmp_path):
    """nnU-Net trains folds 0-4 and, for a fold the file lacks, draws a random 80:20
    split of case ids (nnUNetTrainer.do_split), which puts one patient's cases on both
    sides. Before: a store with a val split gave fold 0 only. Now five folds, fold 0 the
    store's own train/val, all patient-level."""
    cases = [f"p{p}_{visit}" for p in range(8) for visit in ("a", "b")]
    store = volume_store(tmp_path, cases, source={"patient_pattern": r"^(?P<patient>p\d+)_"},
                         split={"fractions": {"train": 0.5, "val": 0.5, "test": None}})
    assert export(store, tmp_path / "raw", "nnunet") == 0
    folder = tmp_path / "raw" / "Dataset500_volume_folder"
    splits = json.loads((folder / "splits_final.json").read_text())
    from medimg_build import open_store

    table = open_store(store).cases.set_index("case_id")
    assert len(splits) == 5
    val = table["split"] != "train"  # the store's val split, whatever its name
    assert val.any() and splits[0] == {"train": sorted(table.index[~val]),
                                       "val": sorted(table.index[val])}
    for fold in splits:
        assert fold["val"] and sorted(fold["train"] + fold["val"]) == sorted(cases)
        patients = {side: {table.loc[c, "patient_id"] for c in fold[side]}
                    for side in ("train", "val")}
        assert not patients["train"] & patients["val"]


def test_a_dataset_id_nnunet_knows_elsewhere_is_refused(tmp_path, capsys, monkeypatch):
    """nnU-Net looks an id up in $nnUNet_raw, $nnUNet_preprocessed and $nnUNet_results
    together and fails on two names for one id ("More than one dataset name found",
    find_candidate_datasets). Before: only --out was looked at."""
    store = volume_store(tmp_path, ["a", "b"])
    preprocessed = tmp_path / "nnUNet_preprocessed"
    (preprocessed / "Dataset500_Other").mkdir(parents=True)
    (preprocessed / "Dataset501_volume_folder").mkdir()  # this very dataset: fine
    monkeypatch.setenv("nnUNet_preprocessed", str(preprocessed))
    assert export(store, tmp_path / "raw", "nnunet") == 2
    assert f"dataset id 500 is taken by Dataset500_Other in {preprocessed}" in \
        error_line(capsys)
    assert export(store, tmp_path / "raw", "nnunet", "--dataset-id", "501") == 0
    assert (tmp_path / "raw" / "Dataset501_volume_folder" / "dataset.json").is_file()


def test_an_nnunet_dataset_without_training_cases_is_flagged(tmp_path, capsys):
    """Only unlabelled cases: imagesTs, which nnUNetv2_predict takes, but nnU-Net's
    verify_dataset_integrity stops on it with a bare StopIteration, and nothing can be
    planned or trained. Before: written without a word."""
    store = volume_store(tmp_path, ["a", "b"], unlabelled=("b",))
    assert export(store, tmp_path / "raw", "nnunet", "--case", "b") == 0
    warning = capsys.readouterr().err.strip()
    assert warning.startswith("medimg-build: warning: ") and "\n" not in warning
    assert "no training case" in warning and "Dataset500_volume_folder" in warning
    folder = tmp_path / "raw" / "Dataset500_volume_folder"
    assert [p.name for p in (folder / "imagesTs").iterdir()] == ["b_0000.nii.gz"]
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 0
    assert export(store, tmp_path / "raw2", "nnunet") == 0
    assert "warning" not in capsys.readouterr().err  # case a trains


def test_a_sheared_affine_is_written_with_a_warning(tmp_path, capsys):
    """A NIfTI source whose sform has a shear (slices shifted along x, as a tilted gantry
    gives): the store keeps it, the sform holds it, but a quaternion qform cannot, and
    nibabel's closest rotation is what ITK (SimpleITK, so nnU-Net) may read. Before:
    written without a word. An oblique rigid affine (rotated 20 degrees) gives none."""
    sheared = AFFINE.copy()
    sheared[0, 2] = 0.6
    store = volume_store(tmp_path / "sheared", ["a"], affine=sheared)
    assert export(store, tmp_path / "sheared-out", "nifti") == 0
    warning = capsys.readouterr().err.strip()
    assert warning.startswith("medimg-build: warning: ") and "\n" not in warning
    assert "case 'a'" in warning and "shear" in warning
    image = nib.load(tmp_path / "sheared-out" / "a.nii.gz")
    assert np.abs(image.get_sform() - sheared).max() < 1e-5  # the sform is the truth
    turn = np.radians(20)
    rotation = np.array([[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0],
                         [0, 0, 1]])
    oblique = AFFINE.copy()
    oblique[:3, :3] = rotation @ AFFINE[:3, :3]
    store = volume_store(tmp_path / "oblique", ["a"], affine=oblique)
    assert export(store, tmp_path / "oblique-out", "nifti") == 0
    assert "warning" not in capsys.readouterr().err
    image = nib.load(tmp_path / "oblique-out" / "a.nii.gz")
    assert np.abs(image.get_qform() - image.get_sform()).max() < 1e-4


def test_pictures_without_a_pixel_size_are_not_in_mm(tmp_path, shared_data):
    """A PNG's spacing counts pixels: xyzt_units NIFTI_UNITS_UNKNOWN (0), not mm (before:
    mm, which calls a 2-pixel step 2 mm). Volumes in a patient frame stay mm."""
    pictures = picture_store(tmp_path / "p", shared_data, 256)
    assert export(pictures, tmp_path / "pictures", "nifti") == 0
    for path in sorted((tmp_path / "pictures").glob("*.nii.gz")):
        header = nib.load(path).header
        assert header.get_xyzt_units()[0] == "unknown"
        assert int(header["xyzt_units"]) & 0x07 == 0
        assert int(header["sform_code"]) == int(header["qform_code"]) == 2  # aligned
    volumes = volume_store(tmp_path / "v", ["a"])
    assert export(volumes, tmp_path / "volumes", "nifti") == 0
    assert nib.load(tmp_path / "volumes" / "a.nii.gz").header.get_xyzt_units()[0] == "mm"


def test_8bit_pictures_come_back_as_their_own_pixels(tmp_path, shared_data):
    """On their own grid, the real PNGs' 8-bit values come back exactly, as uint8:
    before, float32 up to 0.06 off (float16 k/255 times 255). Resampled, they stay
    float32 (values between pixels are not pixels)."""
    store = picture_store(tmp_path / "own", shared_data, 512)
    assert export(store, tmp_path / "own-grid", "nifti") == 0
    for name in NIH_PNGS:
        case_id = f"nih_{Path(name).stem}"
        exported = np.asanyarray(nib.load(tmp_path / "own-grid" / f"{case_id}.nii.gz").dataobj)
        source = np.asarray(Image.open(shared_data / "torchxrayvision" / "tests" / name))
        assert exported.dtype == np.uint8
        assert np.array_equal(exported.T, source)  # NIfTI i runs along the columns
        record = json.loads((tmp_path / "own-grid" / f"{case_id}.json").read_text())
        assert record["intensity"]["precision"].startswith("exact")
    resampled = picture_store(tmp_path / "small", shared_data, 256)
    assert export(resampled, tmp_path / "resampled", "nifti") == 0
    for path in (tmp_path / "resampled").glob("*.nii.gz"):
        assert nib.load(path).get_data_dtype() == np.float32


def test_undone_values_are_made_integers_only_when_they_are():
    """The rule behind uint8 pictures and int16 MR: within float precision of integers
    everywhere, else float32 as they are (fractions, NaN)."""
    from medimg_build.export.intensity import integer_values

    mr = {"method": "mr", "mean": [500.0]}
    exact = np.array([0.0, 17.0004, 9733.0], np.float32)  # z-score rounding only
    assert integer_values(exact, np.dtype(np.float32), mr).tolist() == [0, 17, 9733]
    assert integer_values(exact, np.dtype(np.float32), mr).dtype == np.int16
    for values in ([0.0, 17.25, 9733.0], [0.0, np.nan, 9733.0]):
        assert integer_values(np.array(values, np.float32), np.dtype(np.float32), mr) is None
    assert integer_values(exact, np.dtype(np.float16), mr) is None  # too coarse to tell


def test_radiographs_in_mm_are_pictures_in_mm(tmp_path, shared_data):
    """The real SIIM CR (PixelSpacing, no ImageOrientationPatient) and NIH's PNG with its
    table's pixel size are pictures whose pixel size is known: NIfTI code 2 (their own
    frame) in mm. Before: code 1 "scanner", claiming a patient frame they do not have."""
    from fixtures import chest_films
    source = chest_films.make(tmp_path / "src", shared_data)
    recipe = load_recipe("nih-chestxray14").with_overrides(
        {**chest_films.OVERRIDES, "harmonize": {"shape": [64, 64]}})
    assert build_store(recipe, source, tmp_path / "films.zarr", progress=False).ok
    assert export(tmp_path / "films.zarr", tmp_path / "out", "nifti") == 0
    for case_id in chest_films.FILMS:
        header = nib.load(tmp_path / "out" / f"{case_id}.nii.gz").header
        assert int(header["sform_code"]) == int(header["qform_code"]) == 2, case_id
        assert header.get_xyzt_units()[0] == "mm", case_id
