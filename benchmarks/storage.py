"""Bytes on disk against the sources, and the codecs compared on the same arrays.

Stores: the CT losslessly on its native grid (int16 HU) and normalized (z-score, float32
and float16), all on the native grid so that every byte count describes the same voxels.
Codecs: each candidate writes the store's own chunking (2D-slice chunks in one shard)
of a slab of the middle slices of the three arrays (the whole volume would take minutes
at zstd-9); ratio = raw bytes / bytes on disk, speeds in MB/s of raw data, from the
fastest of the repeats (codec speed is CPU-bound: the least disturbed run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.schema import CASES_GROUP, default_compressor, image_path

from .common import REPEATS, WORK, fastest_seconds
from .inputs import CtInputs
from .reads import build_native_store

CODECS = {
    "blosc-zstd-1 bitshuffle": BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle"),
    "blosc-zstd-3 bitshuffle": BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
    "blosc-zstd-5 bitshuffle": BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"),
    "blosc-zstd-9 bitshuffle": BloscCodec(cname="zstd", clevel=9, shuffle="bitshuffle"),
    "blosc-zstd-1 shuffle": BloscCodec(cname="zstd", clevel=1, shuffle="shuffle"),
    "blosc-zstd-3 shuffle": BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
    "blosc-zstd-5 shuffle": BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),
    "blosc-lz4-5 bitshuffle": BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
    "blosc-lz4-5 shuffle": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    "zstd-3 (no blosc)": ZstdCodec(level=3),
}


SLAB = 32  # slices
CODEC_REPEATS = max(3, REPEATS)


def middle_slices(array: np.ndarray, n: int) -> np.ndarray:
    """``n`` slices around the middle of a stored (channel, z, y, x) array."""
    start = max(0, (array.shape[1] - n) // 2)
    return array[:, start:start + n]


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def run(inputs: CtInputs) -> dict:
    stores = _built_stores(inputs)
    sources = {"nifti": inputs.nifti.stat().st_size, "dicom": folder_bytes(inputs.dicom)}
    sizes = {}
    arrays = {}
    for name, path in stores.items():
        image = path / CASES_GROUP / "ct" / image_path()
        arrays[name] = zarr.open_array(image, mode="r")[...]
        sizes[name] = {"store": folder_bytes(path), "image": folder_bytes(image),
                       "raw": int(arrays[name].nbytes)}
    slabs = {name: middle_slices(array, SLAB) for name, array in arrays.items()}
    codecs = {name: _codec_row(codec, slabs) for name, codec in CODECS.items()}
    default = _codec_name(default_compressor())
    return {"sources": sources, "stores": sizes, "codecs": codecs, "default": default,
            "choice": pick_default(codecs, default)}


def _built_stores(inputs: CtInputs) -> dict[str, Path]:
    folder = WORK / "storage"
    stores = {"int16 HU (lossless)": folder / "native.zarr"}
    build_native_store(inputs, stores["int16 HU (lossless)"])
    for dtype in ("float32", "float16"):
        out = stores[f"{dtype} z-score"] = folder / f"{dtype}.zarr"
        recipe = load_recipe("volume-folder").with_overrides(
            {"labels": None, "harmonize": {"spacing": None,
                                           "intensity": {"preset": "mr", "dtype": dtype}}})
        build_store(recipe, inputs.nifti.parent.parent, out, overwrite=True, progress=False)
        open_store(out).read_image("ct")  # built whole, or fail here
    return stores


def _codec_row(codec, arrays: dict[str, np.ndarray]) -> dict:
    return {name: _codec_speed(codec, name, data, WORK / "storage" / "codec.zarr")
            for name, data in arrays.items()}


def _codec_speed(codec, name: str, data: np.ndarray, out: Path) -> dict:
    """Ratio and write/read speed of ``codec`` on ``data`` in the store's chunking."""
    written = {}

    def write():
        shutil.rmtree(out, ignore_errors=True)
        written["array"] = array = zarr.create_array(
            out, shape=data.shape, dtype=data.dtype, chunks=(1, 1) + data.shape[2:],
            shards=data.shape, compressors=codec, zarr_format=3)
        array[...] = data

    write_seconds = fastest_seconds(write, CODEC_REPEATS)
    read_seconds = fastest_seconds(lambda: written["array"][...], CODEC_REPEATS)
    if not np.array_equal(written["array"][...], data):
        raise RuntimeError(f"codec {codec} did not round-trip {name}")
    megabytes = data.nbytes / 1e6
    return {"ratio": data.nbytes / folder_bytes(out), "write_mb_s": megabytes / write_seconds,
            "read_mb_s": megabytes / read_seconds}


def pick_default(codecs: dict[str, dict], current: str) -> str:
    """The smallest lossless CT among codecs that write and read it at least 90% as
    fast as the ``current`` default: a new default must cost no build time and no
    training time, and then fewer bytes win. Blosc-lz4 writes several times faster
    but stores ~25% more, and the codec is a minor share of a build (profile)."""
    ct = {name: row["int16 HU (lossless)"] for name, row in codecs.items()}
    now = ct[current]
    eligible = [name for name, r in ct.items() if r["write_mb_s"] >= 0.9 * now["write_mb_s"]
                and r["read_mb_s"] >= 0.9 * now["read_mb_s"]]
    return max(eligible, key=lambda name: ct[name]["ratio"])


def _codec_name(codec) -> str:
    for name, candidate in CODECS.items():
        if candidate.to_dict() == codec.to_dict():
            return name
    return str(codec)


def markdown(results: dict) -> list[str]:
    nifti, dicom = results["sources"]["nifti"], results["sources"]["dicom"]
    lines = ["## Storage", "",
             f"Sources: .nii.gz {nifti / 1e6:.1f} MB, DICOM series {dicom / 1e6:.1f} MB "
             "(uncompressed). Stores on the CT's native grid, default codec "
             f"({results['default']}).", "",
             "| store | whole store / .nii.gz | whole store / DICOM | image MB | "
             "image ratio (raw / disk) |", "|---|---|---|---|---|"]
    for name, size in results["stores"].items():
        lines.append(f"| {name} | {size['store'] / nifti:.2f} | {size['store'] / dicom:.3f} | "
                     f"{size['image'] / 1e6:.1f} | {size['raw'] / size['image']:.2f} |")
    names = list(next(iter(results["codecs"].values())))
    lines += ["", f"Codecs on the same arrays ({SLAB} middle slices; 2D-slice chunks, one "
              "shard), ratio / write MB/s / read MB/s:", "",
              "| codec | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for codec, row in results["codecs"].items():
        cells = [f"{row[n]['ratio']:.2f} / {row[n]['write_mb_s']:.0f} / "
                 f"{row[n]['read_mb_s']:.0f}" for n in names]
        lines.append(f"| {codec} | " + " | ".join(cells) + " |")
    lines += ["", f"Picked by the numbers (the smallest lossless CT among codecs that "
              f"write and read it at >= 90% of the default's speed): "
              f"**{results['choice']}**; the store's default is {results['default']}."]
    return lines
