"""A store as an nnU-Net v2 raw dataset (``--to nnunet``).

The format, as nnU-Net documents and checks it (MIC-DKFZ/nnUNet
documentation/dataset_format.md; nnunetv2/experiment_planning/verify_dataset_integrity.py,
read at commit 017de4adbc55709423ac569c51191df8a6af7ee5):

* ``DatasetNNN_<name>/``: a three-digit id and a free name (dataset_format.md; the id is
  ``int(name[7:10])`` in nnunetv2/utilities/dataset_name_id_conversion.py, and nnU-Net
  refuses an id that two folders share). Custom ids start at 500 (dataset_conversion.md:
  "make your custom task ids start at 500 ... IDs cannot exceed 999").
* ``imagesTr/<case>_XXXX.nii.gz``: one file per input channel, ``XXXX`` its 4-digit
  index; ``labelsTr/<case>.nii.gz``: the segmentation on the same grid.
  ``imagesTs/``: images nnU-Net does not use ("a convenient location" for test cases).
* ``dataset.json``: ``channel_names`` (index -> name; the name picks nnU-Net's
  normalization: "CT" its CT scheme, anything else z-score,
  documentation/explanation_normalization.md), ``labels`` (name -> value, "background"
  0, values consecutive 0, 1, 2, ...), ``numTraining`` (files in imagesTr) and
  ``file_ending``.
* ``splits_final.json``: a list of folds, each ``{"train": [ids], "val": [ids]}``
  (documentation/manual_data_splits.md); nnU-Net reads it from
  ``nnUNet_preprocessed/DatasetNNN_<name>/``, where ``nnUNetv2_plan_and_preprocess``
  copies it from the raw dataset folder (ExperimentPlanner.__init__,
  ``_maybe_copy_splits_file``, in nnunetv2 2.8.1), so it is written beside dataset.json.

Here: cases of the store's train and val splits that have a mask are the training cases;
test-split cases, and cases without a mask, go to imagesTs (test cases with a mask also
get ``labelsTs/<case>.nii.gz``, a common convention nnU-Net ignores). Mask values are
renumbered 0, 1, 2, ... in the order of the store's classes, an "ignore" class last (as
nnU-Net wants it); ``dataset.json`` keeps the store's own values under ``medimg_build``.
A store built from region-based labels (``recipe/parsers/nnunet.py``) gets its regions
back, with ``regions_class_order`` (documentation/region_based_training.md). The folds are the store's patient-level
splits: five folds of its patients (each patient's cases in one fold), dealt in the
order of a seeded hash, fold 0 being the store's train against its val where it has one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..image import MedicalImage
from ..store.classification import segmentation_classes, vocabulary_entry
from ..store.reader import MedimgStore
from .case import ExportedCase
from .intensity import ExportError
from .nifti import SUFFIX, write_image

MIN_ID, MAX_ID, DEFAULT_ID = 1, 999, 500
# The folders nnU-Net finds datasets in (nnunetv2/paths.py).
NNUNET_ENVIRONMENT = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
# nnU-Net's preprocessed dataset keeps a case's segmentation in "<id>_seg.b2nd" beside
# its "<id>.b2nd", and nnUNetDatasetBlosc2.get_identifiers drops every "*_seg.b2nd"
# (nnunetv2/training/dataloading/nnunet_dataset.py): a training case "x_seg" would be
# lost, or overwritten by case "x"'s segmentation.
RESERVED_ENDING = "_seg"
FOLDS = 5  # nnU-Net's own number of folds (nnUNetTrainer.do_split: n_splits=5)
TEST_SPLIT = "test"
IGNORE = "ignore"  # nnU-Net's name for the label of unannotated voxels
VAL_SPLITS = ("val", "validation")


def dataset_folder(out: Path, dataset_id: int, name: str) -> Path:
    """``out/DatasetNNN_<name>``, refused when the id is outside 1..999 or another
    folder of ``out`` has it already."""
    if not MIN_ID <= dataset_id <= MAX_ID:
        raise ExportError(out, f"nnU-Net dataset id {dataset_id} is not a three-digit id "
                          f"{MIN_ID}..{MAX_ID}",
                          hint=f"give --dataset-id a number from {DEFAULT_ID} to {MAX_ID}")
    prefix = f"Dataset{dataset_id:03d}_"
    folder = out / f"{prefix}{dataset_name(name)}"
    for place in [out, *nnunet_folders()]:
        taken = sorted(p for p in place.glob(f"{prefix}*")
                       if p.is_dir() and p.name != folder.name) if place.is_dir() else []
        if taken:
            raise ExportError(out, f"nnU-Net dataset id {dataset_id} is taken by "
                              f"{taken[0].name} in {place} (nnU-Net refuses an id two "
                              "datasets share)",
                              hint="give another --dataset-id")
    return folder


def nnunet_folders() -> list[Path]:
    """The folders nnU-Net looks in for a dataset id, from its environment variables:
    ``find_candidate_datasets`` (nnunetv2/utilities/dataset_name_id_conversion.py)
    raises "More than one dataset name found" when they hold two names for one id."""
    return [Path(os.environ[name]) for name in NNUNET_ENVIRONMENT if os.environ.get(name)]


def dataset_name(name: str) -> str:
    """A dataset name for nnU-Net's folder: letters, digits and underscores."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    return cleaned or "medimg"


