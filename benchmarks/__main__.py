"""``make bench``: every suite, as ratios against baselines measured in the same run.

Writes benchmarks/results.md and benchmarks/results.json. $MEDIMG_BENCH_REPEATS sets the
repeats (median taken), $MEDIMG_BENCH_SHAPE the CT size (default 512x512x200); the 2D
mass build's sources ($MEDIMG_BENCH_2D_N images, default 300) are made once and kept in
benchmarks/work/inputs2d, $MEDIMG_BENCH_2D_REPEATS sets its rounds (default 3)."""

from __future__ import annotations

import json
import os
import platform
import shutil

from . import (
    checksums, ct_build, dicom_read, mass2d, parallel, profile2d, profile_build, projection,
    reads, storage, targets, training_reads,
)
from .common import HERE, REPEATS, WORK
from .inputs import SHAPE, make_ct_inputs
from .inputs2d import INPUTS


def main() -> None:
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}")
    _clear_work()
    inputs = make_ct_inputs(WORK)
    results = {"machine": machine, "repeats": REPEATS, "ct_shape": list(SHAPE),
               "ct_build": ct_build.run(inputs),
               "profile": profile_build.run(inputs.nifti, inputs.nifti.parent.parent),
               "reads": reads.run(inputs), "training_reads": training_reads.run(inputs),
               "checksums": checksums.run(inputs),
               "storage": storage.run(inputs),
               "dicom_read": dicom_read.run(inputs.dicom), "parallel": parallel.run()}
    results.update(mass2d.run_section())
    results["targets"] = targets.evaluate(results)
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    lines = render(results)
    (HERE / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def _clear_work() -> None:
    """Everything of the last run but the 2D sources, which take a minute to make."""
    WORK.mkdir(parents=True, exist_ok=True)
    for path in WORK.iterdir():
        if path != INPUTS:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def render(results: dict) -> list[str]:
    """results.md from the results (results.json holds them all)."""
    lines = ["# Benchmarks", "", f"Machine: {results['machine']}",
             f"Repeats: median of {results['repeats']} (slice reads: {reads.SLICE_REPEATS})",
             ""]
    lines += targets.markdown(results["targets"]) + [""]
    lines += ct_build.markdown(results["ct_build"]) + [""]
    lines += profile_build.markdown(results["profile"]) + [""]
    lines += reads.markdown(results["reads"]) + [""]
    lines += training_reads.markdown(results["training_reads"]) + [""]
    lines += checksums.markdown(results["checksums"]) + [""]
    lines += storage.markdown(results["storage"]) + [""]
    lines += dicom_read.markdown(results["dicom_read"]) + [""]
    lines += parallel.markdown(results["parallel"]) + [""]
    lines += mass2d.markdown(results["mass2d"]) + [""]
    lines += profile2d.markdown(results["profile2d"]) + [""]
    lines += projection.markdown(results["projection2d"])
    lines += ["", "Reproduce: `make bench` (MEDIMG_BENCH_REPEATS sets the repeats, "
              "MEDIMG_BENCH_SHAPE the CT size, e.g. 256x256x100; MEDIMG_BENCH_2D_N "
              "the 2D images, e.g. 60). The 2D section alone: "
              "`python -m benchmarks.mass2d`."]
    return lines


if __name__ == "__main__":
    main()
