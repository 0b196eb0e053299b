"""An nnU-Net v2 raw dataset (Isensee et al. 2021; the rules are those of
MIC-DKFZ/nnUNet documentation/dataset_format.md, commit 0c4ce5b7, and of nnunetv2 2.8.1's
``verify_dataset_integrity`` and ``LabelManager``):

    Dataset005_Prostate/
      dataset.json   {"channel_names": {"0": "T2", "1": "ADC"},
                      "labels": {"background": 0, "PZ": 1, "TZ": 2},
                      "numTraining": 32, "file_ending": ".nii.gz"}
      imagesTr/prostate_00_0000.nii.gz  prostate_00_0001.nii.gz   (one file per channel)
      labelsTr/prostate_00.nii.gz
      imagesTs/prostate_08_0000.nii.gz ...                        (optional, no labels)
      labelsTs/prostate_08.nii.gz ...        (not documented; many converters write it)

A case is ``<case>_<XXXX><file_ending>`` split at its LAST ``_XXXX`` (four digits), so
``BRATS_001_0000`` is channel 0 of case ``BRATS_001``. Its channels are stacked in the
order of their numbers and named by ``channel_names``; its mask is
``labelsTr/<case><file_ending>``. What nnU-Net would refuse is refused here (a dataset.json
without a required key, labels without background 0 or not consecutive, numTraining not
the number of cases in imagesTr); what it lets pass in silence is reported: a label file
without images, a case lacking a channel or its label, a file that is no case.

Region-based labels (``"whole tumor": [1, 2, 3]`` with ``regions_class_order``) are kept
as declared: the store records ``regions`` (name -> member values) and
``regions_class_order``; mask value ``regions_class_order[i]`` is named after region ``i``
(nnU-Net writes region ``i`` back as that value: documentation/region_based_training.md).

nnU-Net v1 Task folders (``Task005_Prostate/`` with the same ``_XXXX`` files and a
Decathlon-style dataset.json: "modality", labels value -> name) are read alike; a
Decathlon task itself (4D ``<case>.nii.gz``) is the msd recipe's.

Read: NIfTI (.nii.gz, .nii), .nrrd and .mha volumes. Refused: 2D pictures (.png, .bmp),
TIFF (nnU-Net reads .tif as 2D or as 3D with a spacing sidecar json, which the file does
not say) and any other ending.

Patients: nnU-Net's own default split deals cases, not patients (nnunetv2's
nnUNetTrainer.do_split: KFold over case identifiers), and so does this parser unless told:
each case is its own patient. A dataset whose cases are one patient's time points or
frames (Dataset027_ACDC's ``patient001_frame01`` and ``patient001_frame12``, from
nnunetv2/dataset_conversion/Dataset027_ACDC.py, which splits by ``patient000`` itself;
BraTS 2023's ``BraTS-GLI-00005-100``, ``-101``) needs option ``patient_pattern``, as in
volume_folder: a regular expression on the case id whose group ``patient`` is the patient
(``--set source.options.patient_pattern='^(?P<patient>patient\\d{3})_frame\\d+$'``). No
naming convention is guessed: a case id the pattern does not match is an error.

Options: ``include_test`` (bool, default true): imagesTs cases are built with
``official_split`` "test", without masks unless a labelsTs/ folder holds them (then each
must have its label, as in imagesTr); ``modality`` ("CT" or "MR"): the recipe's, checked
against channel_names (nnU-Net itself normalizes a channel named "CT" as CT): recipes
``nnunet`` (MR) and ``nnunet-ct``."""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from ...errors import RecipeError
from ..paths import outside_problem
from ..source_report import system_file
from ..sources import CaseSource, case_id_problem, patient_from_name
from . import ParsedListing, parser
from .msd import find_dataset_json, read_json
from .msd import numbered as numbered_keys

_REQUIRED = ("labels", "channel_names", "numTraining", "file_ending")
_READ_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha")
_HINT = "see MIC-DKFZ/nnUNet documentation/dataset_format.md"