def label_numbers(store: MedimgStore) -> dict[int, int]:
    """Store mask value -> consecutive nnU-Net label (0 stays 0), for every class the
    store declares, the "ignore" class last (nnU-Net's LabelManager wants it the largest
    label); refused when it declares none (nnU-Net trains segmentation)."""
    classes = segmentation_classes(store.attrs.get("labels"))
    if not classes:
        raise ExportError(store.location, "the store has no segmentation classes, and an "
                          "nnU-Net dataset is a segmentation dataset",
                          hint="export it with --to nifti")
    values = sorted(set(classes) | {0}, key=lambda v: (classes.get(v) == IGNORE, v))
    return {value: number for number, value in enumerate(values)}


def dataset_labels(store: MedimgStore, numbers: dict[int, int]) -> dict[str, Any]:
    """nnU-Net's ``labels``: class name -> consecutive value, "background" for 0 and
    "ignore" for the store's ignore class; another name nnU-Net reserves ("background"
    elsewhere than 0) or one used twice gets its store value appended. A store built from
    region-based labels gives its regions back: name -> the values each one unites
    (``regions_class_order`` goes beside them, ``region_order``)."""
    classes = segmentation_classes(store.attrs.get("labels"))
    regions = store_regions(store)
    labels: dict[str, Any] = {"background": 0}
    if regions:
        for name, members in regions.items():
            numbered = [numbers[int(m)] for m in members]
            labels[name] = numbered if len(numbered) > 1 else numbered[0]
    for value, number in numbers.items():
        name = classes.get(value, str(value))
        if value == 0 or (regions and name != IGNORE):
            continue  # a region-based store's values are named by its regions
        if name in labels:
            name = f"{name} ({value})"
        labels[name] = number
    return labels


def store_regions(store: MedimgStore) -> dict[str, list[int]]:
    """The nnU-Net regions a store was built with (name -> member mask values), or {}."""
    regions = vocabulary_entry(store.attrs.get("labels"), "segmentation").get("regions")
    return dict(regions) if isinstance(regions, dict) else {}


def region_order(store: MedimgStore, numbers: dict[int, int]) -> dict[str, list[int]]:
    """``{"regions_class_order": [...]}`` in the exported numbers, for a region-based
    store: the value nnU-Net writes each region back as (region_based_training.md)."""
    segmentation = vocabulary_entry(store.attrs.get("labels"), "segmentation")
    order = segmentation.get("regions_class_order")
    if not isinstance(segmentation.get("regions"), dict) or not isinstance(order, list):
        return {}
    return {"regions_class_order": [numbers[int(v)] for v in order]}


def channel_names(store: MedimgStore, first: ExportedCase) -> dict[str, str]:
    """Index -> name of each channel: the names the store recorded when it stacked them
    (``stack_channels``), else "CT" for a CT (nnU-Net's CT normalization), else the
    modality, numbered when there are several channels."""
    n = first.image.n_channels
    stacked = next((s.params.get("names") for s in first.image.history
                    if s.name == "stack_channels"), None)
    if stacked and len(stacked) == n:
        return {str(c): str(name) for c, name in enumerate(stacked)}
    modality = str(first.record.get("modality") or "image")
    if n == 1:
        return {"0": "CT" if modality.upper() == "CT" else modality}
    return {str(c): f"{modality}_{c}" for c in range(n)}


def role(case: ExportedCase) -> str:
    """"train" (imagesTr + labelsTr) or "test" (imagesTs)."""
    if case.row.get("split") == TEST_SPLIT or case.mask is None:
        return "test"
    return "train"


