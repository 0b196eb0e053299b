"""What the read checks cost (store/integrity.py): the same data read from a store with
checksums (every chunk ``[bytes, blosc, crc32c]``, all written) and from a copy whose
image arrays are re-encoded with the codec chain stores had before (``[bytes, blosc]``,
empty chunks left out), by the same reads in the same run:

* a random 2D slice of the CT through ``store.case()`` (the lean local reader), and
  through zarr-python (``CheckedStore`` against the plain local store);
* a full scan of the stack store of 2D slices by the training adapter (PyTorch's
  DataLoader over CaseDataset), as in ``reads.py``;
* the bytes each store takes on disk.

Run alone: ``python -m benchmarks.checksums`` (it builds its own inputs)."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import numpy as np
import zarr
from torch.utils.data import DataLoader
from zarr.storage import LocalStore

from medimg_build import open_store
from medimg_build.store.formats.zarr_format import consolidate
from medimg_build.store.integrity import CheckedStore
from medimg_build.store.schema import CASES_GROUP, default_compressor, image_path
from medimg_build.training import CaseDataset

from .common import REPEATS, WORK, median_seconds
from .inputs import CtInputs
from .reads import SLICE_REPEATS, TRAINING_BATCH, build_native_store, write_slice_stack


def run(inputs: CtInputs) -> dict:
    folder = WORK / "checksums"
    native, stack = folder / "native.zarr", folder / "slices.zarr"
    build_native_store(inputs, native)
    write_slice_stack(np.load(inputs.npy, mmap_mode="r"), stack)
    plain_native = without_checksums(native, folder / "native-plain.zarr",
                                     [f"{CASES_GROUP}/ct/{image_path()}"])
    plain_stack = without_checksums(stack, folder / "slices-plain.zarr",
                                    ["image", "affine", "spacing", "origin", "complete"])
    depth = inputs.shape[2]
    slices = _paired(_slice_read(native, depth), _slice_read(plain_native, depth),
                     4 * SLICE_REPEATS)
    zarr_slices = _paired(_zarr_slice_read(native, depth, checked=True),
                          _zarr_slice_read(plain_native, depth, checked=False),
                          4 * SLICE_REPEATS)
    scans = _paired(_scan(stack), _scan(plain_stack), 2 * REPEATS)
    sizes = {"native": _bytes(native) / _bytes(plain_native),
             "stack": _bytes(stack) / _bytes(plain_stack)}
    return {"slice": slices, "slice_ratio": slices["checked"] / slices["plain"],
            "zarr_slice": zarr_slices,
            "zarr_slice_ratio": zarr_slices["checked"] / zarr_slices["plain"],
            "scan": scans, "scan_ratio": scans["checked"] / scans["plain"],
            "size_ratio": sizes}


def without_checksums(store: Path, out: Path, arrays: list[str]) -> Path:
    """A copy of ``store`` whose ``arrays`` are written as before checksums: sharded
    ones with inner codecs ``[bytes, blosc]``, the others with zarr's default codecs,
    and empty chunks left out (zarr's default)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(store, out)
    root = zarr.open_group(out, mode="r+", use_consolidated=False)
    for path in arrays:
        old = root[path]
        values, parent, name = old[...], path.rpartition("/")[0], path.rpartition("/")[2]
        group = root[parent] if parent else root
        del group[name]
        new = group.create_array(name, shape=old.shape, dtype=old.dtype, chunks=old.chunks,
                                 shards=old.shards,
                                 compressors=default_compressor() if old.shards else "auto",
                                 fill_value=old.fill_value,
                                 dimension_names=old.metadata.dimension_names,
                                 attributes=dict(old.attrs))
        new[...] = values
    consolidate(root)
    return out


def _paired(checked, plain, repeats: int) -> dict:
    """Median seconds of two reads timed in turns (checked, plain, checked, ...): on a
    shared machine both then see the same load, and the ratio keeps to the checks."""
    checked(), plain()  # warm: the first read opens the store and its shard index
    times = {"checked": [], "plain": []}
    for _ in range(repeats):
        for name, read in (("checked", checked), ("plain", plain)):
            times[name].append(median_seconds(read, 1))
    return {name: statistics.median(values) for name, values in times.items()}


def _slice_read(store: Path, depth: int):
    image = open_store(store).case("ct")["image"]  # lean reads of local stores
    rng = np.random.default_rng(0)
    return lambda: image[0, int(rng.integers(depth))].values


def _zarr_slice_read(store: Path, depth: int, checked: bool):
    local = LocalStore(store, read_only=True)
    array = zarr.open_array(CheckedStore(local, str(store)) if checked else local,
                            path=f"{CASES_GROUP}/ct/{image_path()}", mode="r")
    rng = np.random.default_rng(0)
    return lambda: array[0, int(rng.integers(depth))]


def _scan(stack: Path):
    training = CaseDataset(stack)

    def scan():
        for _ in DataLoader(training, batch_size=TRAINING_BATCH):
            pass

    return scan


def _bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.rglob("*") if p.is_file())


def markdown(results: dict) -> list[str]:
    ms = lambda seconds: f"{seconds * 1e3:.2f} ms"  # noqa: E731
    s, z, scan = results["slice"], results["zarr_slice"], results["scan"]
    size = results["size_ratio"]
    return ["## What the read checks cost", "",
            "The same data with checksums (every chunk `[bytes, blosc, crc32c]`, every "
            "chunk written; every read checks them) and re-encoded without "
            "(`[bytes, blosc]`, as before), read the same way in the same run, in turns "
            "(medians; slices: one random slice per turn).", "",
            "| measure | ratio (checked / before) | note |", "|---|---|---|",
            f"| random 2D slice (store.case(), lean reader) | {results['slice_ratio']:.3f} | "
            f"{ms(s['checked'])} vs {ms(s['plain'])} |",
            f"| random 2D slice, zarr-python (CheckedStore / plain store) | "
            f"{results['zarr_slice_ratio']:.3f} | {ms(z['checked'])} vs {ms(z['plain'])} |",
            f"| stack full scan (DataLoader over CaseDataset) | {results['scan_ratio']:.3f} | "
            f"{scan['checked']:.2f} s vs {scan['plain']:.2f} s |",
            f"| bytes on disk: CT store, stack store | {size['native']:.6f}, "
            f"{size['stack']:.6f} | 4 bytes of crc32c per chunk |"]


if __name__ == "__main__":
    from .inputs import make_ct_inputs

    shutil.rmtree(WORK / "checksums-inputs", ignore_errors=True)
    results = run(make_ct_inputs(WORK / "checksums-inputs"))
    print("\n".join(markdown(results)))
