"""I2CVB multi-parametric prostate MR (Lemaitre et al. 2015, Computers in Biology and
Medicine 60:8-31; 19 patients, Siemens 3 T), in the layout its authors' code reads
(glemaitre/protoclass and mp-mri-prostate scripts)::

    SOURCE/Patient 383/T2W/            one DICOM series
    SOURCE/Patient 383/ADC/ DCE/ MRSI/ (ADC map; DCE time series; Siemens spectroscopy)
    SOURCE/Patient 383/GT_inv/prostate/  pz/  cg/  cap/
                                       binary DICOM series on the T2W grid, one per
                                       structure (cap: the cancer)

One case per patient folder: its T2W series, with the mask of one structure (option
``mask``, default ``GT_inv/prostate``). Patient folders carry a space ("Patient 383"),
which a case id may not: the id is the folder name with "_" for the space.

Options: ``image`` (default ``T2W``), ``mask`` (default ``GT_inv/prostate``),
``patients`` (glob of patient folders, default ``Patient *``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import RecipeError
from ..paths import inside, inside_glob
from ..sources import CaseSource, SourceListing, private_case_id, masks_of, safe_id
from . import parser

_OPTIONS = {"image", "images", "mask", "masks", "patients"}


@parser("i2cvb")
def i2cvb(options: dict[str, Any], root: Path, key: bytes) -> SourceListing:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise RecipeError(None, f"i2cvb parser: unknown option(s) {unknown}",
                          hint=f"options are {sorted(_OPTIONS)}")
    names = options.get("images") or [options.get("image", "T2W")]
    for name in names:  # folders of each patient folder: they must stay inside it
        inside(root, name, "source.options." + ("images" if "images" in options else "image"))
    image_name = names[0]
    mask_name = options.get("mask", "GT_inv/prostate")
    inside(root, mask_name, "source.options.mask")
    cases, skipped = [], {}
    for folder in inside_glob(root, options.get("patients", "Patient *"),
                              "source.options.patients"):
        if not folder.is_dir():
            continue
        where = folder.relative_to(root).as_posix()
        image = folder / image_name
        if not image.is_dir():
            skipped[where] = f"patient folder without {image_name}/"
            continue
        missing = [n for n in names if not (folder / n).is_dir()]
        if missing:
            skipped[where] = f"patient folder without {', '.join(missing)}/"
            continue
        case_id = safe_id("_".join(folder.name.split()), folder)
        if options.get("masks"):  # structures combined into one map (masks_of)
            mask, layers = masks_of(options["masks"], folder, "source.options.masks")
        else:  # a patient without it is built without a mask
            mask, layers = ((folder / mask_name) if (folder / mask_name).is_dir() else None), {}
        channels = tuple(folder / n for n in names) if len(names) > 1 else ()
        cases.append(CaseSource(private_case_id(case_id, image, key), image, mask,
                                folder.name, channels=channels, channel_names=tuple(names),
                                channels_onto_first=bool(channels), **layers))
    return SourceListing(cases, skipped)
