"""CT build against the baselines (baselines.py) on the same real-size CT, as .nii.gz and
as a DICOM series: read, RAS, 1.5 mm, CT window (int16 HU), write.

Besides the times, each baseline's output is compared with our store's voxels, so that
"same work" is checked rather than claimed."""

from __future__ import annotations

import functools
import shutil

import numpy as np

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

from . import baselines
from .common import WORK, median_seconds
from .inputs import CtInputs


def build_ours(source_dir, out) -> None:
    recipe = load_recipe("volume-folder").with_overrides({"labels": None})
    report = build_store(recipe, source_dir, out, overwrite=True, progress=False)
    if not report.ok:
        raise RuntimeError(f"benchmark build failed: {report.failed}")


class FreshStores:
    """A new store path for each timed build (``--overwrite`` deleting the last one
    is no part of the work the baselines do); ``last`` is the latest store."""

    def __init__(self, folder) -> None:
        self.folder, self.count = folder, 0
        shutil.rmtree(folder, ignore_errors=True)

    def next(self):
        self.count += 1
        return self.last

    @property
    def last(self):
        return self.folder / f"build{self.count}.zarr"


def run(inputs: CtInputs) -> dict:
    return {"input": f"{inputs.origin}, {inputs.shape} int16",
            "sources": {"nifti": _one_source(inputs.nifti, inputs.nifti.parent.parent),
                        "dicom": _one_source(inputs.dicom, inputs.dicom.parent.parent)}}


def _one_source(source, source_dir) -> dict:
    stores = FreshStores(WORK / "build" / source_dir.name)
    saved = WORK / "build" / "baseline.npy"
    seconds = {"decode": median_seconds(lambda: baselines.decode_only(source)),
               "ours": median_seconds(lambda: build_ours(source_dir, stores.next()))}
    ours = open_store(stores.last).read_image("ct").array
    agreement = {}
    for name, pipeline in [("monai", baselines.monai_pipeline),
                           ("nnunet_order3", lambda s, o: baselines.nnunet_style(s, o, 3)),
                           ("nnunet_order1", lambda s, o: baselines.nnunet_style(s, o, 1))]:
        seconds[name] = median_seconds(functools.partial(pipeline, source, saved))
        agreement[name] = compare_voxels(np.load(saved), ours)  # the last run's output
    return {"seconds": seconds, "shape": list(ours.shape), "agreement": agreement,
            "monai_over_ours": seconds["monai"] / seconds["ours"],
            "nnunet_order3_over_ours": seconds["nnunet_order3"] / seconds["ours"],
            "nnunet_order1_over_ours": seconds["nnunet_order1"] / seconds["ours"],
            "ours_over_decode": seconds["ours"] / seconds["decode"]}


def compare_voxels(theirs: np.ndarray, ours: np.ndarray) -> dict:
    """Shape of the baseline's output and the largest |difference| in HU on the voxels
    both grids share (same origin and spacing: the common corner block), without the
    last plane of each axis: its centres may lie past the last source voxel, where each
    tool extrapolates its own way (ITK: nearest voxel; scipy, MONAI: edge padding)."""
    common = tuple(slice(0, min(a, b) - 1) for a, b in zip(theirs.shape, ours.shape))
    difference = np.abs(theirs[common].astype(np.int32) - ours[common])
    return {"shape": list(theirs.shape), "max_abs_hu": int(difference.max()),
            "mean_abs_hu": float(difference.mean())}


def markdown(results: dict) -> list[str]:
    lines = ["## CT build: ours against today's pipelines", "",
             f"Input: {results['input']}, as .nii.gz (LAS, like dcm2niix) and as a DICOM "
             "series (uncompressed, one file per slice). Work: read, RAS, 1.5 mm "
             "(linear), CT window [-1024, 3071], int16, write (our Zarr store; the "
             "baselines np.save).", "",
             "| source | MONAI / ours | nnU-Net-style (order 3) / ours | "
             "nnU-Net-style (order 1) / ours | ours / decode floor | seconds: ours, "
             "MONAI, decode |", "|---|---|---|---|---|---|"]
    for name, row in results["sources"].items():
        s = row["seconds"]
        lines.append(f"| {name} | {row['monai_over_ours']:.2f} | "
                     f"{row['nnunet_order3_over_ours']:.2f} | "
                     f"{row['nnunet_order1_over_ours']:.2f} | {row['ours_over_decode']:.2f} | "
                     f"{s['ours']:.2f}, {s['monai']:.2f}, {s['decode']:.2f} |")
    lines += ["", "Same work, checked on the outputs (NIfTI source; our grid "
              f"{tuple(results['sources']['nifti']['shape'])}):", ""]
    for name, agreement in results["sources"]["nifti"]["agreement"].items():
        lines.append(f"- {name}: grid {tuple(agreement['shape'])}, max |difference| "
                     f"{agreement['max_abs_hu']} HU, mean {agreement['mean_abs_hu']:.3f} HU")
    lines += ["", "MONAI's Spacing keeps our origin and spacing but counts voxels by its own "
              "rule (one more or one fewer along an axis); the nnU-Net-style "
              "scipy resampling uses our grid exactly. Order 3 is what nnU-Net runs (more "
              "work than our linear); order 1 is the same interpolation as ours. The "
              "DICOM floor is a pydicom dcmread loop over uncompressed slices; the NIfTI "
              "floor is nibabel's gzip decode."]
    return lines
