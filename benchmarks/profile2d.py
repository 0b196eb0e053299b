"""Where one 2D image's build time goes (``--workers 1``, in this process): each step
of the recipe timed alone over the same PNGs, and the whole in-process build per image,
as the slope between builds of two source sizes (a build's fixed cost -- imports,
listing, table, manifest -- spread over a few dozen images looked like a per-image one);
the rest is the build's own work per case (labels, case row, journal, shard bookkeeping).

Steps: decode alone (Pillow, beside the build, not part of it), our read, grey + 2D +
RAS, resize to 512x512 (anti-aliasing and resampling), the xray normalization, the
sha256 of the source file (the case row's), the stack store's write of the harmonized
images (one shard), all per image, median of the rounds."""

from __future__ import annotations

import shutil
import statistics
import time

import numpy as np
from PIL import Image

from medimg_build import read_image
from medimg_build.case import Case
from medimg_build.harmonize.convert import drop_singleton_slice, to_grayscale
from medimg_build.harmonize.normalize import normalize
from medimg_build.harmonize.orient import to_ras
from medimg_build.harmonize.resize import resize_with_pad
from medimg_build.recipe.build import build_store
from medimg_build.recipe.case_table import sha256_of
from medimg_build.recipe.model import load_recipe
from medimg_build.store import create_store

from .common import WORK
from .inputs2d import Source2d
from .mass2d import KEY_ENV, ROUNDS, SIDE

OUT = WORK / "profile2d"
BESIDE = ("decode alone (Pillow)", "build in-process (whole)")
WHOLE = "build in-process (whole)"
REST = "rest of the build (labels, row, journal, bookkeeping)"


def run(sizes: tuple[Source2d, Source2d], rounds: int = ROUNDS) -> dict:
    """``sizes``: the source at two sizes (larger, smaller); steps are timed on the
    smaller one, the whole build is the slope between the two."""
    larger, source = sizes
    files = source.files
    raws = [read_image(f) for f in files]
    planar = [to_ras(drop_singleton_slice(to_grayscale(r))) for r in raws]
    resized = [resize_with_pad(p, [SIDE, SIDE], "linear") for p in planar]
    harmonized = [normalize(r, "xray") for r in resized]
    recipe = load_recipe(source.recipe)
    steps = {
        "decode alone (Pillow)": lambda: [np.asarray(Image.open(f)) for f in files],
        "read (ours)": lambda: [read_image(f) for f in files],
        "grey, 2D, RAS": lambda: [to_ras(drop_singleton_slice(to_grayscale(r)))
                                  for r in raws],
        f"resize to {SIDE}x{SIDE} (anti-aliasing + resampling)":
            lambda: [resize_with_pad(p, [SIDE, SIDE], "linear") for p in planar],
        "normalize (xray)": lambda: [normalize(r, "xray") for r in resized],
        "sha256 of the source": lambda: [sha256_of(f) for f in files],
        "store write (stack, one shard)": lambda: _write_stack(harmonized),
        WHOLE: lambda: _build(recipe, larger) - _build(recipe, source),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            if name == WHOLE:
                times[name].append(step())
                continue
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    per_image = {name: statistics.median(values) / len(files)
                 for name, values in times.items() if name != WHOLE}
    per_image[WHOLE] = statistics.median(times[WHOLE]) / (larger.n - source.n)
    per_image[REST] = per_image[WHOLE] - sum(
        value for name, value in per_image.items() if name not in BESIDE)
    return {"what": source.what, "images": len(files), "per_image_seconds": per_image}


def _write_stack(harmonized) -> None:
    out = OUT / "stack.zarr"
    shutil.rmtree(out, ignore_errors=True)
    writer = create_store(out, "stack", n_cases=len(harmonized))
    for index, image in enumerate(harmonized):
        writer.write_case(index, Case(f"case{index}", image))


def _build(recipe, source: Source2d) -> float:
    """Seconds of one in-process build of ``source`` (a fresh store each time)."""
    out = OUT / "build.zarr"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    report = build_store(recipe, source.folder, out, progress=False,
                         key=KEY_ENV["MEDIMG_PSEUDONYM_KEY"])
    seconds = time.perf_counter() - started
    if not report.ok:
        raise RuntimeError(f"benchmark build failed: {report.failed}")
    return seconds


def shares(results: dict) -> dict[str, float]:
    """Each step of the build as a share of the whole build (steps beside it left out)."""
    per_image = results["per_image_seconds"]
    return {name: value / per_image[WHOLE] for name, value in per_image.items()
            if name not in BESIDE}


def dominant(results: dict, count: int = 3) -> str:
    """The ``count`` largest steps of the build, with their ms and share."""
    per_image = results["per_image_seconds"]
    ranked = sorted(shares(results).items(), key=lambda item: -item[1])[:count]
    return ", ".join(f"{name} {per_image[name] * 1e3:.1f} ms ({share:.0%})"
                     for name, share in ranked)


def markdown(results: dict) -> list[str]:
    per_image = results["per_image_seconds"]
    share = shares(results)
    lines = [f"Where a 2D build's time goes ({results['what']}, {results['images']} images, "
             "`--workers 1` in this process; each step timed alone, median; the whole "
             "build per image is the slope between two source sizes):", "",
             "| step | ms per image | share of the build |", "|---|---|---|"]
    for name, value in per_image.items():
        shown = f"{share[name]:.0%}" if name in share else ""
        lines.append(f"| {name} | {value * 1e3:.1f} | {shown} |")
    return lines
