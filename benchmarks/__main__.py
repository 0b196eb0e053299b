"""``make bench``: every suite, as ratios against baselines measured in the same run.

Writes benchmarks/results.md and benchmarks/results.json."""

from __future__ import annotations

import json
import os
import platform

from . import ct_build, dicom_read, parallel
from .common import HERE, REPEATS


def main() -> None:
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}")
    results = {"machine": machine, "repeats": REPEATS,
               "ct_build": ct_build.run(), "dicom_read": dicom_read.run(),
               "parallel": parallel.run()}
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["# Benchmarks", "", f"Machine: {machine}",
             f"Repeats: median of {REPEATS} (slice reads: 50)", ""]
    lines += ct_build.markdown(results["ct_build"]) + [""]
    lines += dicom_read.markdown(results["dicom_read"]) + [""]
    lines += parallel.markdown(results["parallel"])
    lines += ["", "Reproduce: `make bench` (MEDIMG_BENCH_REPEATS sets the repeats)."]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