@parser("nnunet", options={"include_test", "modality", "patient_pattern"})
def nnunet(options: dict[str, Any], root: Path, key: bytes) -> ParsedListing:
    path = find_dataset_json(root, "nnU-Net datasets (DatasetNNN_Name)")
    folder = path.parent
    dataset = read_json(path)
    dataset = _as_v2(path, dataset)
    _check_keys(path, dataset)
    ending = _file_ending(path, dataset["file_ending"])
    channels = _channel_names(path, dataset["channel_names"])
    _check_modality(options.get("modality"), channels, path)
    segmentation = label_vocabulary(path, dataset["labels"], dataset.get("regions_class_order"))
    skipped: dict[str, str] = {}
    if "dataset" in dataset:
        training, labels = _listed(path, dataset["dataset"], folder, skipped)
        _check_count(path, dataset["numTraining"], len(dataset["dataset"]),
                     "its \"dataset\" lists", skipped)
    else:
        training, labels = _in_folders(path, folder, ending, root, skipped)
        _check_count(path, dataset["numTraining"], len(training), "imagesTr holds", skipped)
    fields = {"dataset": folder.name, "channels": ",".join(channels)}
    cases = []
    for case, files in sorted(training.items()):
        if not _complete(case, files, channels, root, skipped):
            continue
        if case not in labels:
            skipped[files[0].relative_to(root).as_posix()] = \
                f"case {case} has no label file labelsTr/{case}{ending}"
            continue
        cases.append(_case(case, files, labels[case], channels,
                           {**fields, "official_split": ""}))
    if options.get("include_test", True):
        cases += _test_cases(folder, ending, channels, root, skipped,
                             {**fields, "official_split": "test"})
    elif (folder / "imagesTs").is_dir():
        skipped["imagesTs"] = "test cases not built (options.include_test is false)"
    cases = _with_patients(cases, options.get("patient_pattern"), path)
    return ParsedListing(cases, skipped, labels={"segmentation": segmentation})


def _with_patients(cases: list[CaseSource], pattern: str | None, path: Path
                   ) -> list[CaseSource]:
    """``cases`` with the patient ``pattern`` takes from each case id (each case its own
    patient without one: nnU-Net's own default)."""
    if not pattern:
        return cases
    return [dataclasses.replace(case, patient_id=patient_from_name(
        pattern, case.case_id, path, "source.options.patient_pattern")) for case in cases]


def _test_cases(folder: Path, ending: str, channels: list[str], root: Path,
                skipped: dict[str, str], fields: dict[str, str]) -> list[CaseSource]:
    """The imagesTs cases, without masks; with their masks when a labelsTs/ folder is
    there (not in nnU-Net's documentation, but many converters write one)."""
    if not (folder / "imagesTs").is_dir():
        return []
    test = _channel_files(folder / "imagesTs", ending, root, skipped)
    labels = _label_files(folder / "labelsTs", ending, root, skipped) \
        if (folder / "labelsTs").is_dir() else None
    for case in sorted(set(labels or {}) - set(test)):
        skipped[labels[case].relative_to(root).as_posix()] = \
            f"label file without images (no imagesTs/{case}_0000{ending})"
    cases = []
    for case, files in sorted(test.items()):
        if not _complete(case, files, channels, root, skipped):
            continue
        if labels is not None and case not in labels:
            skipped[files[0].relative_to(root).as_posix()] = \
                f"case {case} has no label file labelsTs/{case}{ending}"
            continue
        cases.append(_case(case, files, None if labels is None else labels[case],
                           channels, dict(fields)))
    return cases


def _check_count(path: Path, expected: int, found: int, where: str,
                 skipped: dict[str, str]) -> None:
    """numTraining must be the number of cases, as nnU-Net asserts; with no case found
    but names without _XXXX, the folder is a Decathlon task."""
    if expected == found:
        return
    decathlon = not found and any(r.startswith("no _XXXX") for r in skipped.values())
    raise RecipeError(path, f"numTraining is {expected!r} but {where} {found} cases",
                      hint="a Decathlon task (<case>.nii.gz, 4D) is read by the msd or "
                      "msd-mr recipe" if decathlon else "nnU-Net refuses this too: fix "
                      "numTraining or restore the cases")


