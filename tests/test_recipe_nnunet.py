"""The bundled nnunet recipe on nnU-Net v2 raw datasets made in nnU-Net's documented
layout (tests/fixtures/nnunet.py: MIC-DKFZ/nnUNet@0c4ce5b7 documentation/dataset_format.md,
nnunetv2/dataset_conversion/Dataset220_KiTS2023.py @017de4ad). The refusals follow
nnunetv2 2.8.1's verify_dataset_integrity and LabelManager (label_handling.py
@02153c66): background 0, consecutive values, one regions_class_order entry per region,
numTraining equal to the cases in imagesTr, every case with its label."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.errors import RecipeError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.source_report import SYSTEM_FILE
from medimg_build.store.validate import validate_store
from fixtures.nnunet import (make_dataset005_prostate, make_dataset027_acdc,
                            make_dataset220_kits2023)

def _edit(folder, **changes):
    path = folder / "dataset.json"
    description = json.loads(path.read_text())
    description.update(changes)
    path.write_text(json.dumps(description, indent=4))


def test_dataset005_prostate_stacks_named_channels_and_builds_imagests_as_test(
        tmp_path, shared_data):
    made = make_dataset005_prostate(tmp_path / "src", shared_data)
    out = tmp_path / "prostate.zarr"
    report = build_store(load_recipe("nnunet"), tmp_path / "src", out, progress=False)
    # Case ids are cut at the last _XXXX: prostate_00_0000 is channel 0 of prostate_00.
    assert report.ok and sorted(report.built) == made["cases"] + made["test"]
    assert report.skipped == {}
    assert validate_store(out) == []
    store = open_store(out)
    assert store.attrs["labels"]["segmentation"] == {
        "classes": {"0": "background", "1": "PZ", "2": "TZ"}}
    cases = store.cases.set_index("case_id")
    assert set(cases["channels"]) == {"T2,ADC"}
    assert set(cases["nnunet_dataset"]) == {"Dataset005_Prostate"}
    for case_id, values in made["label_values"].items():
        assert store.read_image(case_id).n_channels == 2
        assert sorted(int(v) for v in np.unique(store.read_mask(case_id).array)) == values
        assert cases.loc[case_id, "split"] in ("train", "val")
    # imagesTs: no labels, nnU-Net's test cases; built without a mask in the test split.
    assert cases.loc["prostate_08", "split"] == "test"
    assert cases.loc["prostate_08", "official_split"] == "test"
    assert store.read_mask("prostate_08") is None
    assert store.read_image("prostate_08").n_channels == 2


def test_kits2023_region_labels_are_recorded_not_collapsed(tmp_path, shared_data):
    made = make_dataset220_kits2023(tmp_path / "src", shared_data)
    # nnunet is for MR datasets: a CT one is refused with the recipe that builds it.
    with pytest.raises(RecipeError, match=r"\['CT'\] \(CT\).*nnunet-ct for CT"):
        build_store(load_recipe("nnunet"), made["dataset"], tmp_path / "x.zarr",
                    progress=False)
    out = tmp_path / "kits.zarr"
    report = build_store(load_recipe("nnunet-ct"), made["dataset"], out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert validate_store(out) == []
    assert open_store(out).read_image("case_00000").spacing == pytest.approx((1.5,) * 3)
    segmentation = open_store(out).attrs["labels"]["segmentation"]
    # regions_class_order (1, 3, 2): nnU-Net writes kidney as 1, masses as 3, tumor as 2.
    assert segmentation == {
        "classes": {"0": "background", "1": "kidney", "2": "tumor", "3": "masses"},
        "regions": {"kidney": [1, 2, 3], "masses": [2, 3], "tumor": [2]},
        "regions_class_order": [1, 3, 2]}
    store = open_store(out)
    for case_id, values in made["label_values"].items():
        assert sorted(int(v) for v in np.unique(store.read_mask(case_id).array)) == values


def test_unpaired_files_missing_channels_and_strays_are_reported(tmp_path, shared_data):
    made = make_dataset005_prostate(tmp_path / "src", shared_data)
    dataset = made["dataset"]
    (dataset / "imagesTr" / "prostate_01_0001.nii.gz").unlink()  # ADC gone
    (dataset / "labelsTr" / "prostate_99.nii.gz").write_bytes(
        (dataset / "labelsTr" / "prostate_00.nii.gz").read_bytes())
    (dataset / "imagesTr" / "._prostate_00_0000.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    (dataset / "imagesTr" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (dataset / "imagesTr" / "notes.txt").write_text("scanner notes\n")
    report = build_store(load_recipe("nnunet"), dataset, tmp_path / "o.zarr", progress=False)
    assert sorted(report.built) == ["prostate_00", "prostate_08"]
    assert report.skipped == {
        "imagesTr/prostate_01_0000.nii.gz":
            "case prostate_01 lacks channel file(s) 0001 (ADC): not built",
        "labelsTr/prostate_99.nii.gz":
            "label file without images (no imagesTr/prostate_99_0000.nii.gz)",
        "imagesTr/._prostate_00_0000.nii.gz": SYSTEM_FILE,
        "imagesTr/.DS_Store": SYSTEM_FILE,
        "imagesTr/notes.txt": "not a .nii.gz file (dataset.json file_ending)"}


def test_an_image_without_its_label_is_reported(tmp_path, shared_data):
    made = make_dataset005_prostate(tmp_path / "src", shared_data)
    (made["dataset"] / "labelsTr" / "prostate_00.nii.gz").unlink()
    report = build_store(load_recipe("nnunet"), made["dataset"], tmp_path / "o.zarr",
                         progress=False)
    assert sorted(report.built) == ["prostate_01", "prostate_08"]
    assert report.skipped == {"imagesTr/prostate_00_0000.nii.gz":
                              "case prostate_00 has no label file labelsTr/prostate_00.nii.gz"}


@pytest.mark.parametrize("changes, problem", [
    ({"numTraining": 32}, r"numTraining is 32 but imagesTr holds 2 cases"),
    ({"file_ending": ".png"}, r"file_ending '\.png' is not read"),
    ({"file_ending": ".tif"}, r"file_ending '\.tif' is not read"),
    ({"labels": {"0": "background", "1": "PZ", "2": "TZ"}}, r"as nnU-Net v1 did"),
    ({"labels": {"background": 0, "PZ": 1, "TZ": 3}}, r"\[0, 1, 3\] are not consecutive"),
    ({"labels": {"PZ": 1, "TZ": 2}}, r"no \"background\": 0"),
    ({"labels": {"background": 0, "gland": [1, 2], "TZ": 2}},
     r"regions_class_order with one value per region \(2\), it is None"),
    ({"labels": {"background": 0, "PZ": 1, "TZ": 2, "ignore": 5}},
     r"ignore label 5 is not the largest label value plus one \(3\)"),
    ({"channel_names": {"0": "T2", "2": "ADC"}}, r"channel_names keys \[0, 2\]"),
])
def test_what_nnunet_refuses_is_refused_with_the_file_named(tmp_path, shared_data,
                                                            changes, problem):
    made = make_dataset005_prostate(tmp_path / "src", shared_data)
    _edit(made["dataset"], **changes)
    with pytest.raises(RecipeError, match=problem) as caught:
        build_store(load_recipe("nnunet"), made["dataset"], tmp_path / "o.zarr",
                    progress=False)
    assert "dataset.json" in str(caught.value)


def test_label_values_written_as_text_or_decimals_are_read_as_nnunet_reads_them(
        tmp_path, shared_data):
    """LabelManager takes int(value): "1" and 2.0 in a hand-written dataset.json work."""
    made = make_dataset005_prostate(tmp_path / "src", shared_data)
    _edit(made["dataset"], labels={"background": "0", "PZ": "1", "TZ": 2.0})
    out = tmp_path / "o.zarr"
    assert build_store(load_recipe("nnunet"), made["dataset"], out, progress=False).ok
    assert open_store(out).attrs["labels"]["segmentation"]["classes"] == {
        "0": "background", "1": "PZ", "2": "TZ"}


def test_the_ignore_label_is_a_class(tmp_path, shared_data):
    made = make_dataset005_prostate(tmp_path / "src", shared_data)
    _edit(made["dataset"], labels={"background": 0, "PZ": 1, "TZ": 2, "ignore": 3})
    out = tmp_path / "o.zarr"
    assert build_store(load_recipe("nnunet"), made["dataset"], out, progress=False).ok
    assert open_store(out).attrs["labels"]["segmentation"]["classes"] == {
        "0": "background", "1": "PZ", "2": "TZ", "3": "ignore"}


def test_nnunet_v1_task_and_early_v2_modality_key_are_read(tmp_path, shared_data):
    """nnU-Net v1 raw Task folders (v1 documentation/dataset_conversion.md: _XXXX files,
    Decathlon-style dataset.json) and early v2 files naming channels "modality"."""
    made = make_dataset005_prostate(tmp_path / "src", shared_data)
    description = json.loads((made["dataset"] / "dataset.json").read_text())
    early = {"modality": description.pop("channel_names"), **description}
    (made["dataset"] / "dataset.json").write_text(json.dumps(early))
    out = tmp_path / "early.zarr"
    assert sorted(build_store(load_recipe("nnunet"), made["dataset"], out,
                              progress=False).built) == made["cases"] + made["test"]
    v1 = {"name": "PROSTATE", "tensorImageSize": "4D", "modality": {"0": "T2", "1": "ADC"},
          "labels": {"0": "background", "1": "PZ", "2": "TZ"}, "numTraining": 2,
          "numTest": 1, "training": [{"image": "./imagesTr/prostate_00.nii.gz",
                                      "label": "./labelsTr/prostate_00.nii.gz"},
                                     {"image": "./imagesTr/prostate_01.nii.gz",
                                      "label": "./labelsTr/prostate_01.nii.gz"}],
          "test": ["./imagesTs/prostate_08.nii.gz"]}
    (made["dataset"] / "dataset.json").write_text(json.dumps(v1))
    out = tmp_path / "v1.zarr"
    assert build_store(load_recipe("nnunet"), made["dataset"], out, progress=False).ok
    store = open_store(out)
    assert store.attrs["labels"]["segmentation"]["classes"] == {
        "0": "background", "1": "PZ", "2": "TZ"}
    assert set(store.cases["channels"]) == {"T2,ADC"}


def test_images_and_labels_folders_are_not_taken_for_imagestr(tmp_path, shared_data):
    """The issue's silent case (images/case_001_0000.nii.gz beside labels/case_001.nii.gz)
    is refused, as nnU-Net refuses it ("There needs to be a imagesTr subfolder")."""
    made = make_dataset005_prostate(tmp_path / "src", shared_data)
    for old, new in (("imagesTr", "images"), ("labelsTr", "labels")):
        (made["dataset"] / old).rename(made["dataset"] / new)
    with pytest.raises(RecipeError, match=r"has no imagesTr/ and labelsTr/ folders"):
        build_store(load_recipe("nnunet"), made["dataset"], tmp_path / "o.zarr",
                    progress=False)


def test_a_decathlon_task_is_sent_to_the_msd_recipe(tmp_path, shared_data):
    from fixtures.msd import make_task05_prostate
    made = make_task05_prostate(tmp_path / "src", shared_data)
    with pytest.raises(RecipeError, match=r"numTraining is 2 but imagesTr holds 0 cases.*"
                       r"msd or msd-mr recipe"):
        build_store(load_recipe("nnunet"), made["task"], tmp_path / "o.zarr", progress=False)


def test_an_explicit_dataset_file_list_is_read_and_confined(tmp_path, shared_data):
    """nnU-Net's "dataset" key (nnunetv2 utilities/utils.py
    get_filenames_of_train_images_and_targets: {case: {"images": [...], "label": ...}},
    paths relative to the dataset folder) replaces imagesTr/labelsTr."""
    made = make_dataset005_prostate(tmp_path / "src", shared_data)
    dataset = made["dataset"]
    for old, new in (("imagesTr", "images"), ("labelsTr", "labels")):
        (dataset / old).rename(dataset / new)
    _edit(dataset, dataset={
        "prostate_00": {"images": ["images/prostate_00_0000.nii.gz",
                                   "images/prostate_00_0001.nii.gz"],
                        "label": "labels/prostate_00.nii.gz"},
        "prostate_01": {"images": ["/etc/passwd", "images/prostate_01_0001.nii.gz"],
                        "label": "labels/prostate_01.nii.gz"},
        "prostate_02": {"images": ["$HOME/a_0000.nii.gz", "images/prostate_01_0001.nii.gz"],
                        "label": "labels/prostate_01.nii.gz"}}, numTraining=3)
    out = tmp_path / "o.zarr"
    report = build_store(load_recipe("nnunet"), dataset, out, progress=False)
    assert sorted(report.built) == ["prostate_00", "prostate_08"]
    assert report.skipped == {
        "dataset.json dataset: prostate_01": "a listed path is an absolute path, not read",
        "dataset.json dataset: prostate_02": "a path with $VARIABLES, not read"}
    assert open_store(out).read_image("prostate_00").n_channels == 2


def test_a_case_name_that_cannot_name_a_case_is_reported(tmp_path, shared_data):
    made = make_dataset005_prostate(tmp_path / "src", shared_data)
    images, labels = made["dataset"] / "imagesTr", made["dataset"] / "labelsTr"
    for channel in ("0000", "0001"):
        (images / f"prostate 02_{channel}.nii.gz").write_bytes(
            (images / f"prostate_00_{channel}.nii.gz").read_bytes())
    (labels / "prostate 02.nii.gz").write_bytes((labels / "prostate_00.nii.gz").read_bytes())
    _edit(made["dataset"], numTraining=3)
    report = build_store(load_recipe("nnunet"), made["dataset"], tmp_path / "o.zarr",
                         progress=False)
    assert sorted(report.built) == made["cases"] + made["test"]
    assert "is not a safe name" in report.skipped["imagesTr/prostate 02_0000.nii.gz"]


def test_labelsts_masks_go_with_their_test_cases(tmp_path, shared_data):
    """Many public nnU-Net converters also write labelsTs/ (search `join(out_base,
    "labelsTs")`: BraTS-GLI, KiTS21, ACDC-style scripts, find_string ids 67444308841,
    22539176133, 6168593380): its masks go with the imagesTs cases."""
    made = make_dataset005_prostate(tmp_path / "src", shared_data)
    dataset = made["dataset"]
    (dataset / "labelsTs").mkdir()
    t2 = nib.load(dataset / "imagesTs" / "prostate_08_0000.nii.gz")
    label = np.zeros(t2.shape, np.uint8)
    label[4:8, 4:8, 2:4], label[8:10, 8:10, 2:4] = 1, 2  # PZ and TZ stand-ins
    for case in ("prostate_08", "prostate_77"):
        nib.save(nib.Nifti1Image(label, t2.affine), dataset / "labelsTs" / f"{case}.nii.gz")
    out = tmp_path / "o.zarr"
    report = build_store(load_recipe("nnunet"), dataset, out, progress=False)
    assert sorted(report.built) == made["cases"] + made["test"]
    assert report.skipped == {"labelsTs/prostate_77.nii.gz":
                              "label file without images (no imagesTs/prostate_77_0000.nii.gz)"}
    store = open_store(out)
    assert store.cases.set_index("case_id").loc["prostate_08", "split"] == "test"
    assert sorted(int(v) for v in np.unique(store.read_mask("prostate_08").array)) == [0, 1, 2]
    # With labelsTs there, a test case without its label is reported, not built bare.
    (dataset / "labelsTs" / "prostate_08.nii.gz").unlink()
    report = build_store(load_recipe("nnunet"), dataset, tmp_path / "p.zarr", progress=False)
    assert sorted(report.built) == made["cases"]
    assert report.skipped["imagesTs/prostate_08_0000.nii.gz"] == \
        "case prostate_08 has no label file labelsTs/prostate_08.nii.gz"


def test_acdc_frames_of_one_patient_share_a_patient_and_a_split(tmp_path, shared_data):
    """Dataset027_ACDC (tests/fixtures/nnunet.py, nnunetv2's converter): patient001_frame01
    and patient001_frame12 are one patient. By default each case is its own patient (as in
    nnU-Net's own default split); options.patient_pattern groups them, so no patient's
    frames land in both train and val."""
    made = make_dataset027_acdc(tmp_path / "src", shared_data)
    default = build_store(load_recipe("nnunet"), tmp_path / "src", tmp_path / "a.zarr",
                          progress=False)
    assert default.ok
    cases = open_store(tmp_path / "a.zarr").cases
    assert cases["patient_id"].nunique() == len(made["patients"])  # no guess: documented

    recipe = load_recipe("nnunet").with_overrides({"source": {"options": {
        "patient_pattern": r"^(?P<patient>patient\d{3})_frame\d{2}$"}}})
    out = tmp_path / "acdc.zarr"
    report = build_store(recipe, tmp_path / "src", out, progress=False)
    assert report.ok and sorted(report.built) == sorted(made["cases"] + made["test"])
    cases = open_store(out).cases.set_index("case_id")
    for case_id, patient in made["patients"].items():
        same = {c for c, p in made["patients"].items() if p == patient}
        assert set(cases.index[cases["patient_id"] == cases.loc[case_id, "patient_id"]]) == same
        assert set(cases.loc[sorted(same), "split"]) == {cases.loc[case_id, "split"]}
    # Two splits, each holding whole patients, and the test patient alone in test.
    assert set(cases.loc[made["cases"], "split"]) == {"train", "val"}
    assert set(cases.loc[made["test"], "split"]) == {"test"}


def test_a_case_id_the_patient_pattern_does_not_match_is_an_error(tmp_path, shared_data):
    make_dataset027_acdc(tmp_path / "src", shared_data)
    recipe = load_recipe("nnunet").with_overrides({"source": {"options": {
        "patient_pattern": r"^(?P<patient>patient\d{3})_ED$"}}})
    with pytest.raises(RecipeError, match=r"'patient001_frame01' does not match "
                       r"source.options.patient_pattern"):
        build_store(recipe, tmp_path / "src", tmp_path / "x.zarr", progress=False)
