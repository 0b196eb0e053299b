"""2D mass build: ours against the decode floor and a MedMNIST-style script, on
ChestX-ray14-layout PNGs and the JPEG and 16-bit PNG variants (inputs2d.py).

Measured interleaved, round by round (decode, script, ours with 1 worker, ours with 2,
at two source sizes), median of the rounds:

* decode floor: Pillow decodes every file, in this process, nothing else;
* MedMNIST-style: the same work by hand with Pillow and numpy, in this process --
  decode, antialiased resize keeping the aspect (Pillow's bilinear, whose support
  widens with the reduction), centred on a black 512x512, scaled to float16 (float32 for
  16 bits), one ``np.save`` of the whole stack;
* ours: ``medimg-build build RECIPE --workers 1|2`` as a user runs it, a subprocess.
  Its start-up, listing and table writing are a fixed cost; the per-image cost is the
  slope between the two source sizes, (t(N) - t(N/3)) / (N - N/3).

Run alone: ``python -m benchmarks.mass2d`` (prints the section; $MEDIMG_BENCH_2D_N
images, default 300; $MEDIMG_BENCH_2D_REPEATS rounds, default 3)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .common import REPEATS, WORK
from .inputs2d import Source2d, make_sources

ROUNDS = int(os.environ.get("MEDIMG_BENCH_2D_REPEATS", str(min(REPEATS, 3))))
SIDE = 512  # the recipes' harmonize.shape
OUT = WORK / "mass2d"
KEY_ENV = {"MEDIMG_PSEUDONYM_KEY": "benchmark"}  # a key: no default-key warning


def decode_floor(files: list[Path]) -> None:
    for path in files:
        with Image.open(path) as image:
            np.asarray(image)


def medmnist_style(files: list[Path], out: Path, side: int = SIDE) -> None:
    """What a MedMNIST-style preparation script does, in one process."""
    stack = None
    for index, path in enumerate(files):
        with Image.open(path) as image:
            pixels, bits = resized_keeping_aspect(image, side)
        if stack is None:
            dtype = np.float16 if bits <= 8 else np.float32
            stack = np.zeros((len(files), side, side) + pixels.shape[2:], dtype)
        top, left = (side - pixels.shape[0]) // 2, (side - pixels.shape[1]) // 2
        stack[index, top:top + pixels.shape[0], left:left + pixels.shape[1]] = \
            pixels / float(2 ** bits - 1)
    np.save(out, stack)


def resized_keeping_aspect(image: Image.Image, side: int) -> tuple[np.ndarray, int]:
    """The image scaled so that its longer side is ``side``, and its bits per sample.
    16-bit pictures go through Pillow's float mode (its resize takes no I;16)."""
    bits = 16 if image.mode.startswith("I;16") else 8
    if bits == 16:
        image = Image.fromarray(np.asarray(image).astype(np.float32), mode="F")
    scale = side / max(image.size)
    size = tuple(max(1, round(n * scale)) for n in image.size)
    return np.asarray(image.resize(size, Image.BILINEAR)), bits


def build_command(source: Source2d, out: Path, workers: int) -> list[str]:
    command = [str(Path(sys.executable).parent / "medimg-build"), "build", source.recipe,
               "--source", str(source.folder), "--out", str(out), "--workers",
               str(workers), "--quiet"]
    for override in source.overrides:
        command += ["--set", override]
    return command


def build_ours(source: Source2d, out: Path, workers: int) -> float:
    """Seconds of one CLI build; the store is kept (for the agreement check)."""
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(build_command(source, out, workers), capture_output=True,
                          text=True, env={**os.environ, **KEY_ENV})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"benchmark build failed ({' '.join(done.args)}):\n"
                           f"{done.stdout}{done.stderr}")
    return seconds


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def per_image_slope(large_seconds: float, small_seconds: float, n_large: int,
                    n_small: int) -> tuple[float, float]:
    """(seconds per image, fixed seconds) of a build timed at two source sizes."""
    slope = (large_seconds - small_seconds) / (n_large - n_small)
    return slope, large_seconds - slope * n_large


