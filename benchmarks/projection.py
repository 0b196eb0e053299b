"""How long ChestX-ray14 would take on 1, 32 and 256 cores, from this run's per-image
cost and 1 -> 2 worker scaling, and what would stop the scaling first. Each possible
bottleneck is measured here as a most-cases-per-second:

* the build process: its CPU seconds per case in a real ``--workers 2`` build (this
  process's CPU time -- receiving each result, journaling it, writing the stack shards,
  and the local Dask scheduler, which runs in the build process -- as a slope between
  the two source sizes, so the cluster's start-up cancels out);
* the Dask scheduler: no-op tasks per second, all submitted at once, and in the build's
  own pattern (two in flight per worker, one submitted per completion);
* shard writes: the stack writer's cost per image (profile2d), if one process writes
  them all, as today's stack stores are written;
* the filesystem: bytes per second reading the source files with their pages dropped
  from the cache first (this machine's disk; a cluster's shared filesystem has its own).

The projection assumes the measured 1 -> 2 efficiency holds at every core count (on
this 2-core machine the build process and the scheduler share the cores with the
workers), capped by the lowest of the bounds."""

from __future__ import annotations

import os
import statistics
import time

from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

from .common import WORK
from .inputs2d import Source2d
from .mass2d import KEY_ENV

# NIH's count (its dataset description, e.g. scidm.nchc.org.tw's copy; the recipe's header).
CHESTXRAY14_IMAGES = 112_120
CORES = (1, 32, 256)
NOOP_TASKS = 2000
PATTERN_TASKS = 400
SHARD_WRITE_STEP = "store write (stack, one shard)"


def run(png8: tuple[Source2d, Source2d], mass: dict, profile: dict) -> dict:
    large, small = png8
    build_process = build_process_cost(large, small)
    scheduler = scheduler_rates()
    read = source_read_rate(large.files)
    caps = {
        "build process (CPU per case, scheduler included)": 1 / build_process["cpu_per_case"],
        "Dask scheduler (no-op tasks, all submitted)": scheduler["all_at_once"],
        "stack shard writes in one process": 1 / profile["per_image_seconds"][SHARD_WRITE_STEP],
        "filesystem read (cold, this disk)": read["cold_bytes_per_second"]
        / (large.bytes / large.n),
    }
    per_image = mass["per_image"]["ours_w1"]
    efficiency = min(1.0, mass["speedup_1_to_2"] / 2)
    return {"images": CHESTXRAY14_IMAGES, "per_image_seconds": per_image,
            "efficiency": efficiency, "caps_cases_per_second": caps,
            "build_process": build_process, "scheduler": scheduler, "read": read,
            "projection": project(CHESTXRAY14_IMAGES, per_image, efficiency, caps, CORES)}


def project(images: int, per_image: float, efficiency: float, caps: dict[str, float],
            cores: tuple[int, ...]) -> list[dict]:
    """Hours on each core count: cores / per-image seconds x efficiency (1 core: none
    lost), or the lowest cap when that is lower; and which one binds."""
    rows = []
    bound_name, bound = min(caps.items(), key=lambda item: item[1])
    for count in cores:
        compute = count / per_image * (efficiency if count > 1 else 1.0)
        rate = min(compute, bound)
        rows.append({"cores": count, "cases_per_second": rate,
                     "hours": images / rate / 3600,
                     "bound_by": "the workers' compute" if compute <= bound else bound_name})
    return rows


def cores_at(cap: float, per_image: float, efficiency: float) -> float:
    """The core count at which the workers would reach ``cap`` cases/s."""
    return cap * per_image / efficiency


def build_process_cost(large: Source2d, small: Source2d) -> dict:
    cpu, wall = {}, {}
    for source in (large, small):
        out = WORK / "projection" / f"{source.folder.name}.zarr"
        recipe = load_recipe(source.recipe)
        started_cpu, started = time.process_time(), time.perf_counter()
        report = build_store(recipe, source.folder, out, workers=2, overwrite=True,
                             progress=False, key=KEY_ENV["MEDIMG_PSEUDONYM_KEY"])
        cpu[source.n], wall[source.n] = (time.process_time() - started_cpu,
                                         time.perf_counter() - started)
        if not report.ok:
            raise RuntimeError(f"benchmark build failed: {report.failed}")
    cpu_per_case = (cpu[large.n] - cpu[small.n]) / (large.n - small.n)
    return {"cpu_seconds": cpu, "wall_seconds": wall, "cpu_per_case": max(cpu_per_case, 1e-6)}


