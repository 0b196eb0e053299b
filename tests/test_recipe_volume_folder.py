"""The bundled volume-folder recipe builds NIfTI pairs and a DICOM series folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import nibabel as nib
import numpy as np

from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.failpoints import KILL_AT
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


def test_volume_folder_takes_its_classes_from_the_masks_and_records_them(shared_data, tmp_path):
    """The bundled recipe as it is (no --set): every case of the real TotalSegmentator
    CT with its 31-structure mask builds, and the store records the values found."""
    volume_folder.make(tmp_path / "src", shared_data)
    out = tmp_path / "vf.zarr"
    report = build_store(load_recipe("volume-folder"), tmp_path / "src", out, progress=False,
                         workers=2)
    assert report.ok, report.failed
    seg = np.asanyarray(nib.load(shared_data / "totalsegmentator" /
                                 "example_seg_dicom.nii.gz").dataobj)
    store = open_store(out)
    classes = store.attrs["labels"]["segmentation"]["classes"]
    # Resampled to 1.5 mm by nearest neighbour, a structure of a few voxels may vanish.
    found = {int(v) for v in classes}
    assert {0, 1} <= found <= {int(v) for v in np.unique(seg)} and len(found) > 20
    assert classes["0"] == "background" and classes["1"] == "label_1"
    stored = set().union(*(np.unique(store.read_mask(c).array).tolist()
                           for c in store.cases["case_id"] if store.read_mask(c) is not None))
    assert stored == found
    assert validate_store(out) == []


def test_from_data_classes_are_the_union_over_cases_and_declared_ones_are_checked(tmp_path):
    source = tmp_path / "src"
    for case, values in (("ct_a", [0, 1, 5]), ("ct_b", [0, 6]), ("ct_c", None)):
        volume_folder.write_volume(source / "images" / f"{case}.nii.gz")
        if values:
            volume_folder.write_volume(source / "labels" / f"{case}.nii.gz", values)
    fast = {"harmonize": {"spacing": None}}
    out = tmp_path / "vf.zarr"
    assert build_store(load_recipe("volume-folder").with_overrides(fast), source, out,
                       progress=False).ok
    store = open_store(out)
    assert store.attrs["labels"]["segmentation"]["classes"] == {
        "0": "background", "1": "label_1", "5": "label_5", "6": "label_6"}
    assert store.cases.set_index("case_id")["mask_values"].map(list).to_dict() == {
        "ct_a": [0, 1, 5], "ct_b": [0, 6], "ct_c": []}
    # Declared classes still refuse what they do not list.
    declared = load_recipe("volume-folder").with_overrides(
        {**fast, "labels": {"segmentation": {"classes": {"0": "background", "1": "liver"}}}})
    report = build_store(declared, source, tmp_path / "declared.zarr", progress=False)
    assert set(report.failed) == {"ct_a", "ct_b"} and "mask values [5]" in report.failed["ct_a"]


def test_a_long_list_of_mask_values_in_an_error_says_how_many_are_left(tmp_path):
    source = tmp_path / "src"
    volume_folder.write_volume(source / "images" / "a.nii.gz")
    volume_folder.write_volume(source / "labels" / "a.nii.gz", list(range(0, 15)))
    recipe = load_recipe("volume-folder").with_overrides(
        {"harmonize": {"spacing": None},
         "labels": {"segmentation": {"classes": {"0": "background"}}}})
    report = build_store(recipe, source, tmp_path / "o.zarr", progress=False)
    assert "mask values [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ... (4 more)]" in report.failed["a"]


def test_mask_values_a_label_map_cannot_hold_are_refused_or_mapped(tmp_path):
    """A uint8/uint16 label map cannot hold -1, 70000 or 1.5: cast, they came out as
    255, 4464 and 1, other classes, silently. They fail the case, naming the mask and
    labels.segmentation.map, which maps -1 to a label."""
    source = tmp_path / "src"
    for case, values, dtype in (("neg", [0, 1, -1], np.int16), ("big", [0, 70000], np.int32),
                                ("half", [0, 1.5], np.float32), ("ok", [0, 2], np.float32)):
        volume_folder.write_volume(source / "images" / f"{case}.nii.gz")
        data = np.zeros((12, 10, 6), dtype)
        data.flat[[7, 12, 17][:len(values)]] = values
        (source / "labels").mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(data, volume_folder.AFFINE), source / "labels" / f"{case}.nii.gz")
    fast = {"harmonize": {"spacing": None}}
    report = build_store(load_recipe("volume-folder").with_overrides(fast), source,
                         tmp_path / "o.zarr", progress=False)
    assert set(report.failed) == {"neg", "big", "half"}
    assert "values from -1 to 1" in report.failed["neg"]
    assert "labels.segmentation.map" in report.failed["neg"]
    assert "values from 0 to 70000" in report.failed["big"]
    assert "not whole numbers" in report.failed["half"]
    assert sorted(np.unique(open_store(tmp_path / "o.zarr").read_mask("ok").array)) == [0, 2]

    mapped = load_recipe("volume-folder").with_overrides(
        {**fast, "labels": {"segmentation": {"map": {"-1": 0}}}})
    report = build_store(mapped, source, tmp_path / "m.zarr", progress=False)
    assert "neg" in report.built
    assert sorted(np.unique(open_store(tmp_path / "m.zarr").read_mask("neg").array)) == [0, 1]


def test_a_volumes_store_holds_uint8_and_uint16_masks_side_by_side(tmp_path):
    """Each volumes case has its own arrays: a mask with a label above 255 (uint16)
    next to masks that need uint8 is no reason to refuse either, in whichever order
    the workers finish. Declared classes above 255 make every mask uint16."""
    source = tmp_path / "src"
    for case, values in (("ca", [0, 300]), ("cb", [0, 2]), ("cc", [0, 7])):
        volume_folder.write_volume(source / "images" / f"{case}.nii.gz")
        volume_folder.write_volume(source / "labels" / f"{case}.nii.gz", values)
    fast = {"harmonize": {"spacing": None}}
    report = build_store(load_recipe("volume-folder").with_overrides(fast), source,
                         tmp_path / "o.zarr", progress=False)
    assert report.ok, report.failed
    store = open_store(tmp_path / "o.zarr")
    assert {c: str(store.read_mask(c).array.dtype) for c in ("ca", "cb", "cc")} == {
        "ca": "uint16", "cb": "uint8", "cc": "uint8"}
    assert validate_store(tmp_path / "o.zarr") == []
    declared = load_recipe("volume-folder").with_overrides(
        {**fast, "labels": {"segmentation": {"classes": {
            "1": "x", "2": "y", "7": "z", "300": "w"}}}})
    assert build_store(declared, source, tmp_path / "d.zarr", progress=False).ok
    store = open_store(tmp_path / "d.zarr")
    assert {str(store.read_mask(c).array.dtype) for c in ("ca", "cb", "cc")} == {"uint16"}


def test_classes_from_data_count_the_cases_a_resumed_build_recovered(tmp_path):
    """Killed after its first cases, the build resumed: the classes still hold the values
    of the recovered cases (read from their journaled rows), not only the rebuilt ones'."""
    source = tmp_path / "src"
    for index, value in enumerate([7, 3, 4, 2]):
        volume_folder.write_volume(source / "images" / f"case{index}.nii.gz")
        volume_folder.write_volume(source / "labels" / f"case{index}.nii.gz", [0, value])
    out = tmp_path / "vf.zarr"
    command = [sys.executable, "-m", "medimg_build.cli", "build", "volume-folder", "--source",
               str(source), "--out", str(out), "--workers", "1", "--quiet", "--key", "k",
               "--set", "harmonize.spacing=null"]
    killed = subprocess.run(command, env=dict(os.environ, **{KILL_AT: "3"}),
                            capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    report = build_store(load_recipe("volume-folder").with_overrides(
        {"harmonize": {"spacing": None}}), source, out, progress=False, resume=True, key="k")
    assert report.ok and report.already_complete >= 1
    assert open_store(out).attrs["labels"]["segmentation"]["classes"] == {
        "0": "background", "2": "label_2", "3": "label_3", "4": "label_4", "7": "label_7"}


def test_classes_set_one_by_one_over_from_data_keep_zero_as_background(tmp_path):
    """``--set labels.segmentation.classes.1=liver`` replaces from_data with {1: liver}:
    0, what every mask holds where it marks nothing, stays background."""
    source = tmp_path / "src"
    volume_folder.write_volume(source / "images" / "ct_a.nii.gz")
    volume_folder.write_volume(source / "labels" / "ct_a.nii.gz", [0, 1])
    out = tmp_path / "o.zarr"
    assert main(["build", "volume-folder", "--source", str(source), "--out", str(out),
                 "--workers", "1", "--quiet", "--set", "harmonize.spacing=null",
                 "--set", "labels.segmentation.classes.1=liver"]) == 0
    assert open_store(out).attrs["labels"]["segmentation"]["classes"] == {
        "0": "background", "1": "liver"}
    assert validate_store(out) == []