def _in_folders(path: Path, folder: Path, ending: str, root: Path, skipped: dict[str, str]
                ) -> tuple[dict[str, dict[int, Path]], dict[str, Path]]:
    """The channel files and label file of each case in imagesTr/ and labelsTr/; label
    files without images are reported (nnU-Net itself lets them pass)."""
    if not (folder / "imagesTr").is_dir() or not (folder / "labelsTr").is_dir():
        raise RecipeError(folder, "has no imagesTr/ and labelsTr/ folders",
                          hint=f"nnU-Net reads imagesTr/<case>_0000{ending} and "
                          f"labelsTr/<case>{ending}; {_HINT}")
    training = _channel_files(folder / "imagesTr", ending, root, skipped)
    labels = _label_files(folder / "labelsTr", ending, root, skipped)
    for case in sorted(set(labels) - set(training)):
        skipped[labels[case].relative_to(root).as_posix()] = \
            f"label file without images (no imagesTr/{case}_0000{ending})"
    return training, labels


def _listed(path: Path, entries: Any, folder: Path, skipped: dict[str, str]
            ) -> tuple[dict[str, dict[int, Path]], dict[str, Path]]:
    """nnU-Net's explicit file list, ``"dataset": {case: {"images": [channel files in
    order], "label": file}}`` with paths relative to the dataset folder (nnunetv2
    utilities/utils.py get_filenames_of_train_images_and_targets). Paths leading out of
    the source folder or naming environment variables are reported, not read."""
    if not isinstance(entries, dict):
        raise RecipeError(path, f"\"dataset\" is {type(entries).__name__}, not an object "
                          "{case: {\"images\": [...], \"label\": ...}}", hint=_HINT)
    training: dict[str, dict[int, Path]] = {}
    labels: dict[str, Path] = {}
    for case, entry in entries.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("images"), list)
                and entry["images"] and isinstance(entry.get("label"), str)):
            raise RecipeError(path, f"\"dataset\" entry {case[:40]!r} is not "
                              "{\"images\": [...], \"label\": ...}", hint=_HINT)
        named = [*(str(p) for p in entry["images"]), entry["label"]]
        where = f"dataset.json dataset: {case}"
        # Paths themselves stay out of the reason: the report is no place for /etc/...
        outside = [f"a listed path {outside_problem(p)}" for p in named if outside_problem(p)]
        if outside or any("$" in p for p in named):
            skipped[where] = f"{(outside or ['a path with $VARIABLES'])[0]}, not read"
        elif missing := [p for p in named if not (folder / p).is_file()]:
            skipped[where] = f"listed file(s) {', '.join(missing)} not found"
        else:
            training[case] = {n: folder / p for n, p in enumerate(entry["images"])}
            labels[case] = folder / entry["label"]
    return training, labels


def _case(case: str, files: dict[int, Path], label: Path | None, channels: list[str],
          fields: dict[str, str]) -> CaseSource:
    ordered = tuple(files[number] for number in sorted(files))
    return CaseSource(case, ordered[0], label, case, fields,
                      channels=ordered if len(ordered) > 1 else (),
                      channel_names=tuple(channels))


def _as_v2(path: Path, dataset: dict[str, Any]) -> dict[str, Any]:
    """``dataset`` with v2 keys. Early nnU-Net v2 wrote the channel names as "modality"
    (generate_dataset_json.py at MIC-DKFZ/nnUNet@0a442b77); nnU-Net v1 Task folders
    (same _XXXX files) have "modality", labels value -> name and NIfTI only, as
    nnUNetv2_convert_old_nnUNet_dataset reads them."""
    if "channel_names" in dataset or "modality" not in dataset:
        return dataset
    converted = {**dataset, "channel_names": dataset["modality"]}
    if "file_ending" not in dataset:  # v1
        labels = numbered_keys(path, dataset.get("labels", {}), "labels")
        converted.update(file_ending=".nii.gz",
                         labels={str(name): value for value, name in labels.items()})
    return converted


