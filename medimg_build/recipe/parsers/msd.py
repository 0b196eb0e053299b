"""The Medical Segmentation Decathlon (Simpson et al. 2019; http://medicaldecathlon.com),
any of its ten tasks, read through the task's own ``dataset.json``:

    Task03_Liver/
      dataset.json    {"name", "description", "tensorImageSize", "modality": {"0": "CT"},
                       "labels": {"0": "background", "1": "liver", "2": "cancer"},
                       "numTraining", "numTest",
                       "training": [{"image": "./imagesTr/liver_0.nii.gz",
                                     "label": "./labelsTr/liver_0.nii.gz"}, ...],
                       "test": ["./imagesTs/liver_132.nii.gz", ...]}
      imagesTr/  labelsTr/  imagesTs/      (plus macOS "._*" resource forks in the tarballs)

Cases are the "training" entries, each with its mask; the label names come from
"labels" and become the store's segmentation vocabulary (``ParsedListing.labels``).
Multi-modal tasks (BrainTumour, Prostate) keep their 4D images: the fourth axis is the
channel axis, named by "modality". Test images have no labels: they are reported as
skipped unless ``options.include_test`` is true; then they are built without masks
with ``official_split`` "test" (the recipes' split column).

A task folder WITHOUT dataset.json (imagesTr/, labelsTr/, imagesTs/ only) is read by
its file names: ``imagesTr/<case>.nii.gz`` with ``labelsTr/<case>.nii.gz``. Nothing then
names the channels (a 4D image keeps its fourth axis as unnamed channels) or the classes:
every value the masks hold becomes a class (``classes: from_data``: 0 "background",
others "label_<value>"), found while the cases are built and recorded in the store.
The recipe's modality cannot be checked then. An image without its label and a label
without its image are reported.

Options: ``include_test`` (bool, default false); ``modality`` ("CT" or "MR"): the
recipe's modality, checked against dataset.json so that an MR task is not normalized
as CT by mistake (recipes ``msd`` for the CT tasks, ``msd-mr`` for the MR ones)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


from ...errors import RecipeError
from ...labels.segmentation import FROM_DATA
from ..paths import outside_problem
from ..source_report import UNPAIRED_MASK, system_file
from ..sources import CaseSource, case_id_from_name, case_id_problem, safe_id
from . import ParsedListing, parser

_REQUIRED = ("name", "modality", "labels", "training")


@parser("msd", options={"include_test", "modality"})
def msd(options: dict[str, Any], root: Path, key: bytes) -> ParsedListing:
    found = _dataset_jsons(root)
    if not found and (task := _task_without_json(root)) is not None:
        return _from_folders(task, root, options)
    path = find_dataset_json(root, "Decathlon tasks", found)
    task = path.parent
    dataset = read_json(path)
    missing = [k for k in _REQUIRED if k not in dataset]
    if missing:
        raise RecipeError(path, f"missing key(s) {missing}; it has {sorted(dataset)}",
                          hint="an nnU-Net dataset (file_ending, <case>_0000 files) is read "
                          "by the nnunet recipe" if "file_ending" in dataset else
                          "a Decathlon dataset.json has name, modality, labels, training")
    modality, labels = (numbered(path, dataset[k], k) for k in ("modality", "labels"))
    channels = [str(modality[k]) for k in sorted(modality)]
    _check_modality(options.get("modality"), channels, path)
    classes = {str(k): str(v) for k, v in labels.items()}

    # official_split: "test" for the "test" images (include_test), "" (dealt by hash)
    # for the training cases, as the nnunet recipe has it.
    fields = {"task": task.name, "task_name": str(dataset["name"]),
              "channels": ",".join(channels), "official_split": ""}
    cases: list[CaseSource] = []
    skipped: dict[str, str] = {}
    listed: set[Path] = set()
    for number, entry in enumerate(dataset["training"]):
        if not isinstance(entry, dict) or not {"image", "label"} <= set(entry):
            raise RecipeError(path, f"training entry {number} is {entry!r}, not "
                              "{\"image\": ..., \"label\": ...}",
                              hint="the Decathlon's dataset.json is damaged")
        # dataset.json comes with the download: its paths are data, checked as a table's.
        named = {"image": str(entry["image"]), "label": str(entry["label"])}
        if (outside := next((p for p in named.values() if outside_problem(p)), None)):
            skipped[f"dataset.json training: {outside}"] = \
                f"training entry {outside!r} {outside_problem(outside)}, not read"
            continue
        image, label = task / named["image"], task / named["label"]
        listed.update({image.resolve(), label.resolve()})
        if not image.is_file():
            skipped[f"dataset.json training: {entry['image']}"] = \
                "training entry without its image file"
        elif not label.is_file():
            skipped[f"dataset.json training: {entry['label']}"] = \
                "training entry without its label file"
        else:
            case_id = safe_id(case_id_from_name(image), path)
            cases.append(CaseSource(case_id, image, label, case_id, dict(fields)))
    if not cases and any((task / "imagesTr").glob("*_0000.nii*")):
        raise RecipeError(path, "no training entry's image exists, but imagesTr holds "
                          "<case>_0000 channel files, as nnU-Net writes them",
                          hint="an nnU-Net task folder (v1 Task or v2 Dataset): use the "
                          "nnunet recipe")
    for entry in dataset.get("test", []):
        named = str(entry.get("image", "") if isinstance(entry, dict) else entry)
        if (problem := outside_problem(named)) is not None:
            skipped[f"dataset.json test: {named}"] = f"test entry {problem}, not read"
            continue
        image = task / named
        listed.add(image.resolve())
        where = f"dataset.json test: {image.relative_to(task).as_posix()}"
        if not image.is_file():
            skipped[where] = "test entry without its image file"
        elif options.get("include_test"):
            case_id = safe_id(case_id_from_name(image), path)
            cases.append(CaseSource(case_id, image, None, case_id,
                                    {**fields, "official_split": "test"}))
        else:
            skipped[where] = "test image without labels (options.include_test is false)"
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        for file in sorted((task / folder).glob("*")):
            where = file.relative_to(root).as_posix()
            if (problem := system_file(file)) is not None:
                skipped[where] = problem
            elif file.resolve() not in listed:
                skipped[where] = UNPAIRED_MASK if folder == "labelsTr" else \
                    "file not listed in dataset.json"
    if dataset.get("numTraining", len(dataset["training"])) != len(dataset["training"]):
        skipped["dataset.json numTraining"] = (
            f"numTraining is {dataset['numTraining']!r} but \"training\" lists "
            f"{len(dataset['training'])} cases")
    return ParsedListing(cases, skipped, labels={"segmentation": {"classes": classes}})


def numbered(path: Path, mapping: Any, name: str) -> dict[int, Any]:
    """``mapping`` ({"0": ..., "1": ...}) keyed by its keys as numbers, or a RecipeError
    naming the key: a key that is no number, or a number of thousands of digits (Python
    refuses to convert those), is a damaged file."""
    if not isinstance(mapping, dict):
        raise RecipeError(path, f"{name} is {type(mapping).__name__}, not an object",
                          hint="the dataset.json is damaged")
    numbered = {}
    for key, value in mapping.items():
        if not (isinstance(key, str) and key.strip().isdigit() and len(key) <= 9):
            raise RecipeError(path, f"{name} key {key[:40]!r} is not a small whole number",
                              hint="the dataset.json is damaged")
        numbered[int(key)] = value
    return numbered


def read_json(path: Path) -> dict[str, Any]:
    """A dataset.json's object, or a RecipeError naming the file."""
    try:
        dataset = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RecipeError(path, f"is not valid JSON ({error})",
                          hint="the dataset.json is damaged") from error
    except RecursionError:  # [[[[...]]]] nested deeper than Python's stack
        raise RecipeError(path, "nests its JSON deeper than Python can parse",
                          hint="the dataset.json is damaged or forged") from None
    if not isinstance(dataset, dict):
        raise RecipeError(path, f"holds a JSON {type(dataset).__name__}, not an object",
                          hint="the dataset.json is damaged")
    return dataset


