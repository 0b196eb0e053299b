"""Parallel build: 1 vs 2 Dask workers on the same CT build (speed-up, efficiency), and
the peak memory of a worker against the largest case's size as float32."""

from __future__ import annotations

import functools
import resource
import shutil
import time

import nibabel as nib
import numpy as np

from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

from .common import WORK, median_seconds, shared_data
from .ct_build import FreshStores

N_CASES = 8
# Workers write their own volumes cases (store/volumes.py, CaseDestination). Measured
# back to back here (2 cores, median of 3, two pairs): 2 workers take 3.1 s either way; 1 worker
# takes 5.1-5.3 s with worker writes against 4.0 s with the build process writing, which
# then compresses one case while the lone worker harmonizes the next. So the ratio rose
# (1.3-1.4 -> 1.6) because the 1-worker build got slower, not the 2-worker build faster;
# the gain is on clusters, where the build process no longer receives every image nor
# caps throughput at one thread's compression.


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
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux


def _worker_peak_rss(client) -> int:
    return max(client.run(peak_rss).values())


def run() -> dict:
    from distributed import Client, LocalCluster

    source, largest = _sources()
    recipe = load_recipe("volume-folder").with_overrides({"labels": None})
    seconds, timelines = {}, {}
    peak = idle = 0
    for workers in (1, 2):
        stores = FreshStores(WORK / "parallel" / f"w{workers}")
        with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None,
                          memory_limit="8GiB") as cluster, Client(cluster) as client:
            idle = max(idle, _worker_peak_rss(client))  # before any case
            build = functools.partial(_build, recipe, source, stores, cluster)
            seconds[workers] = median_seconds(build)
            peak = max(peak, _worker_peak_rss(client))
            timelines[workers] = timeline(client, build, workers)
    speedup = seconds[1] / seconds[2]
    return {"cases": N_CASES, "seconds_1_worker": seconds[1], "seconds_2_workers": seconds[2],
            "speedup_1_to_2": speedup, "efficiency": speedup / 2,
            "worker_peak_rss_bytes": peak, "worker_idle_rss_bytes": idle,
            "largest_case_float32_bytes": largest,
            "peak_over_largest_case": peak / largest,
            "case_rss_over_largest_case": (peak - idle) / largest,
            "timeline": timelines, "bottleneck": bottleneck(timelines)}


def _build(recipe, source, stores: FreshStores, cluster) -> None:
    build_store(recipe, source, stores.next(), scheduler=cluster.scheduler_address,
                progress=False)


def timeline(client, build, workers: int) -> dict:
    """One more build, with Dask's task stream: how long before the first case starts
    on a worker, after the last one ends, and the mean time one case computes
    (harmonize + write) -- which grows when the workers compete for the cores."""
    from distributed import get_task_stream

    with get_task_stream(client) as stream:
        started = time.time()
        build()
        ended = time.time()
    computes = [(start, stop) for task in stream.data
                for what, start, stop in ((s["action"], s["start"], s["stop"])
                                          for s in task["startstops"]) if what == "compute"]
    first, last = min(c[0] for c in computes), max(c[1] for c in computes)
    return {"workers": workers, "seconds": ended - started,
            "before_first_case": first - started, "after_last_case": ended - last,
            "case_seconds_mean": sum(stop - start for start, stop in computes) / len(computes)}


def bottleneck(timelines: dict) -> str:
    one, two = timelines[1], timelines[2]
    return (f"workers write their own cases; with 2 workers, {two['before_first_case']:.1f} s "
            f"pass before the first case starts and {two['after_last_case']:.1f} s after the "
            f"last one ends (of {two['seconds']:.1f} s), and one case takes "
            f"{two['case_seconds_mean']:.2f} s on a worker against "
            f"{one['case_seconds_mean']:.2f} s with 1 worker (the two workers share the "
            "cores with the build process, the scheduler and each other)")


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
