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
from pathlib import Path

import numpy as np
import zarr
from torch.utils.data import DataLoader
from zarr.storage import LocalStore

from medimg_build import open_store
from medimg_build.store.base import consolidate
from medimg_build.store.integrity import CheckedStore
from medimg_build.store.schema import CASES_GROUP, default_compressor, image_path
from medimg_build.training import CaseDataset

from .common import WORK, median_seconds
from .inputs import CtInputs
from .reads import SLICE_REPEATS, TRAINING_BATCH, build_native_store, write_slice_stack


def run(inputs: CtInputs) -> dict:
    folder = WORK / "checksums"
    native, stack = folder / "native.zarr", folder / "slices.zarr"
    build_native_store(inputs, native)
    write_slice_stack(np.load(inputs.npy, mmap_mode="r"), stack)
    plain_native = without_checksums(native, folder / "native-plain.zarr",
                                     [f"{CASES_GROUP}/ct/{image_path()}"])
    plain_stack = without_checksums(stack, folder / "slices-plain.zarr", ["image"])
    depth = inputs.shape[2]
    slices = {"checked": _slice_seconds(native, depth),
              "plain": _slice_seconds(plain_native, depth)}
    zarr_slices = {"checked": _zarr_slice_seconds(native, depth, checked=True),
                   "plain": _zarr_slice_seconds(plain_native, depth, checked=False)}
    scans = {"checked": _scan_seconds(stack), "plain": _scan_seconds(plain_stack)}
    sizes = {"native": _bytes(native) / _bytes(plain_native),
             "stack": _bytes(stack) / _bytes(plain_stack)}
    return {"slice": slices, "slice_ratio": slices["checked"] / slices["plain"],
            "zarr_slice": zarr_slices,
            "zarr_slice_ratio": zarr_slices["checked"] / zarr_slices["plain"],
            "scan": scans, "scan_ratio": scans["checked"] / scans["plain"],
            "size_ratio": sizes}


def without_checksums(store: Path, out: Path, arrays: list[str]) -> Path:
    """A copy of ``store`` whose ``arrays`` are written as before checksums: inner
    codecs ``[bytes, blosc]`` and empty chunks left out (zarr's default)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(store, out)
    root = zarr.open_group(out, mode="r+", use_consolidated=False)
    for path in arrays:
        old = root[path]
        values, parent, name = old[...], path.rpartition("/")[0], path.rpartition("/")[2]
        group = root[parent] if parent else root
        del group[name]
        new = group.create_array(name, shape=old.shape, dtype=old.dtype, chunks=old.chunks,
                                 shards=old.shards, compressors=default_compressor(),
                                 fill_value=old.fill_value,
                                 dimension_names=old.metadata.dimension_names,
                                 attributes=dict(old.attrs))
        new[...] = values
    consolidate(root)
    return out


def _slice_seconds(store: Path, depth: int) -> float:
    image = open_store(store).case("ct")["image"]  # lean reads of local stores
    rng = np.random.default_rng(0)
    return median_seconds(lambda: image[0, int(rng.integers(depth))].values, SLICE_REPEATS)


def _zarr_slice_seconds(store: Path, depth: int, checked: bool) -> float:
    local = LocalStore(store, read_only=True)
    array = zarr.open_array(CheckedStore(local, str(store)) if checked else local,
                            path=f"{CASES_GROUP}/ct/{image_path()}", mode="r")
    rng = np.random.default_rng(0)
    return median_seconds(lambda: array[0, int(rng.integers(depth))], SLICE_REPEATS)


def _scan_seconds(stack: Path) -> float:
    training = CaseDataset(stack)

    def scan():
        for _ in DataLoader(training, batch_size=TRAINING_BATCH):
            pass

    return median_seconds(scan)


def _bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.rglob("*") if p.is_file())


def markdown(results: dict) -> list[str]:
    ms = lambda seconds: f"{seconds * 1e3:.2f} ms"  # noqa: E731
    s, z, scan = results["slice"], results["zarr_slice"], results["scan"]
    size = results["size_ratio"]
    return ["## What the read checks cost", "",
            "The same data with checksums (every chunk `[bytes, blosc, crc32c]`, every "
            "chunk written; every read checks them) and re-encoded without "
            "(`[bytes, blosc]`, as before), read the same way in the same run.", "",
            "| measure | ratio (checked / before) | note |", "|---|---|---|",
            f"| random 2D slice (store.case(), lean reader) | {results['slice_ratio']:.3f} | "
            f"{ms(s['checked'])} vs {ms(s['plain'])} |",
            f"| random 2D slice, zarr-python (CheckedStore / plain store) | "
            f"{results['zarr_slice_ratio']:.3f} | {ms(z['checked'])} vs {ms(z['plain'])} |",
            f"| stack full scan (DataLoader over CaseDataset) | {results['scan_ratio']:.3f} | "
            f"{scan['checked']:.2f} s vs {scan['plain']:.2f} s |",
            f"| bytes on disk: CT store, stack store | {size['native']:.4f}, "
            f"{size['stack']:.4f} | 4 bytes of crc32c per chunk |"]


if __name__ == "__main__":
    from .inputs import make_ct_inputs

    shutil.rmtree(WORK / "checksums-inputs", ignore_errors=True)
    results = run(make_ct_inputs(WORK / "checksums-inputs"))
    print("\n".join(markdown(results)))
