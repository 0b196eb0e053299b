"""What every benchmark shares: medians of repeated runs and where the data is."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from medimg_build.resources import find_shared_data

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
REPEATS = int(os.environ.get("MEDIMG_BENCH_REPEATS", "5"))


def median_seconds(function: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def fastest_seconds(function: Callable[[], object], repeats: int = REPEATS) -> float:
    """The fastest of the repeats: for a CPU-bound kernel (a codec) on a machine
    shared with other jobs, the run least disturbed by them."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def shared_data() -> Path | None:
    return find_shared_data()
