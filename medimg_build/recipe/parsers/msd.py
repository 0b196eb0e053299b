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
skipped unless ``options.include_test`` is true.

Options: ``include_test`` (bool, default false); ``modality`` ("CT" or "MR"): the
recipe's modality, checked against dataset.json so that an MR task is not normalized
as CT by mistake (recipes ``msd`` for the CT tasks, ``msd-mr`` for the MR ones)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import RecipeError
from ..paths import outside_problem
from ..sources import CaseSource, case_id_from_name, safe_id
from . import ParsedListing, parser

_REQUIRED = ("name", "modality", "labels", "training")


@parser("msd")
def msd(options: dict[str, Any], root: Path, key: bytes) -> ParsedListing:
    unknown = set(options) - {"include_test", "modality"}
    if unknown:
        raise RecipeError(None, f"msd parser: unknown option(s) {sorted(unknown)}",
                          hint="options are include_test and modality")
    path = _dataset_json(root)
    task = path.parent
    try:
        dataset = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RecipeError(path, f"is not valid JSON ({error})",
                          hint="the Decathlon's dataset.json is damaged") from error
    except RecursionError:  # [[[[...]]]] nested deeper than Python's stack
        raise RecipeError(path, "nests its JSON deeper than Python can parse",
                          hint="the Decathlon's dataset.json is damaged or forged") from None
    if not isinstance(dataset, dict):
        raise RecipeError(path, f"holds a JSON {type(dataset).__name__}, not an object",
                          hint="the Decathlon's dataset.json is damaged")
    missing = [k for k in _REQUIRED if k not in dataset]
    if missing:
        raise RecipeError(path, f"missing key(s) {missing}; it has {sorted(dataset)}",
                          hint="a Decathlon dataset.json has name, modality, labels, training")
    modality, labels = (_numbered(path, dataset[k], k) for k in ("modality", "labels"))
    channels = [str(modality[k]) for k in sorted(modality)]
    _check_modality(options.get("modality"), channels, path)
    classes = {str(k): str(v) for k, v in labels.items()}

    fields = {"task": task.name, "task_name": str(dataset["name"]),
              "channels": ",".join(channels)}
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
            cases.append(CaseSource(case_id, image, None, case_id, dict(fields)))
        else:
            skipped[where] = "test image without labels (options.include_test is false)"
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        for file in sorted((task / folder).glob("*")):
            where = file.relative_to(root).as_posix()
            if file.name.startswith("._"):
                skipped[where] = "macOS resource fork (._*), not an image"
            elif file.resolve() not in listed:
                skipped[where] = "file not listed in dataset.json"
    return ParsedListing(cases, skipped, labels={"segmentation": {"classes": classes}})


def _numbered(path: Path, mapping: Any, name: str) -> dict[int, Any]:
    """``mapping`` ({"0": ..., "1": ...}) keyed by its keys as numbers, or a RecipeError
    naming the key: a key that is no number, or a number of thousands of digits (Python
    refuses to convert those), is a damaged file."""
    if not isinstance(mapping, dict):
        raise RecipeError(path, f"{name} is {type(mapping).__name__}, not an object",
                          hint="the Decathlon's dataset.json is damaged")
    numbered = {}
    for key, value in mapping.items():
        if not (isinstance(key, str) and key.strip().isdigit() and len(key) <= 9):
            raise RecipeError(path, f"{name} key {key[:40]!r} is not a small whole number",
                              hint="the Decathlon's dataset.json is damaged")
        numbered[int(key)] = value
    return numbered


def _dataset_json(root: Path) -> Path:
    """``root/dataset.json``, or the one of a single ``Task*`` folder under ``root``."""
    if (root / "dataset.json").is_file():
        return root / "dataset.json"
    found = sorted(root.glob("*/dataset.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise RecipeError(root, "no dataset.json here or in a folder below",
                          hint="pass the Decathlon task folder (e.g. Task03_Liver) to --source")
    names = ", ".join(p.parent.name for p in found)
    raise RecipeError(root, f"{len(found)} Decathlon tasks found ({names})",
                      hint="pass one task folder to --source: a store holds one task")


def _check_modality(expected: str | None, channels: list[str], path: Path) -> None:
    if expected is None:
        return
    actual = "CT" if channels == ["CT"] else "MR"
    if actual != expected:
        raise RecipeError(path, f"the task's modality is {channels} ({actual}), the recipe "
                          f"says {expected}",
                          hint="use the msd recipe for CT tasks, msd-mr for MR tasks")