def _dataset_jsons(root: Path) -> list[Path]:
    if (root / "dataset.json").is_file():
        return [root / "dataset.json"]
    return sorted(root.glob("*/dataset.json"))


def find_dataset_json(root: Path, what: str, found: list[Path] | None = None) -> Path:
    """``root/dataset.json``, or the one of a single dataset folder under ``root``
    (``what`` names such folders in the errors)."""
    found = _dataset_jsons(root) if found is None else found
    if len(found) == 1:
        return found[0]
    if not found:
        raise RecipeError(root, "no dataset.json here or in a folder below",
                          hint="pass the dataset folder (e.g. Task03_Liver, "
                          "Dataset005_Prostate) to --source")
    names = ", ".join(p.parent.name for p in found)
    raise RecipeError(root, f"{len(found)} {what} found ({names})",
                      hint="pass one of these folders to --source: a store holds one")


def _task_without_json(root: Path) -> Path | None:
    """``root``, or its single subfolder, when it holds imagesTr/ (a task folder whose
    dataset.json is missing)."""
    candidates = [root] if (root / "imagesTr").is_dir() else \
        [p.parent for p in root.glob("*/imagesTr") if p.is_dir()]
    if len(candidates) > 1:
        raise RecipeError(root, f"{len(candidates)} task folders without dataset.json "
                          f"found ({', '.join(sorted(c.name for c in candidates))})",
                          hint="pass one task folder to --source: a store holds one task")
    return candidates[0] if candidates else None


