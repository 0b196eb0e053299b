"""``make bench``: build and read throughput as ratios against baselines in the same run.

Writes benchmarks/results.md and benchmarks/results.json. The input is the real
TotalSegmentator CT in ../shared/data (a synthetic CT-like volume when it is absent),
tiled along z to a realistic 512x512x200 int16 volume."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from medimg_build import open_store, read_image
from medimg_build.harmonize import resample_to_spacing
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
REPEATS = int(os.environ.get("MEDIMG_BENCH_REPEATS", "5"))


def _median_seconds(function, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _input_volume() -> tuple[np.ndarray, np.ndarray, str]:
    """A 512x512x200 int16 CT: the real TotalSegmentator CT resampled to a clinical grid
    (sub-mm in-plane, ~1.7 mm slices) so that it looks and compresses like a real one."""
    shared = Path(os.environ.get("MEDIMG_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
    ct = shared / "totalsegmentator" / "example_ct.nii.gz"
    if not ct.exists():
        rng = np.random.default_rng(0)
        data = rng.normal(0, 300, size=(512, 512, 200)).astype(np.int16)
        return data, np.diag([-0.7, -0.7, 1.7, 1.0]), "synthetic noise (no shared data)"
    image = read_image(ct)
    extent = np.array(image.spatial_shape) * np.array(image.spacing)
    target = extent / np.array([512, 512, 200])
    fine = resample_to_spacing(image, target, "linear")
    data = np.rint(fine.array).astype(np.int16)
    return data, fine.affine, f"real TotalSegmentator CT resampled to {np.round(target, 3)} mm"


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    source = WORK / "source"
    (source / "images").mkdir(parents=True)
    data, affine, origin = _input_volume()
    nifti = source / "images" / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), nifti)
    np.save(WORK / "ct.npy", np.ascontiguousarray(data.T))  # (z, y, x) like the store

    recipe = load_recipe("volume-folder").with_overrides({"labels": None})
    out = WORK / "ct.zarr"
    decode = _median_seconds(lambda: np.asanyarray(nib.load(nifti).dataobj))
    ours = _median_seconds(lambda: build_store(recipe, source, out, overwrite=True,
                                               progress=False))
    store = open_store(out)
    depth = store.read_image("ct").array.shape[2]
    rng = np.random.default_rng(0)

    image = store.case("ct")["image"]  # opened once, as a training loop would

    def slice_ours():
        z = int(rng.integers(depth))
        image[0, z].values

    def slice_nibabel():
        z = int(rng.integers(data.shape[2]))
        np.asanyarray(nib.load(nifti).dataobj[:, :, z])

    mmap = np.load(WORK / "ct.npy", mmap_mode="r")

    def slice_npy():
        z = int(rng.integers(data.shape[2]))
        np.array(mmap[z])

    read_ours = _median_seconds(slice_ours, 50)
    read_nib = _median_seconds(slice_nibabel, 5)
    read_npy = _median_seconds(slice_npy, 50)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
        "input": f"{origin}, {data.shape} int16 .nii.gz",
        "build_seconds_median": ours,
        "decode_only_seconds_median": decode,
        "build_over_decode_floor": ours / decode,
        "slice_nibabel_over_ours": read_nib / read_ours,
        "slice_ours_over_npy_mmap": read_ours / read_npy,
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["# Benchmarks", "", f"Machine: {results['machine']}", f"Input: {results['input']}",
             f"Repeats: median of {REPEATS} (slice reads: 50)", "",
             "| measure | ratio | note |", "|---|---|---|",
             f"| build (read, RAS, 1.5 mm, CT window, write) / decode-only floor | "
             f"{results['build_over_decode_floor']:.2f} | {ours:.2f} s vs {decode:.2f} s |",
             f"| random 2D slice: nibabel .nii.gz / ours (xarray) | "
             f"{results['slice_nibabel_over_ours']:.0f} | {read_nib * 1e3:.1f} ms vs "
             f"{read_ours * 1e3:.2f} ms |",
             f"| random 2D slice: ours (xarray) / .npy mmap | "
             f"{results['slice_ours_over_npy_mmap']:.1f} | {read_npy * 1e3:.3f} ms for .npy |",
             "", "Reproduce: `make bench`"]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
