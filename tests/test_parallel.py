"""Parallel builds: the same store from 1 process, 2 local Dask workers and a running
distributed cluster; few files however many cases."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store
from store_contents import store_contents


def _stack_source(root: Path, n: int, size=(12, 10)) -> Path:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        name = f"{i:08d}_000.png"
        Image.fromarray(rng.integers(0, 255, size).astype(np.uint8)).save(root / "images" / name)
        rows.append([name, "Mass|Effusion" if i % 4 == 0 else "No Finding", 0, i // 2])
    with open(root / "Data_Entry_2017.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Image Index", "Finding Labels", "Follow-up #", "Patient ID"])
        writer.writerows(rows)
    (root / "test_list.txt").write_text("")
    (root / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
    return root


def _recipe(cases_per_shard: int | None = None):
    overrides = {"source": {"columns": None}, "harmonize": {"shape": [16, 16]}}
    if cases_per_shard:
        overrides["store"] = {"cases_per_shard": cases_per_shard}
    return load_recipe("nih-chestxray14").with_overrides(overrides)


def test_one_process_two_workers_and_a_cluster_build_the_same_store(tmp_path):
    from distributed import LocalCluster

    source = _stack_source(tmp_path / "src", 14)
    recipe = _recipe(cases_per_shard=4)  # several shards, written out of order
    serial, local, remote = (tmp_path / f"{n}.zarr" for n in ("serial", "local", "remote"))
    assert build_store(recipe, source, serial, workers=1, progress=False).ok
    assert build_store(recipe, source, local, workers=2, progress=False).ok
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        assert build_store(recipe, source, remote, scheduler=cluster.scheduler_address,
                           progress=False).ok
    reference = store_contents(serial)
    assert store_contents(local) == reference
    assert store_contents(remote) == reference
    assert validate_store(local) == []


def test_a_thousand_case_2d_store_is_under_a_hundred_files(tmp_path):
    source = _stack_source(tmp_path / "src", 1000, size=(8, 8))
    out = tmp_path / "many.zarr"
    assert build_store(_recipe(), source, out, progress=False).ok
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) < 100, len(files)