def _check_keys(path: Path, dataset: dict[str, Any]) -> None:
    missing = [k for k in _REQUIRED if k not in dataset]
    if missing:
        raise RecipeError(path, f"missing key(s) {missing}; it has {sorted(dataset)}",
                          hint=f"an nnU-Net v2 dataset.json has {', '.join(_REQUIRED)}")
    number = dataset["numTraining"]
    if not isinstance(number, int) or isinstance(number, bool):
        raise RecipeError(path, f"numTraining is {number!r}, not a whole number",
                          hint=_HINT)


def _file_ending(path: Path, ending: Any) -> str:
    if ending not in _READ_ENDINGS:
        raise RecipeError(path, f"file_ending {ending!r} is not read by the nnunet recipe",
                          hint=f"it reads {', '.join(_READ_ENDINGS)} volumes; 2D pictures "
                          "(.png, .bmp) and TIFF (2D, or 3D with a spacing json) are not read")
    return ending


def _channel_names(path: Path, mapping: Any) -> list[str]:
    """The channel names in the order of their numbers, which must be 0, 1, ... n-1."""
    numbered = numbered_keys(path, mapping, "channel_names")
    if sorted(numbered) != list(range(len(numbered))) or not numbered:
        raise RecipeError(path, f"channel_names keys {sorted(numbered)} are not 0, 1, ...",
                          hint=_HINT)
    return [str(numbered[n]) for n in sorted(numbered)]


def label_vocabulary(path: Path, labels: Any, order: Any) -> dict[str, Any]:
    """The store's segmentation vocabulary from nnU-Net v2 ``labels`` (name -> value or
    list of values) checked as nnU-Net's LabelManager checks it: "background" is 0, the
    values are consecutive from 0, an "ignore" value is the largest plus one, and
    region-based labels come with one ``regions_class_order`` entry per region."""
    if not isinstance(labels, dict):
        raise RecipeError(path, f"labels is {type(labels).__name__}, not an object",
                          hint=_HINT)
    if labels and all(k.strip().isdigit() and isinstance(v, str) for k, v in labels.items()):
        raise RecipeError(path, "labels map values to names ({\"0\": \"background\", ...}), "
                          "as nnU-Net v1 did", hint="nnU-Net v2 maps names to values: "
                          "{\"background\": 0, ...} (nnU-Net refuses this file too)")
    values = {name: _label_values(path, name, value) for name, value in labels.items()}
    if values.get("background") != [0] or isinstance(labels.get("background"), list):
        raise RecipeError(path, "labels has no \"background\": 0", hint=_HINT)
    ignore = values.pop("ignore", None)
    used = sorted({v for members in values.values() for v in members})
    if used != list(range(len(used))):
        raise RecipeError(path, f"label values {used} are not consecutive from 0",
                          hint=f"nnU-Net requires 0, 1, 2, ...; {_HINT}")
    # nnU-Net's rule: region-based when a label lists more than one value ([3] is 3).
    if any(len(members) > 1 for members in values.values()):
        spec = _regions(path, values, order)
    else:
        spec = {"classes": {str(members[0]): name for name, members in values.items()}}
        if len(spec["classes"]) < len(values):
            raise RecipeError(path, "two labels share one value", hint=_HINT)
    if ignore is not None:
        if isinstance(labels["ignore"], list) or ignore != [len(used)]:
            raise RecipeError(path, f"ignore label {labels['ignore']!r} is not the largest "
                              f"label value plus one ({len(used)})", hint=_HINT)
        spec["classes"][str(len(used))] = "ignore"
    return spec