def _nifti_files(folder: Path, root: Path, skipped: dict[str, str]) -> dict[str, Path]:
    """case id -> NIfTI file of ``folder``; anything else in it is reported."""
    found = {}
    for file in sorted(folder.glob("*")) if folder.is_dir() else []:
        where = file.relative_to(root).as_posix()
        if (problem := system_file(file)) is not None:
            skipped[where] = problem
        elif not file.name.endswith((".nii.gz", ".nii")):
            skipped[where] = "not a NIfTI file (.nii.gz, .nii)"
        elif (problem := case_id_problem(case_id_from_name(file))) is not None:
            skipped[where] = problem
        else:
            found[case_id_from_name(file)] = file
    return found


def _from_folders(task: Path, root: Path, options: dict[str, Any]) -> ParsedListing:
    """The cases of a task folder without dataset.json, paired by file name."""
    skipped: dict[str, str] = {}
    images, labels = (_nifti_files(task / f, root, skipped) for f in ("imagesTr", "labelsTr"))
    for case in sorted(set(labels) - set(images)):
        skipped[labels[case].relative_to(root).as_posix()] = \
            f"label file without its image imagesTr/{labels[case].name}"
    fields = {"task": task.name, "task_name": "", "channels": "", "official_split": ""}
    cases = []
    for case, image in sorted(images.items()):
        if case not in labels:
            skipped[image.relative_to(root).as_posix()] = \
                f"image without its label file labelsTr/{image.name}"
            continue
        cases.append(CaseSource(case, image, labels[case], case, dict(fields)))
    for case, image in sorted(_nifti_files(task / "imagesTs", root, skipped).items()):
        if options.get("include_test"):
            cases.append(CaseSource(case, image, None, case,
                                    {**fields, "official_split": "test"}))
        else:
            skipped[image.relative_to(root).as_posix()] = \
                "test image without labels (options.include_test is false)"
    # Nothing names the values: the store's classes are those the masks hold, found
    # while the cases are built (labels/segmentation.py), not by reading every mask here.
    return ParsedListing(cases, skipped, labels={"segmentation": {"classes": FROM_DATA}})


def _check_modality(expected: str | None, channels: list[str], path: Path) -> None:
    if expected is None:
        return
    actual = "CT" if channels == ["CT"] else "MR"
    if actual != expected:
        raise RecipeError(path, f"the task's modality is {channels} ({actual}), the recipe "
                          f"says {expected}",
                          hint="use the msd recipe for CT tasks, msd-mr for MR tasks")
