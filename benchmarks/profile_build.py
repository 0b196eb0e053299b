"""Where one case's build time goes: each step of the build timed alone on the same CT
(median of the repeats), and what is left for the build's own orchestration.

Steps: read (our reader; nibabel's and SimpleITK's decode alone beside it), RAS,
resample to 1.5 mm, CT window, store write; beside the store write, the codec alone
(Blosc encoding the same 2D-slice chunks, nothing else). Timing each step, not
cProfile: Zarr encodes in its own threads, which cProfile does not see."""

from __future__ import annotations

import numpy as np

from medimg_build import read_image
from medimg_build.case import Case
from medimg_build.harmonize import normalize, resample_to_spacing, to_ras
from medimg_build.store import create_store
from medimg_build.store.axes import image_to_stored
from medimg_build.store.schema import default_compressor

from . import baselines
from .common import WORK, median_seconds
from .ct_build import FreshStores, build_ours

# Measured beside the build's steps, not parts of it.
NOT_BUILD_STEPS = ("decode alone (nibabel/pydicom)", "decode alone (SimpleITK)",
                   "codec alone (Blosc)", "build (whole)")


def run(source, source_dir) -> dict:
    raw = read_image(source)
    raw = raw.replace(meta={**raw.meta, "modality": "CT"})  # what the recipe adds to NIfTI
    ras = to_ras(raw)
    resampled = resample_to_spacing(ras, baselines.SPACING, "linear")
    harmonized = normalize(resampled, "ct", window=list(baselines.WINDOW))
    stored = image_to_stored(harmonized)
    out = WORK / "profile"
    stores, written = FreshStores(out / "builds"), FreshStores(out / "one-case")
    steps = {
        "decode alone (nibabel/pydicom)": median_seconds(lambda: baselines.decode_only(source)),
        "decode alone (SimpleITK)": median_seconds(lambda: baselines.sitk_read(source)),
        "read (ours)": median_seconds(lambda: read_image(source)),
        "RAS": median_seconds(lambda: to_ras(raw)),
        "resample 1.5 mm (separable, numpy)": median_seconds(
            lambda: resample_to_spacing(ras, baselines.SPACING, "linear")),
        "CT window": median_seconds(lambda: normalize(resampled, "ct",
                                                      window=list(baselines.WINDOW))),
        "store write (one case)": median_seconds(
            lambda: _write_case(harmonized, written.next())),
        "codec alone (Blosc)": median_seconds(lambda: _encode_slices(stored)),
        "build (whole)": median_seconds(lambda: build_ours(source_dir, stores.next())),
    }
    work = sum(seconds for name, seconds in steps.items()
               if name not in NOT_BUILD_STEPS)
    steps["rest of the build (listing, table, manifest, ...)"] = steps["build (whole)"] - work
    return {"source": str(source.name), "seconds": steps}


def _write_case(image, out) -> None:
    writer = create_store(out, "volumes", n_cases=1)
    writer.write_case(0, Case("ct", image))


def _encode_slices(stored: np.ndarray) -> None:
    blosc = numcodecs_blosc(default_compressor())
    for plane in stored.reshape(-1, *stored.shape[-2:]):
        blosc.encode(plane)


def numcodecs_blosc(codec):
    """numcodecs' Blosc with the settings of a Zarr BloscCodec (which calls it)."""
    from numcodecs import Blosc

    config = codec.to_dict()["configuration"]
    shuffle = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE,
               "bitshuffle": Blosc.BITSHUFFLE}[str(config["shuffle"])]
    return Blosc(cname=config["cname"], clevel=config["clevel"], shuffle=shuffle,
                 blocksize=config.get("blocksize", 0))


def markdown(results: dict) -> list[str]:
    seconds = results["seconds"]
    total = seconds["build (whole)"]
    lines = [f"Where the build's time goes ({results['source']}; each step timed alone, "
             "median):", "", "| step | seconds | share of the build |", "|---|---|---|"]
    for name, value in seconds.items():
        share = "" if name in ("build (whole)",) else f"{value / total:.0%}"
        lines.append(f"| {name} | {value:.3f} | {share} |")
    return lines
