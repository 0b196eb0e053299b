"""Reads, against the formats people read from today and against the floors:

* one random 2D slice of the CT on its native grid: our store (xarray, and the zarr
  array alone) vs nibabel from the .nii.gz vs np.load(mmap_mode="r") from a .npy, and
  vs the floor of a compressed slice: Blosc decoding that very chunk's bytes;
* the whole case: ``read_image`` vs nibabel vs np.load;
* a full scan of a stack store of 2D slices as a training loop reads it (PyTorch's
  DataLoader over our CaseDataset, in whole batches of ``CaseDataset.batches``, and
  with the default collation of items), and case by case through xarray, vs the
  decompression floor: Blosc alone on the very same chunk bytes;
* one slice from S3 (a moto server on 127.0.0.1), with its GET count after open."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import nibabel as nib
import numpy as np
import pandas as pd
import zarr
from numcodecs import Blosc
from torch.utils.data import DataLoader
from xarray.core import indexing
from zarr.codecs import Crc32cCodec

from medimg_build import open_store
from medimg_build.case import Case
from medimg_build.image import MedicalImage
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store import create_store
from medimg_build.store.chunk_reads import (
    CRC32C_BYTES, NO_CHUNK, index_entries, index_size, local_shard_array,
)
from medimg_build.store.integrity import CheckedStore
from medimg_build.store.reader import zarr_store
from medimg_build.store.schema import CASES_GROUP, image_path
from medimg_build.training import CaseDataset

from .common import REPEATS, WORK, median_seconds
from .inputs import CtInputs

SLICE_REPEATS = 50
TRAINING_BATCH = 64


def build_native_store(inputs: CtInputs, out) -> None:
    """The CT losslessly on its native grid (RAS, int16 HU, no resampling)."""
    recipe = load_recipe("volume-folder").with_overrides(
        {"labels": None, "harmonize": {"spacing": None}})
    report = build_store(recipe, inputs.nifti.parent.parent, out, overwrite=True,
                         progress=False)
    if not report.ok:
        raise RuntimeError(f"benchmark build failed: {report.failed}")


def run(inputs: CtInputs) -> dict:
    native = WORK / "reads" / "native.zarr"
    build_native_store(inputs, native)
    stack = WORK / "reads" / "slices.zarr"
    write_slice_stack(np.load(inputs.npy, mmap_mode="r"), stack)
    return {"slice": _slice_reads(inputs, native), "whole_case": _whole_case(inputs, native),
            "stack_scan": _stack_scan(stack), "s3": _s3_slice(native)}


def _slice_reads(inputs: CtInputs, native) -> dict:
    depth = inputs.shape[2]
    rng = np.random.default_rng(0)
    image = open_store(native).case("ct")["image"]  # opened once, as a training loop would
    folder = native / CASES_GROUP / "ct" / image_path()
    array = zarr.open_array(folder, mode="r")
    # The store's own chunk reader under that DataArray, as open_store opens it: what
    # a slice costs without xarray's indexing of a labelled array.
    checked = CheckedStore(zarr_store(str(native)), str(native))
    lean = local_shard_array(zarr.open_group(checked, mode="r")[f"{CASES_GROUP}/ct/{image_path()}"])
    chunks = list(compressed_chunks(array, folder))  # one shard: chunk z is slice z
    assert len(chunks) == depth
    mmap = np.load(inputs.npy, mmap_mode="r")
    blosc = Blosc()
    draws = rng.integers(depth, size=SLICE_REPEATS).tolist()
    # Each draw's slice read by every reader in turn, then the medians: interleaved, so
    # that a load from elsewhere on the machine falls on all of them alike.
    seconds = interleaved_medians({
        "ours": lambda z: image[0, z].values,
        "blosc_chunk": lambda z: blosc.decode(chunks[z]),
        "reader_alone": lambda z: lean[indexing.BasicIndexer((0, z, slice(None), slice(None)))],
        "zarr": lambda z: array[0, z],
        "npy_mmap": lambda z: np.array(mmap[z])}, draws)
    seconds["nibabel"] = median_seconds(
        lambda: np.asanyarray(nib.load(inputs.nifti).dataobj[:, :, int(rng.integers(depth))]),
        REPEATS)
    return {"seconds": seconds, "nibabel_over_ours": seconds["nibabel"] / seconds["ours"],
            "ours_over_blosc": seconds["ours"] / seconds["blosc_chunk"],
            "reader_alone_over_blosc": seconds["reader_alone"] / seconds["blosc_chunk"],
            "ours_over_npy": seconds["ours"] / seconds["npy_mmap"],
            "zarr_over_npy": seconds["zarr"] / seconds["npy_mmap"]}


def interleaved_medians(readers: dict[str, Callable], arguments: list) -> dict[str, float]:
    """The median seconds of each reader over ``arguments``, the readers taking turns on
    each argument."""
    times: dict[str, list[float]] = {name: [] for name in readers}
    for argument in arguments:
        for name, read in readers.items():
            started = time.perf_counter()
            read(argument)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def _whole_case(inputs: CtInputs, native) -> dict:
    store = open_store(native)
    seconds = {"ours": median_seconds(lambda: store.read_image("ct")),
               "nibabel": median_seconds(lambda: np.asanyarray(nib.load(inputs.nifti).dataobj)),
               "npy": median_seconds(lambda: np.load(inputs.npy))}
    return {"seconds": seconds, "nibabel_over_ours": seconds["nibabel"] / seconds["ours"],
            "ours_over_npy": seconds["ours"] / seconds["npy"]}


# -- stack full scan ---------------------------------------------------------------------
def write_slice_stack(volume_zyx: np.ndarray, out) -> None:
    """Every axial slice of the CT as one 2D case of a stack store (a 2D training set
    of 512x512 int16 images), written by our store writer with its default codec."""
    n = volume_zyx.shape[0]
    writer = create_store(out, "stack", n_cases=n, overwrite=True,
                          attrs={"dataset": "ct-slices", "modality": "CT", "organ": "abdomen"})
    for z in range(n):
        pixels = np.asfortranarray(volume_zyx[z].T)  # (i, j) Fortran: stored (y, x)
        writer.write_case(z, Case(f"slice{z:04d}", MedicalImage(pixels, np.eye(4),
                                                                 spatial_ndim=2)))
    writer.close(pd.DataFrame({"case_id": [f"slice{z:04d}" for z in range(n)]}))


def _stack_scan(stack) -> dict:
    dataset = open_store(stack).dataset()
    array = zarr.open_array(stack / "image", mode="r")

    training = CaseDataset(stack)

    def scan_training():  # the training adapter in a DataLoader, whole batches of 64
        for _ in DataLoader(training, batch_size=None, sampler=training.batches(TRAINING_BATCH)):
            pass

    def scan_training_items():  # the same, items collated by the DataLoader
        for _ in DataLoader(training, batch_size=TRAINING_BATCH):
            pass

    def scan_xarray():
        for index in range(array.shape[0]):
            _ = dataset["image"][index].values

    def scan_zarr():
        for index in range(array.shape[0]):
            array[index]

    def scan_by_shard():  # a loader that fetches a shard's cases in one call
        step = array.shards[0]
        for start in range(0, array.shape[0], step):
            array[start:start + step]

    seconds = interleaved_medians({
        "ours": lambda _: scan_training(), "ours_items": lambda _: scan_training_items(),
        "xarray": lambda _: scan_xarray(), "zarr": lambda _: scan_zarr(),
        "zarr_by_shard": lambda _: scan_by_shard(),
        "blosc_floor": lambda _: blosc_floor(array, stack / "image")}, range(REPEATS))
    floor = seconds["blosc_floor"]
    return {"cases": int(array.shape[0]), "case_shape": list(array.shape[1:]),
            "cases_per_shard": int(array.shards[0]), "seconds": seconds,
            "ours_over_floor": seconds["ours"] / floor,
            "ours_items_over_floor": seconds["ours_items"] / floor,
            "xarray_over_floor": seconds["xarray"] / floor,
            "zarr_over_floor": seconds["zarr"] / floor,
            "zarr_by_shard_over_floor": seconds["zarr_by_shard"] / floor}


def blosc_floor(array: zarr.Array, folder) -> int:
    """Read every shard file and Blosc-decode each chunk in it: the bytes our reads
    decode, with nothing else (no Zarr, no checksums, no copy into an array).
    Returns the number of chunks decoded."""
    blosc = Blosc()
    return sum(1 for chunk in compressed_chunks(array, folder) if blosc.decode(chunk))


def compressed_chunks(array: zarr.Array, folder) -> Iterator[bytes]:
    """The Blosc frame of every written chunk (without its crc32c), shard file by shard
    file (in key order), in each shard's index order."""
    per_shard = int(np.prod([s // c for s, c in zip(array.shards, array.chunks)]))
    # A chunk's last bytes are its crc32c (stores with checksums): not Blosc's.
    crc = CRC32C_BYTES if isinstance(array.metadata.codecs[0].codecs[-1], Crc32cCodec) else 0
    for path in sorted(p for p in folder.joinpath("c").rglob("*") if p.is_file()):
        data = path.read_bytes()
        for offset, length in index_entries(data[-index_size(per_shard):]).tolist():
            if offset != NO_CHUNK:
                yield data[offset:offset + length - crc]


# -- S3 ----------------------------------------------------------------------------------
@contextmanager
def moto_s3(bucket: str = "bench") -> Iterator[tuple[object, dict] | None]:
    """A moto S3 server on 127.0.0.1 with an empty ``bucket``: (an s3fs filesystem,
    its storage_options), or None when s3fs or moto is not installed."""
    try:
        import s3fs
        from moto.server import ThreadedMotoServer
    except ImportError:
        yield None
        return
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = {"key": "bench", "secret": "bench",
                   "client_kwargs": {"endpoint_url": f"http://{host}:{port}",
                                     "region_name": "us-east-1"}}
        fs = s3fs.S3FileSystem(**options)
        fs.call_s3("create_bucket", Bucket=bucket)
        yield fs, options
    finally:
        server.stop()


MISSING_S3 = {"error": "s3fs or moto is not installed"}


def _s3_slice(native) -> dict:
    with moto_s3() as s3:
        if s3 is None:
            return MISSING_S3
        fs, options = s3
        fs.put(str(native), "bench/native.zarr", recursive=True)
        image = open_store("s3://bench/native.zarr", storage_options=options).case("ct")["image"]
        depth = image.shape[1]
        with _counted_gets(type(fs)) as gets:
            _ = image[0, depth // 2].values
        rng = np.random.default_rng(1)
        seconds = median_seconds(lambda: image[0, int(rng.integers(depth))].values,
                                 SLICE_REPEATS // 5)
    return {"gets_after_open": len(gets), "seconds": seconds}


class _counted_gets:
    """Counts s3fs get_object calls (every request goes through ``_call_s3``)."""

    def __init__(self, filesystem_class) -> None:
        self.cls = filesystem_class
        self.calls: list[str] = []

    def __enter__(self) -> list[str]:
        self.original = original = self.cls._call_s3
        calls = self.calls

        async def counting(fs, method, *args, **kwargs):
            if method == "get_object":
                calls.append(kwargs.get("Range", ""))
            return await original(fs, method, *args, **kwargs)

        self.cls._call_s3 = counting
        return calls

    def __exit__(self, *exc) -> None:
        self.cls._call_s3 = self.original


def markdown(results: dict) -> list[str]:
    s, w, scan, s3 = (results["slice"], results["whole_case"], results["stack_scan"],
                      results["s3"])
    ms = {k: v * 1e3 for k, v in s["seconds"].items()}
    lines = ["## Reads", "",
             "The CT on its native grid (lossless int16); a 2D stack store of its axial "
             f"slices ({scan['cases']} cases of {tuple(scan['case_shape'][1:])}).", "",
             "| measure | ratio | note |", "|---|---|---|",
             f"| random 2D slice: nibabel .nii.gz / ours (xarray) | "
             f"{s['nibabel_over_ours']:.0f} | {ms['nibabel']:.1f} ms vs {ms['ours']:.2f} ms |",
             f"| random 2D slice: ours (xarray) / Blosc decode of its own chunk | "
             f"{s['ours_over_blosc']:.2f} | Blosc {ms['blosc_chunk']:.3f} ms: the floor of a "
             "compressed slice |",
             f"| random 2D slice: the store's chunk reader alone (no xarray) / Blosc decode of "
             f"its own chunk | {s['reader_alone_over_blosc']:.2f} | {ms['reader_alone']:.3f} ms "
             "(store/chunk_reads.py) |",
             f"| random 2D slice: ours (xarray) / .npy mmap | {s['ours_over_npy']:.1f} | "
             f".npy {ms['npy_mmap']:.3f} ms |",
             f"| random 2D slice: zarr array alone / .npy mmap | {s['zarr_over_npy']:.1f} | "
             f"{ms['zarr']:.2f} ms: shard index + one chunk decoded, no xarray/dask |",
             f"| whole case: nibabel .nii.gz / ours (read_image) | "
             f"{w['nibabel_over_ours']:.1f} | {w['seconds']['ours'] * 1e3:.0f} ms vs "
             f"{w['seconds']['nibabel'] * 1e3:.0f} ms |",
             f"| whole case: ours / np.load .npy | {w['ours_over_npy']:.1f} | "
             f".npy {w['seconds']['npy'] * 1e3:.0f} ms |",
             f"| stack full scan: ours (DataLoader over CaseDataset.batches({TRAINING_BATCH}), "
             f"whole batches) / Blosc floor | {scan['ours_over_floor']:.2f} | "
             f"{scan['seconds']['ours']:.2f} s vs {scan['seconds']['blosc_floor']:.2f} s |",
             f"| stack full scan: DataLoader(CaseDataset, batch_size={TRAINING_BATCH}), items "
             f"collated / Blosc floor | {scan['ours_items_over_floor']:.2f} | "
             f"{scan['seconds']['ours_items']:.2f} s: torch.stack copies each batch |",
             f"| stack full scan: xarray, case by case / Blosc floor | "
             f"{scan['xarray_over_floor']:.2f} | {scan['seconds']['xarray']:.2f} s |",
             f"| stack full scan: zarr array alone / Blosc floor | "
             f"{scan['zarr_over_floor']:.2f} | {scan['seconds']['zarr']:.2f} s |",
             f"| stack full scan: zarr, one shard ({scan['cases_per_shard']} cases) per "
             f"call / Blosc floor | {scan['zarr_by_shard_over_floor']:.2f} | "
             f"{scan['seconds']['zarr_by_shard']:.2f} s |"]
    if "error" in s3:
        lines.append(f"| S3 slice read | not run | {s3['error']} |")
    else:
        lines.append(f"| S3 (moto) slice read: GET requests after open | "
                     f"{s3['gets_after_open']} | {s3['seconds'] * 1e3:.1f} ms per slice |")
    return lines
