"""CT build and slice reads, as ratios against baselines measured in the same run.

The input is the real TotalSegmentator CT in ../shared/data resampled to a clinical
512x512x200 grid (a synthetic volume when the data is absent)."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import zarr

from medimg_build import open_store, read_image
from medimg_build.harmonize import resample_to_spacing
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

from .common import WORK, median_seconds, shared_data


def _input_volume() -> tuple[np.ndarray, np.ndarray, str]:
    """A 512x512x200 int16 CT: the real TotalSegmentator CT resampled to a clinical grid
    (sub-mm in-plane, ~1.7 mm slices) so that it looks and compresses like a real one."""
    shared = shared_data()
    ct = shared / "totalsegmentator" / "example_ct.nii.gz" if shared else None
    if ct is None or not ct.exists():
        rng = np.random.default_rng(0)
        data = rng.normal(0, 300, size=(512, 512, 200)).astype(np.int16)
        return data, np.diag([-0.7, -0.7, 1.7, 1.0]), "synthetic noise (no shared data)"
    image = read_image(ct)
    extent = np.array(image.spatial_shape) * np.array(image.spacing)
    target = extent / np.array([512, 512, 200])
    fine = resample_to_spacing(image, target, "linear")
    data = np.rint(fine.array).astype(np.int16)
    return data, fine.affine, f"real TotalSegmentator CT resampled to {np.round(target, 3)} mm"


def run() -> dict:
    shutil.rmtree(WORK, ignore_errors=True)
    source = WORK / "source"
    (source / "images").mkdir(parents=True)
    data, affine, origin = _input_volume()
    nifti = source / "images" / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), nifti)
    np.save(WORK / "ct.npy", np.ascontiguousarray(data.T))  # (z, y, x) like the store

    recipe = load_recipe("volume-folder").with_overrides({"labels": None})
    out = WORK / "ct.zarr"
    decode = median_seconds(lambda: np.asanyarray(nib.load(nifti).dataobj))
    ours = median_seconds(lambda: build_store(recipe, source, out, overwrite=True,
                                               progress=False))
    store = open_store(out)
    depth = store.read_image("ct").array.shape[2]
    rng = np.random.default_rng(0)

    image = store.case("ct")["image"]  # opened once, as a training loop would

    def slice_ours():
        z = int(rng.integers(depth))
        image[0, z].values

    def slice_nibabel():
        z = int(rng.integers(data.shape[2]))
        np.asanyarray(nib.load(nifti).dataobj[:, :, z])

    array = zarr.open_array(out / "cases" / "ct" / "image", mode="r")  # no xarray, no dask

    def slice_zarr():
        z = int(rng.integers(depth))
        array[0, z]

    mmap = np.load(WORK / "ct.npy", mmap_mode="r")

    def slice_npy():
        z = int(rng.integers(data.shape[2]))
        np.array(mmap[z])

    read_ours = median_seconds(slice_ours, 50)
    read_nib = median_seconds(slice_nibabel, 5)
    read_npy = median_seconds(slice_npy, 50)
    read_zarr = median_seconds(slice_zarr, 50)
    results = {
        "input": f"{origin}, {data.shape} int16 .nii.gz",
        "build_seconds_median": ours,
        "decode_only_seconds_median": decode,
        "build_over_decode_floor": ours / decode,
        "slice_nibabel_over_ours": read_nib / read_ours,
        "slice_ours_over_npy_mmap": read_ours / read_npy,
        "slice_zarr_over_npy_mmap": read_zarr / read_npy,
        "slice_seconds": {"ours": read_ours, "zarr": read_zarr, "nibabel": read_nib,
                          "npy_mmap": read_npy},
    }
    return results


def markdown(results: dict) -> list[str]:
    seconds = results["slice_seconds"]
    return ["## CT build and slice reads", "", f"Input: {results['input']}", "",
            "| measure | ratio | note |", "|---|---|---|",
            f"| build (read, RAS, 1.5 mm, CT window, write) / decode-only floor | "
            f"{results['build_over_decode_floor']:.2f} | {results['build_seconds_median']:.2f} s "
            f"vs {results['decode_only_seconds_median']:.2f} s |",
            f"| random 2D slice: nibabel .nii.gz / ours (xarray) | "
            f"{results['slice_nibabel_over_ours']:.0f} | {seconds['nibabel'] * 1e3:.1f} ms vs "
            f"{seconds['ours'] * 1e3:.2f} ms |",
            f"| random 2D slice: ours (xarray) / .npy mmap | "
            f"{results['slice_ours_over_npy_mmap']:.1f} | {seconds['npy_mmap'] * 1e3:.3f} ms "
            f"for .npy |",
            f"| random 2D slice: zarr array alone / .npy mmap | "
            f"{results['slice_zarr_over_npy_mmap']:.1f} | {seconds['zarr'] * 1e3:.2f} ms: "
            f"decode of one chunk + shard index, without xarray/dask |"]