def _regions(path: Path, values: dict[str, list[int]], order: Any) -> dict[str, Any]:
    """Region-based labels: every region (background excluded) with its member values,
    and each mask value named after the region nnU-Net writes as that value."""
    regions = {n: m for n, m in values.items() if m != [0]}
    if not (isinstance(order, list) and len(order) == len(regions)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in order)):
        raise RecipeError(path, f"region-based labels need regions_class_order with one "
                          f"value per region ({len(regions)}), it is {order!r}",
                          hint="see MIC-DKFZ/nnUNet documentation/region_based_training.md")
    names: dict[int, list[str]] = defaultdict(list)
    for name, value in zip(regions, order):
        names[value].append(name)
    used = sorted({v for members in values.values() for v in members})
    classes = {"0": "background"} | {
        str(v): " | ".join(names[v]) if v in names else f"label_{v}" for v in used if v}
    return {"classes": classes, "regions": {n: list(m) for n, m in regions.items()},
            "regions_class_order": list(order)}


def _label_values(path: Path, name: str, value: Any) -> list[int]:
    """The values of one label, read as nnU-Net reads them (``int(v)``: "2" and 2.0 are
    2; hand-written files have both)."""
    members = [_whole(v) for v in (value if isinstance(value, list) else [value])]
    if not members or not all(v is not None and 0 <= v < 2**16 for v in members):
        raise RecipeError(path, f"label {name!r} is {value!r}, not a value or a list of values",
                          hint=_HINT)
    return sorted(set(members))


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value) < 6:
        return int(value)
    return None


def _channel_files(folder: Path, ending: str, root: Path,
                   skipped: dict[str, str]) -> dict[str, dict[int, Path]]:
    """case -> {channel number: file} of an images folder; other files are reported."""
    pattern = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})" + re.escape(ending) + "$")
    found: dict[str, dict[int, Path]] = defaultdict(dict)
    for file in sorted(folder.iterdir()):
        where = file.relative_to(root).as_posix()
        match = pattern.match(file.name)
        if (problem := system_file(file)) is not None:
            skipped[where] = problem
        elif not file.name.endswith(ending):
            skipped[where] = f"not a {ending} file (dataset.json file_ending)"
        elif match is None:
            skipped[where] = f"no _XXXX channel number before {ending}: not an nnU-Net image"
        else:
            found[match["case"]][int(match["channel"])] = file
    return dict(found)


def _label_files(folder: Path, ending: str, root: Path,
                 skipped: dict[str, str]) -> dict[str, Path]:
    found = {}
    for file in sorted(folder.iterdir()):
        if (problem := system_file(file)) is not None:
            skipped[file.relative_to(root).as_posix()] = problem
        elif file.name.endswith(ending):
            found[file.name[: -len(ending)]] = file
        else:
            skipped[file.relative_to(root).as_posix()] = \
                f"not a {ending} file (dataset.json file_ending)"
    return found


def _complete(case: str, files: dict[int, Path], channels: list[str], root: Path,
              skipped: dict[str, str]) -> bool:
    """True when ``case`` can name a case and has exactly the channel files
    channel_names declares; else its first file is reported with why not."""
    first = files[min(files)].relative_to(root).as_posix()
    if (problem := case_id_problem(case)) is not None:
        skipped[first] = problem
        return False
    missing = [f"{n:04d} ({channels[n]})" for n in range(len(channels)) if n not in files]
    extra = sorted(f"{n:04d}" for n in files if n >= len(channels))
    if not missing and not extra:
        return True
    problem = f"lacks channel file(s) {', '.join(missing)}" if missing else \
        f"has channel file(s) {', '.join(extra)} beyond channel_names"
    skipped[first] = f"case {case} {problem}: not built"
    return False


def _check_modality(expected: str | None, channels: list[str], path: Path) -> None:
    if expected is None:
        return
    actual = "CT" if all(c.upper() == "CT" for c in channels) else "MR"
    if actual != expected:
        raise RecipeError(path, f"channel_names are {channels} ({actual}), the recipe "
                          f"says {expected}", hint="use the nnunet recipe for MR datasets, "
                          "nnunet-ct for CT ones (every channel named CT)")
