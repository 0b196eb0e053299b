"""Two small stores built once per test session from the real reference data, for the
tests that read stores rather than build them (remote reads, training adapter)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from medimg_build import build_store, load_recipe
from fixtures import nih_chestxray14

CASES_PER_SHARD = 3  # the stack store's shards: several, the last one partly filled


@dataclass(frozen=True)
class ReferenceStores:
    root: Path
    ct: Path  # volumes: the real TotalSegmentator CT and its segmentation, native grid
    xray: Path  # stack: the ChestX-ray14 fixture (the real NIH images among them)


def build_reference_stores(root: Path, shared_data: Path) -> ReferenceStores:
    source = root / "ct"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    shutil.copy(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz",
                source / "images" / "ct.nii.gz")
    shutil.copy(shared_data / "totalsegmentator" / "example_seg.nii.gz",
                source / "labels" / "ct.nii.gz")
    seg = np.asanyarray(nib.load(source / "labels" / "ct.nii.gz").dataobj)
    classes = {str(int(v)): f"structure_{int(v)}" for v in np.unique(seg)}
    volumes = load_recipe("volume-folder").with_overrides(
        {"labels": {"segmentation": {"classes": classes}}, "harmonize": {"spacing": None}})
    assert build_store(volumes, source, root / "ct.zarr", progress=False).ok

    nih_chestxray14.make(root / "nih", shared_data)
    stack = load_recipe("nih-chestxray14").with_overrides(
        {"store": {"cases_per_shard": CASES_PER_SHARD}})
    assert build_store(stack, root / "nih", root / "nih.zarr", progress=False).ok
    return ReferenceStores(root, root / "ct.zarr", root / "nih.zarr")
