"""``medimg-build export``: a store's cases as NIfTI files or as an nnU-Net v2 raw dataset.

``export_store(store, "nifti" | "nnunet", out, cases=..., ...)`` reads each case through
``open_store`` (either layout, Zarr or HDF5), undoes its recorded normalization unless
``keep_normalization`` (``intensity.py`` says when that cannot be exact, and refuses),
optionally puts it back on its source grid (``grid.py``), and writes it (``nifti.py``,
``nnunet.py``). Everything is written into a new folder beside ``out`` that becomes
``out`` (or ``out/DatasetNNN_<name>``) only once every case is written.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MedimgWarning
from ..store.opening import open_store
from . import nnunet
from .case import ExportOptions, prepare_case, selected_cases, table_rows
from .intensity import ExportError
from .nifti import MASK_SUFFIX, SUFFIX, write_image, write_sidecar
from .output import check_free, filled_then_moved

FORMATS = ("nifti", "nnunet")

__all__ = ["FORMATS", "ExportError", "ExportOptions", "ExportResult", "export_store"]


@dataclass
class ExportResult:
    folder: Path  # what was written: --out, or the nnU-Net dataset folder in it
    cases: list[str]
    counts: dict[str, int] = field(default_factory=dict)  # e.g. imagesTr/imagesTs

    def summary(self, store: str, to: str) -> str:
        counts = ", ".join(f"{what}: {n}" for what, n in self.counts.items())
        return f"{self.folder}: {len(self.cases)} case(s) of {store} as {to}" + \
            (f" ({counts})" if counts else "")


def export_store(store_location: str | os.PathLike, to: str, out: str | os.PathLike,
                 cases: list[str] | None = None, *, keep_normalization: bool = False,
                 original_grid: bool = False, dataset_id: int = nnunet.DEFAULT_ID,
                 dataset_name: str | None = None,
                 storage_options: dict | None = None) -> ExportResult:
    """Export ``cases`` (default: every complete case) of a store; see the module."""
    if to not in FORMATS:
        raise ExportError(out, f"unknown export format {to!r}",
                          hint=f"use one of {', '.join(FORMATS)}")
    store = open_store(store_location, storage_options)
    options = ExportOptions(keep_normalization, original_grid)
    out = Path(out)
    if to == "nifti":
        check_free(out, "the output folder")
        chosen = selected_cases(store, cases)
        _refuse_mask_name_clashes(store, chosen, out)
        return _to_nifti(store, chosen, out, options)
    folder = nnunet.dataset_folder(out, dataset_id,
                                   dataset_name or str(store.attrs.get("dataset") or ""))
    check_free(folder, "the nnU-Net dataset folder")
    numbers = nnunet.label_numbers(store)
    chosen = selected_cases(store, cases)
    return _to_nnunet(store, chosen, folder, options, numbers)


def _to_nifti(store, chosen: list[str], out: Path, options: ExportOptions) -> ExportResult:
    rows = table_rows(store)
    with filled_then_moved(out) as folder:
        masks = 0
        for case_id in chosen:
            case = prepare_case(store, rows[case_id], options)
            write_image(case.image, folder / f"{case_id}{SUFFIX}", case.frame, case.record)
            if case.mask is not None:
                write_image(case.mask, folder / f"{case_id}{MASK_SUFFIX}{SUFFIX}", case.frame,
                            {**case.record, "steps": [], "kind": "mask"})
                masks += 1
            write_sidecar(case.record, folder / f"{case_id}.json")
    return ExportResult(out, chosen, {"images": len(chosen), "masks": masks})


def _refuse_mask_name_clashes(store, chosen: list[str], out: Path) -> None:
    """Refuse cases ``x`` and ``x_mask`` together when ``x`` has a mask: both would
    be written to ``x_mask.nii.gz``, one silently replacing the other."""
    present = set(chosen)
    clashes = [case_id for case_id in chosen
               if f"{case_id}{MASK_SUFFIX}" in present and store.read_mask(case_id) is not None]
    if clashes:
        first = clashes[0]
        raise ExportError(out, f"the mask of case {first!r} and the image of case "
                          f"'{first}{MASK_SUFFIX}' would both be written to "
                          f"{first}{MASK_SUFFIX}{SUFFIX}",
                          hint=f"export case '{first}{MASK_SUFFIX}' to another --out "
                          "with --case")


def _to_nnunet(store, chosen: list[str], target: Path, options: ExportOptions,
               numbers: dict[int, int]) -> ExportResult:
    rows = table_rows(store)
    counts = {"imagesTr": 0, "imagesTs": 0}
    training: dict[str, dict[str, str]] = {"train": {}, "val": {}}
    names: dict[str, str] | None = None
    with filled_then_moved(target) as folder:
        (folder / "imagesTr").mkdir()
        (folder / "labelsTr").mkdir()
        for case_id in chosen:
            case = prepare_case(store, rows[case_id], options)
            case_names = nnunet.channel_names(store, case)
            if names is None:
                names = case_names
            elif case_names != names:
                raise ExportError(store.location, f"case {case_id!r} has channels "
                                  f"{case_names}, where the first case has {names}",
                                  hint="nnU-Net needs the same channels in every case; "
                                  "export the cases of one kind with --case")
            where = nnunet.write_case(case, folder, numbers)
            counts["imagesTr" if where == "train" else "imagesTs"] += 1
            if where == "train":
                split = "val" if case.row.get("split") in nnunet.VAL_SPLITS else "train"
                training[split][case_id] = str(case.row.get("patient_id") or case_id)
        if not counts["imagesTr"]:
            _warn_untrainable(target, len(chosen))
        folds = nnunet.folds(training["train"], training["val"], _split_seed(store))
        if folds:
            nnunet.write_json(folds, folder / "splits_final.json")
        notes = _nnunet_notes(options, chosen, counts, bool(folds))
        nnunet.write_json(nnunet.dataset_json(store, names or {"0": "image"},
                                              nnunet.dataset_labels(store, numbers), numbers,
                                              counts["imagesTr"], notes),
                          folder / "dataset.json")
    return ExportResult(target, chosen, counts)


def _warn_untrainable(target: Path, n_cases: int) -> None:
    """A dataset of imagesTs only is input for nnUNetv2_predict, but nnU-Net cannot
    plan or train on it, and its verify_dataset_integrity stops with StopIteration."""
    warnings.warn(MedimgWarning(
        f"{target}: no training case (none of the {n_cases} case(s) is in the train or "
        "val split with a mask): nnU-Net can predict on its imagesTs, but not verify, "
        "plan or train on it; export cases with masks for that"), stacklevel=2)


def _nnunet_notes(options: ExportOptions, chosen: list[str], counts: dict[str, int],
                  wrote_folds: bool) -> dict[str, Any]:
    return {"cases": len(chosen), "training_cases": counts["imagesTr"],
            "test_or_unlabelled_cases": counts["imagesTs"],
            "normalization": "kept (stored values)" if options.keep_normalization
            else "undone (intensities of the source)",
            "grid": "original" if options.original_grid else "harmonized",
            "splits_final": "nnUNetv2_plan_and_preprocess copies it to "
            "nnUNet_preprocessed/<this folder>/ (nnunetv2 2.8.1 does; else copy it)"
            if wrote_folds else "not written: fewer than two patients to train on"}


def _split_seed(store) -> int:
    try:
        return int((store.attrs.get("split") or {}).get("seed", 0))
    except (TypeError, ValueError):
        return 0
