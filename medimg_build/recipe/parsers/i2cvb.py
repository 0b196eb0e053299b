"""I2CVB multi-parametric prostate MR (Lemaitre et al. 2015, Computers in Biology and
Medicine 60:8-31), as its Zenodo download (record 162231: ``ge-1-5t.tar.gz.*`` and
``siemens-3t.tar.gz.*``) unpacks::

    SOURCE/GE/Patient NNN/        21 patients, GE 1.5 T
    SOURCE/Siemens/Patient NNN/   19 patients, Siemens 3 T
        T2W/                      one DICOM series
        ADC/ DCE/ DWI/ MRSI/      (ADC map; DCE time series; ...)
        GT/prostate/ GT/pz/ GT/cg/ GT/cap/
                                  binary DICOM series on the T2W grid, one per
                                  structure (cap: the cancer)

(NVIDIA/NVFlare ``examples/advanced/prostate/README.md`` at 0f9026b3 describes the
download and its two vendor folders; its conversion script reads
``<vendor>/Patient NNN/T2W`` and ``.../GT/prostate``. ``GT_inv`` and ``T2WSeg`` are the
authors' working copies in glemaitre/protoclass, not in the download.)

The source is the download root (both vendors) or one vendor folder
(``--source .../Siemens``). One case per patient folder: its T2W series (option
``image``, or ``images`` for several channels resampled onto the first), with the mask
of one structure (``mask``, default ``GT/prostate``) or several combined into one map
(``masks``). A patient folder without a declared mask is reported and not built --
never built without it; ``mask: false`` builds the images alone. Each case records
its ``vendor``: the name of the folder holding its patient folder (``GE``,
``Siemens``). Patient folders carry a space ("Patient 383"), which a case id may not:
the id is the folder name with "_" for the space.

Options: ``image`` (default ``T2W``), ``images``, ``mask`` (default ``GT/prostate``),
``masks``, ``patients`` (glob or globs of patient folders, default ``Patient *`` and
``*/Patient *``: patients directly in the source, or in its vendor folders)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import RecipeError
from ..paths import inside, inside_glob
from ..sources import CaseSource, SourceListing, private_case_id, masks_of, safe_id
from . import parser

_OPTIONS = {"image", "images", "mask", "masks", "patients"}
PATIENT_GLOBS = ["Patient *", "*/Patient *"]


@parser("i2cvb", options=_OPTIONS)
def i2cvb(options: dict[str, Any], root: Path, key: bytes) -> SourceListing:
    names = options.get("images") or [options.get("image", "T2W")]
    for name in names:  # folders of each patient folder: they must stay inside it
        inside(root, name, "source.options." + ("images" if "images" in options else "image"))
    masks = _declared_masks(options, root)
    cases, skipped, seen = [], {}, {}
    for folder in _patient_folders(options, root):
        where = folder.relative_to(root).as_posix()
        missing = [n for n in names if not (folder / n).is_dir()]
        if missing:
            skipped[where] = _without_channels(missing, names)
            continue
        absent = [m for m in masks if not (folder / m).is_dir()]
        if absent:
            skipped[where] = (f"patient folder without the mask(s) the recipe declares: "
                              f"{', '.join(m + '/' for m in absent)}")
            continue
        case_id = safe_id("_".join(folder.name.split()), folder)
        if case_id in seen:
            skipped[where] = f"second patient folder named {folder.name!r} (the first " \
                             f"is {seen[case_id]})"
            continue
        seen[case_id] = where
        image = folder / names[0]
        if options.get("masks"):  # structures combined into one map (masks_of)
            mask, layers = masks_of(options["masks"], folder, "source.options.masks")
        else:
            mask, layers = (folder / masks[0] if masks else None), {}
        channels = tuple(folder / n for n in names) if len(names) > 1 else ()
        vendor = (folder.parent if folder.parent != root else root.resolve()).name
        cases.append(CaseSource(private_case_id(case_id, image, key), image, mask,
                                folder.name, fields={"vendor": vendor}, channels=channels,
                                channel_names=tuple(names),
                                channels_onto_first=bool(channels), **layers))
    return SourceListing(cases, skipped)


def _without_channels(missing: list[str], names: list[str]) -> str:
    """Why a patient folder lacking some image folders is not built. No public copy
    shows the GE 1.5 T patients with an ADC/ folder: from the root, the whole GE folder
    may be skipped for it, so the reason (one, for all of them) says how to build the
    first channel alone."""
    reason = f"patient folder without {', '.join(m + '/' for m in missing)}"
    if names[0] in missing:
        return reason
    return (f"{reason} (to build {names[0]} alone, for every patient: --set "
            f"source.options.images=[{names[0]}])")


def _declared_masks(options: dict[str, Any], root: Path) -> list[str]:
    """The mask folders every patient folder must have: the ``masks`` layers, else the
    one ``mask`` (none for ``mask: false``)."""
    if options.get("masks"):
        layers = options["masks"]
        folders = [layers] if isinstance(layers, str) else [str(v) for v in layers.values()]
        for folder in folders:
            inside(root, folder, "source.options.masks")
        return folders
    mask = options.get("mask", "GT/prostate")
    if mask is False:
        return []
    if not isinstance(mask, str) or not mask:
        raise RecipeError(None, f"i2cvb parser: options.mask {mask!r} is not a folder",
                          hint="a folder of each patient folder (GT/prostate), or false")
    inside(root, mask, "source.options.mask")
    return [mask]


def _patient_folders(options: dict[str, Any], root: Path) -> list[Path]:
    globs = options.get("patients") or PATIENT_GLOBS
    globs = [globs] if isinstance(globs, str) else list(globs)
    found = {p for pattern in globs
             for p in inside_glob(root, pattern, "source.options.patients") if p.is_dir()}
    return sorted(found)