def _noop(value):
    return value


def scheduler_rates(workers: int = 2) -> dict:
    from distributed import Client, LocalCluster, as_completed

    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None,
                      processes=True) as cluster, Client(cluster) as client:
        client.gather(client.map(_noop, range(50), pure=False))  # warm
        started = time.perf_counter()
        client.gather(client.map(_noop, range(NOOP_TASKS), pure=False))
        all_at_once = NOOP_TASKS / (time.perf_counter() - started)
        window = 2 * workers
        started = time.perf_counter()
        completed = as_completed(client.submit(_noop, i, pure=False) for i in range(window))
        submitted = window
        for _ in completed:
            if submitted < PATTERN_TASKS:
                completed.add(client.submit(_noop, submitted, pure=False))
                submitted += 1
        pattern = PATTERN_TASKS / (time.perf_counter() - started)
    return {"all_at_once": all_at_once, "build_pattern": pattern, "workers": workers}


def source_read_rate(files, rounds: int = 3) -> dict:
    """Bytes/s reading the files whole, after dropping their cached pages (cold) and
    again at once (warm: the page cache), median of the rounds."""
    total = sum(f.stat().st_size for f in files)
    cold, warm = [], []
    for _ in range(rounds):
        for path in files:
            _drop_cached(path)
        cold.append(total / _read_all(files))
        warm.append(total / _read_all(files))
    return {"bytes": total, "cold_bytes_per_second": statistics.median(cold),
            "warm_bytes_per_second": statistics.median(warm)}


def _drop_cached(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _read_all(files) -> float:
    started = time.perf_counter()
    for path in files:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    return time.perf_counter() - started


def markdown(results: dict) -> list[str]:
    per_image, efficiency = results["per_image_seconds"], results["efficiency"]
    lines = ["## Projection: ChestX-ray14 on many cores", "",
             f"{results['images']:,} images at this run's {per_image * 1e3:.0f} ms per image "
             f"and core (`--workers 1`, the PNG slope above), with the 1 -> 2 workers "
             f"efficiency ({efficiency:.0%}) assumed at every core count, capped by the "
             "lowest of the measured bounds below.", "",
             "| cores | cases/s | hours | bound by |", "|---|---|---|---|"]
    lines += [f"| {row['cores']} | {row['cases_per_second']:.1f} | {row['hours']:.2f} | "
              f"{row['bound_by']} |" for row in results["projection"]]
    b, s, r = results["build_process"], results["scheduler"], results["read"]
    notes = {
        "build process (CPU per case, scheduler included)":
            f"{b['cpu_per_case'] * 1e3:.1f} ms CPU per case in a `--workers 2` build",
        "Dask scheduler (no-op tasks, all submitted)":
            f"{NOOP_TASKS} no-op tasks on {s['workers']} workers",
        "stack shard writes in one process": "the stack writer's cost per image (profile)",
        "filesystem read (cold, this disk)":
            f"{r['cold_bytes_per_second'] / 1e6:.0f} MB/s cold, "
            f"{r['warm_bytes_per_second'] / 1e6:.0f} MB/s from the page cache",
    }
    lines += ["", "What would stop the scaling (each bound in cases/s, and the cores at "
              "which the workers would reach it):", "",
              "| bound | cases/s | cores | measured |", "|---|---|---|---|"]
    for name, cap in sorted(results["caps_cases_per_second"].items(), key=lambda i: i[1]):
        lines.append(f"| {name} | {cap:.0f} | {cores_at(cap, per_image, efficiency):.0f} | "
                     f"{notes.get(name, '')} |")
    lines += ["", f"Not a bound: in the build's own pattern (two tasks in flight per "
              f"worker, one submitted per completion) the scheduler ran "
              f"{s['build_pattern']:.0f} no-op tasks/s with {s['workers']} workers, a "
              "round-trip latency that more workers overlap, up to the rate above."]
    return lines