def one_variant(large: Source2d, small: Source2d, rounds: int = ROUNDS) -> dict:
    out = OUT / large.variant
    out.mkdir(parents=True, exist_ok=True)
    measures = {
        "decode": lambda: timed(lambda: decode_floor(large.files)),
        "medmnist": lambda: timed(lambda: medmnist_style(large.files, out / "medmnist.npy")),
        "ours_w1": lambda: build_ours(large, out / "w1.zarr", 1),
        "ours_w2": lambda: build_ours(large, out / "w2.zarr", 2),
        "ours_w1_small": lambda: build_ours(small, out / "w1-small.zarr", 1),
        "ours_w2_small": lambda: build_ours(small, out / "w2-small.zarr", 2),
    }
    times: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(rounds):  # A, B, C, ... then again: the machine's load hits them all
        for name, measure in measures.items():
            times[name].append(measure())
    seconds = {name: statistics.median(values) for name, values in times.items()}
    result = summary(seconds, large.n, small.n)
    result["by_round"] = ratios_by_round(times, large.n, small.n)
    result.update(what=large.what, n=large.n, n_small=small.n, rounds=rounds,
                  mean_file_bytes=large.bytes / large.n, all_seconds=times,
                  agreement=agreement(out / "w1.zarr", out / "medmnist.npy"))
    return result


def summary(seconds: dict[str, float], n: int, n_small: int) -> dict:
    """Per-image costs and the goals' ratios from the median seconds. A slope that noise
    made zero or negative (a loaded machine, few images) is replaced by the larger
    source's wall time per image, and ``slope_failed`` names it."""
    slopes, failed = {}, []
    for w in (1, 2):
        slopes[w] = per_image_slope(seconds[f"ours_w{w}"], seconds[f"ours_w{w}_small"],
                                    n, n_small)
        if slopes[w][0] <= 0:
            slopes[w] = (seconds[f"ours_w{w}"] / n, 0.0)
            failed.append(f"ours_w{w}")
    decode, script = seconds["decode"] / n, seconds["medmnist"] / n
    ours1, ours2 = slopes[1][0], slopes[2][0]
    return {"seconds": seconds,
            "per_image": {"decode": decode, "medmnist": script, "ours_w1": ours1,
                          "ours_w2": ours2},
            "fixed_seconds": {"ours_w1": slopes[1][1], "ours_w2": slopes[2][1]},
            "ours_per_worker_over_decode": ours1 / decode,
            "medmnist_over_ours": script / ours1,
            "medmnist_over_ours_wall": seconds["medmnist"] / seconds["ours_w1"],
            "speedup_1_to_2": ours1 / ours2,
            "speedup_1_to_2_wall": seconds["ours_w1"] / seconds["ours_w2"],
            "slope_failed": failed}


def ratios_by_round(times: dict[str, list[float]], n: int, n_small: int) -> dict:
    """The goals' ratios of each round on its own (its builds, decode and script ran
    minutes apart at most): their spread shows what the machine's load did."""
    rounds = [summary({name: values[r] for name, values in times.items()}, n, n_small)
              for r in range(len(times["decode"]))]
    return {key: [one[key] for one in rounds] for key in
            ("ours_per_worker_over_decode", "medmnist_over_ours", "speedup_1_to_2")}


def agreement(store: Path, script_output: Path, cases: int = 8) -> dict:
    """Ours against the script's stack on the first cases: the same work, with our
    Gaussian-then-linear resampling against Pillow's bilinear filter."""
    import zarr

    ours = zarr.open_array(store / "image", mode="r")[:cases].astype(np.float32)
    theirs = np.load(script_output, mmap_mode="r")[:cases].astype(np.float32)
    if theirs.ndim == 4:  # (case, y, x, channel) -> ours (case, channel, y, x)
        theirs = np.moveaxis(theirs, -1, 1)
    else:
        theirs = theirs[:, None]
    if ours.shape != theirs.shape:
        return {"shape_ours": list(ours.shape), "shape_script": list(theirs.shape)}
    difference = np.abs(ours - theirs)
    return {"shape": list(ours.shape), "mean_abs": float(difference.mean()),
            "p99_abs": float(np.percentile(difference, 99))}