def write_case(case: ExportedCase, folder: Path, numbers: dict[int, int]) -> str:
    """The case's channel files and label file; returns its role."""
    where = role(case)
    if where == "train" and case.case_id.endswith(RESERVED_ENDING):
        raise ExportError(case.record["store"], f"case {case.case_id!r} would be an nnU-Net "
                          f"training case whose id ends in {RESERVED_ENDING!r}, which nnU-Net "
                          f"takes for another case's segmentation (<id>{RESERVED_ENDING}.b2nd)",
                          hint="leave it out: list the other cases with --case")
    images = folder / ("imagesTr" if where == "train" else "imagesTs")
    images.mkdir(exist_ok=True)
    for c, channel in enumerate(channels(case.image)):
        record = case.record if c == 0 else None  # the history once per case is enough
        write_image(channel, images / f"{case.case_id}_{c:04d}{SUFFIX}", case.frame, record)
    if case.mask is not None:
        labels = folder / ("labelsTr" if where == "train" else "labelsTs")
        labels.mkdir(exist_ok=True)
        write_image(renumbered(case, numbers), labels / f"{case.case_id}{SUFFIX}", case.frame)
    return where


def channels(image: MedicalImage) -> list[MedicalImage]:
    if not image.has_channels:
        return [image]
    return [image.replace(array=image.array[..., c]) for c in range(image.n_channels)]


def renumbered(case: ExportedCase, numbers: dict[int, int]) -> MedicalImage:
    mask = case.mask
    values = np.unique(mask.array)
    unknown = [int(v) for v in values if int(v) not in numbers]
    if unknown:
        raise ExportError(case.record["store"], f"case {case.case_id!r}: mask values "
                          f"{unknown} are not among the store's segmentation classes "
                          f"{sorted(numbers)}", hint="the store is damaged; rebuild it")
    lookup = np.zeros(int(values.max()) + 1, dtype=np.uint8 if len(numbers) <= 256
                      else np.uint16)
    for value, number in numbers.items():
        if value < len(lookup):
            lookup[value] = number
    return mask.replace(array=lookup[mask.array])


def folds(train: dict[str, str], val: dict[str, str], seed: int) -> list[dict[str, list]]:
    """nnU-Net's splits from case id -> patient of the training cases in the store's
    train and val splits: five folds of patients, fold 0 being the store's own train/val
    where it has a val split. nnU-Net trains folds 0-4; for a fold missing from the file
    it draws a random 80:20 split of case ids (nnUNetTrainer.do_split), which can put one
    patient's cases on both sides: so every fold here is patient-level."""
    patient_folds = _patient_folds({**train, **val}, seed)
    if val:
        return [{"train": sorted(train), "val": sorted(val)}, *patient_folds[1:]]
    return patient_folds


def _patient_folds(patient_of: dict[str, str], seed: int) -> list[dict[str, list]]:
    """Up to five folds (fewer with fewer patients, none with one): each patient's cases
    in one fold's val, patients dealt in the order of a seeded hash."""
    patients = sorted(set(patient_of.values()), key=lambda p: _seeded(seed, p))
    if len(patients) < 2:
        return []
    k = min(FOLDS, len(patients))
    fold_of = {patient: i % k for i, patient in enumerate(patients)}
    return [{"train": sorted(c for c, p in patient_of.items() if fold_of[p] != fold),
             "val": sorted(c for c, p in patient_of.items() if fold_of[p] == fold)}
            for fold in range(k)]


def _seeded(seed: int, patient: str) -> str:
    return hashlib.sha256(f"{seed}:{patient}".encode()).hexdigest()


def dataset_json(store: MedimgStore, names: dict[str, str], labels: dict[str, Any],
                 numbers: dict[int, int], n_training: int, notes: dict[str, Any]
                 ) -> dict[str, Any]:
    classes = segmentation_classes(store.attrs.get("labels"))
    value_of = {number: value for value, number in numbers.items()}
    return {
        "channel_names": names,
        "labels": labels,
        **region_order(store, numbers),
        "numTraining": n_training,
        "file_ending": SUFFIX,
        "name": str(store.attrs.get("dataset") or ""),
        "description": str(store.attrs.get("title") or ""),
        "licence": str(store.attrs.get("license") or ""),
        "reference": str(store.attrs.get("citation") or ""),
        "medimg_build": {
            "store": store.location,
            "label_values": {name: [value_of[n] for n in number]
                             if isinstance(number, list) else value_of[number]
                             for name, number in labels.items()},
            "class_names": {str(v): classes.get(v, "background" if v == 0 else str(v))
                            for v in numbers},
            **notes,
        },
    }


def write_json(value: Any, path: Path) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
