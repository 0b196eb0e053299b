"""Parallel build: 1 vs 2 Dask workers on the same CT build (speed-up, efficiency), and
the peak memory of a worker against the largest case's size as float32."""

from __future__ import annotations

import resource
import shutil

import nibabel as nib
import numpy as np

from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

from .common import WORK, median_seconds, shared_data
from .ct_build import FreshStores

N_CASES = 8
# The speed-up used to be capped by the build process receiving every case and
# compressing it in one writer thread (1.0-1.4x); workers now write their cases
# themselves (store/worker_writes.py).


def _sources() -> tuple[object, int]:
    """N CT volumes of 384x384x120 int16 (the real CT resampled when present)."""
    source = WORK / "parallel" / "source"
    shutil.rmtree(source.parent, ignore_errors=True)
    (source / "images").mkdir(parents=True)
    shared = shared_data()
    rng = np.random.default_rng(0)
    if shared is not None:
        from medimg_build import read_image
        from medimg_build.harmonize import resample_to_spacing

        ct = read_image(shared / "totalsegmentator" / "example_ct.nii.gz")
        extent = np.array(ct.spatial_shape) * np.array(ct.spacing)
        fine = resample_to_spacing(ct, extent / np.array([384, 384, 120]), "linear")
        base, affine = np.rint(fine.array).astype(np.int16), fine.affine
    else:
        base = rng.normal(0, 300, (384, 384, 120)).astype(np.int16)
        affine = np.diag([-0.9, -0.9, 2.5, 1.0])
    for index in range(N_CASES):
        noisy = base + rng.integers(-5, 6, base.shape).astype(np.int16)
        nib.save(nib.Nifti1Image(noisy, affine), source / "images" / f"ct{index}.nii.gz")
    return source, base.size * 4  # the largest case as float32


def peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM, not getrusage's ru_maxrss,
    which Linux carries across exec (a spawned worker would report its parent's)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux


def _worker_peak_rss(client) -> int:
    return max(client.run(peak_rss).values())


def run() -> dict:
    from distributed import Client, LocalCluster

    source, largest = _sources()
    recipe = load_recipe("volume-folder").with_overrides({"labels": None})
    seconds = {}
    peak = idle = 0
    for workers in (1, 2):
        stores = FreshStores(WORK / "parallel" / f"w{workers}")
        with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None,
                          memory_limit="8GiB") as cluster, Client(cluster) as client:
            idle = max(idle, _worker_peak_rss(client))  # before any case
            seconds[workers] = median_seconds(lambda: build_store(
                recipe, source, stores.next(), scheduler=cluster.scheduler_address,
                progress=False))
            peak = max(peak, _worker_peak_rss(client))
    speedup = seconds[1] / seconds[2]
    return {"cases": N_CASES, "seconds_1_worker": seconds[1], "seconds_2_workers": seconds[2],
            "speedup_1_to_2": speedup, "efficiency": speedup / 2,
            "worker_peak_rss_bytes": peak, "worker_idle_rss_bytes": idle,
            "largest_case_float32_bytes": largest,
            "peak_over_largest_case": peak / largest,
            "case_rss_over_largest_case": (peak - idle) / largest,
            "bottleneck": bottleneck(seconds[1], seconds[2])}


def bottleneck(one: float, two: float) -> str:
    """What the two timings imply (Amdahl: one = s + p, two = s + p / 2)."""
    serial = max(0.0, 2 * two - one)
    return (f"workers write their own cases; the timings imply {serial:.1f} s of "
            f"{two:.1f} s that two workers do not shorten (candidates, not yet timed one "
            "by one: connecting to the cluster, sending the context, store creation and "
            "close, two cores shared with the build process and the scheduler)")


def markdown(results: dict) -> list[str]:
    return ["## Parallel build", "",
            f"{results['cases']} CT volumes of 384x384x120 int16 (.nii.gz): read, RAS, "
            "1.5 mm, CT window, write; workers on a LocalCluster, one thread each; "
            f"median of the repeats. Bottleneck: {results['bottleneck']}.", "",
            "| measure | value | note |", "|---|---|---|",
            f"| speed-up 1 -> 2 workers | {results['speedup_1_to_2']:.2f} | "
            f"{results['seconds_1_worker']:.1f} s vs {results['seconds_2_workers']:.1f} s, "
            f"efficiency {results['efficiency']:.0%} |",
            f"| worker peak RSS / largest case as float32 | "
            f"{results['peak_over_largest_case']:.2f} | "
            f"{results['worker_peak_rss_bytes'] / 2**20:.0f} MiB vs "
            f"{results['largest_case_float32_bytes'] / 2**20:.0f} MiB (RSS includes the "
            "worker's Python, numpy, SimpleITK) |",
            f"| worker RSS added by the build / largest case as float32 | "
            f"{results['case_rss_over_largest_case']:.2f} | idle worker "
            f"{results['worker_idle_rss_bytes'] / 2**20:.0f} MiB |"]