def run(sources: dict[str, tuple[Source2d, Source2d]] | None = None) -> dict:
    sources = sources or make_sources()
    return {variant: one_variant(large, small) for variant, (large, small) in sources.items()}


def markdown(results: dict) -> list[str]:
    lines = ["## 2D mass build", "",
             "Each variant built with the CLI (`--workers 1` and `2`, a subprocess each) "
             "at two source sizes, beside the Pillow decode of every file and a "
             "MedMNIST-style Pillow + numpy script doing the same work (decode, antialiased "
             "resize to 512 keeping the aspect, scale to float, one `np.save`); interleaved "
             "round by round, median of the rounds. Per image, ours is the slope between "
             "the two sizes (the CLI's start-up and listing are the fixed part).", "",
             "| variant | images | decode floor | MedMNIST-style | ours, 1 worker | "
             "ours, 2 workers | fixed (1 / 2 workers) | ours / decode | MedMNIST / ours "
             "| 1 -> 2 workers | ours vs script (mean abs, p99) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for variant, r in results.items():
        p, s = r["per_image"], r["seconds"]
        a = r["agreement"]
        agree = (f"{a['mean_abs']:.4f}, {a['p99_abs']:.4f}" if "mean_abs" in a
                 else f"shapes differ: {a}")
        lost = "".join(f" ({w.removeprefix('ours_')}: no slope, wall / images)"
                       for w in r["slope_failed"])
        lines.append(
            f"| {r['what']} | {r['n']} ({r['n_small']}), {r['mean_file_bytes'] / 1e3:.0f} "
            f"KB each | {p['decode'] * 1e3:.1f} ms ({s['decode']:.1f} s) | "
            f"{p['medmnist'] * 1e3:.1f} ms ({s['medmnist']:.1f} s) | "
            f"{p['ours_w1'] * 1e3:.1f} ms ({s['ours_w1']:.1f} s) | "
            f"{p['ours_w2'] * 1e3:.1f} ms ({s['ours_w2']:.1f} s) | "
            f"{r['fixed_seconds']['ours_w1']:.1f} s / {r['fixed_seconds']['ours_w2']:.1f} s"
            f"{lost} | "
            f"{r['ours_per_worker_over_decode']:.2f} | {r['medmnist_over_ours']:.2f} "
            f"(wall {r['medmnist_over_ours_wall']:.2f}) | {r['speedup_1_to_2']:.2f} "
            f"(wall {r['speedup_1_to_2_wall']:.2f}) | {agree} |")
    lines += [""] + [
        f"- {variant}, each round alone: ours / decode "
        f"{_spread(r['by_round'], 'ours_per_worker_over_decode')}, MedMNIST / ours "
        f"{_spread(r['by_round'], 'medmnist_over_ours')}, 1 -> 2 workers "
        f"{_spread(r['by_round'], 'speedup_1_to_2')}" for variant, r in results.items()]
    lines += ["", "Per image; in brackets the whole wall time of the larger source. "
              "Targets (ChestX-ray14 PNGs): ours / decode <= 1.3, MedMNIST / ours > 1, "
              "1 -> 2 workers >= 1.8."]
    return lines


def _spread(by_round: dict, key: str) -> str:
    values = by_round[key]
    return f"{min(values):.2f}-{max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def run_section() -> dict:
    """The section's results: this module's, the profile and the projection."""
    from . import profile2d, projection

    sources = make_sources()
    mass = run(sources)
    profile = profile2d.run(sources["png8"])
    return {"mass2d": mass, "profile2d": profile,
            "projection2d": projection.run(sources["png8"], mass["png8"], profile)}


def main() -> None:
    """The section alone: its targets, tables, profile and projection, printed."""
    from . import profile2d, projection, targets

    results = run_section()
    rows = targets.evaluate(results, targets.mass2d_targets())
    print("\n".join(targets.markdown(rows) + [""] + markdown(results["mass2d"]) + [""]
                    + profile2d.markdown(results["profile2d"]) + [""]
                    + projection.markdown(results["projection2d"])))


if __name__ == "__main__":
    main()
