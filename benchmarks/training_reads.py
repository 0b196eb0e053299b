"""Training reads from S3 against local disk: samples per second of a PyTorch
DataLoader over ``CaseDataset`` of a 2D stack store (axial slices of the CT, 512x512
int16), read from a local folder and from a moto S3 server on 127.0.0.1 (the same
files, uploaded), with 0 and 2 DataLoader worker processes.

Each loader reads whole shuffled batches (``CaseDataset.batches``); its workers (the
platform's default start method) stay up across epochs: an epoch is read once to
start them and open the stores, then ``ROUNDS`` epochs are timed (the median). Moto
serves from this process, on the same cores: S3 here measures the request path (s3fs,
HTTP, one ranged GET per image of a shuffled batch, moto's own Python server), not a
network, and the server -- one process's threads -- is the bottleneck that worker
processes cannot widen. Reported as ratios; no timed assertion.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import zarr
from torch.utils.data import DataLoader

from medimg_build.training import CaseDataset

from .common import WORK
from .inputs import CtInputs
from .reads import MISSING_S3, moto_s3, write_slice_stack

CASES = 48  # axial slices of the CT, 0.5 MB each before compression
BATCH = 16
WORKERS = (0, 2)
ROUNDS = 2  # timed epochs: an epoch from moto takes seconds
BUCKET = "bench-training"


def run(inputs: CtInputs) -> dict:
    stack = WORK / "training_reads" / "slices.zarr"
    write_slice_stack(np.load(inputs.npy, mmap_mode="r")[:CASES], stack)
    results = {"cases": CASES, "batch": BATCH, "rounds": ROUNDS,
               "cases_per_shard": int(zarr.open_array(stack / "image", mode="r").shards[0]),
               "local": {str(w): samples_per_second(str(stack), None, w) for w in WORKERS}}
    with moto_s3(BUCKET) as s3:
        if s3 is None:
            results["s3"] = MISSING_S3
            return results
        fs, options = s3
        fs.put(str(stack), f"{BUCKET}/slices.zarr", recursive=True)
        url = f"s3://{BUCKET}/slices.zarr"
        results["s3"] = {str(w): samples_per_second(url, options, w) for w in WORKERS}
    results["s3_over_local"] = {w: results["s3"][w] / results["local"][w]
                                for w in results["local"]}
    return results


def samples_per_second(location: str, storage_options: dict | None, workers: int) -> float:
    """Samples per second of a DataLoader with ``workers`` over the store at
    ``location`` (every epoch checked whole: each case once)."""
    data = CaseDataset(location, storage_options=storage_options)
    loader = DataLoader(data, batch_size=None, sampler=data.batches(BATCH, shuffle=True),
                        num_workers=workers, persistent_workers=workers > 0)
    seconds = []
    for epoch in range(ROUNDS + 1):  # the first starts the workers and opens the store
        data.set_epoch(epoch)  # the sampler's order; it runs in this process
        started = time.perf_counter()
        seen = sum(len(batch["case_id"]) for batch in loader)
        seconds.append(time.perf_counter() - started)
        if seen != len(data):
            raise RuntimeError(f"an epoch of {location} gave {seen} samples, not {len(data)}")
    del loader  # stops the workers
    return len(data) / statistics.median(seconds[1:])


def markdown(results: dict) -> list[str]:
    lines = ["## Training reads: S3 against local disk", "",
             f"A DataLoader over `CaseDataset` of a 2D stack store ({results['cases']} "
             f"axial CT slices, 512x512 int16, {results['cases_per_shard']} per shard: on S3 "
             f"a ranged GET per image), whole shuffled batches of {results['batch']}, "
             f"median of {results['rounds']} epochs after one to warm up; S3 is a moto server "
             "in this process (`benchmarks/training_reads.py`).", "",
             "| store | DataLoader workers | samples/s | / 0 workers | S3 / local, same workers |",
             "|---|---|---|---|---|"]
    for where, name in (("local", "local folder"), ("s3", "S3 (moto)")):
        if "error" in results[where]:
            lines.append(f"| {name} | | not run | | {results[where]['error']} |")
            continue
        for workers, rate in results[where].items():
            ratio = results["s3_over_local"][workers] if where == "s3" else None
            lines.append(f"| {name} | {workers} | {rate:.0f} | "
                         f"{rate / results[where]['0']:.2f} | "
                         f"{'' if ratio is None else f'{ratio:.2f}'} |")
    return lines
