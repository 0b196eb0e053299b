"""Red team of issue 18's stack stores written by the Dask workers: the store a
parallel build writes must be the one a single process writes, failures included."""

from __future__ import annotations

import numpy as np
from test_parallel import _recipe, _stack_source

from medimg_build import open_store
from medimg_build.recipe import parallel
from medimg_build.recipe.build import build_store


def _first_case_off_its_grid(monkeypatch) -> None:
    """Case 0 comes with a mask whose affine is not its image's, which the store
    refuses (``check_case_geometry``); the other cases have no mask. Patched in this
    process: the cluster below runs its workers here."""
    harmonize = parallel._harmonize

    def with_a_shifted_mask(source, context):
        case = harmonize(source, context)
        if source.case_id == "00000000_000":
            affine = case.image.affine.copy()
            affine[0, 3] += 1.0
            case.mask = case.image.replace(array=np.zeros(case.image.array.shape, np.uint8),
                                           affine=affine)
        return case

    monkeypatch.setattr(parallel, "_harmonize", with_a_shifted_mask)


def test_a_refused_first_case_does_not_shape_the_stack(tmp_path, monkeypatch):
    """The store's arrays are those of the first case it accepts: one process refuses
    case 0 (its mask off its grid) before making the arrays from case 1 (no mask).
    The workers made the arrays, with a mask, from case 0 as harmonized, then refused
    every other case for lacking a mask."""
    from distributed import LocalCluster

    source = _stack_source(tmp_path / "src", 5)
    recipe = _recipe(cases_per_shard=2)
    _first_case_off_its_grid(monkeypatch)
    serial = build_store(recipe, source, tmp_path / "serial.zarr", workers=1, progress=False)
    assert list(serial.failed) == ["00000000_000"]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        local = build_store(recipe, source, tmp_path / "local.zarr",
                            scheduler=cluster.scheduler_address, progress=False)
    assert list(local.failed) == list(serial.failed)  # the words name each store
    assert local.built == serial.built
    assert "mask" not in open_store(tmp_path / "local.zarr").attrs["arrays"]


def test_workers_in_another_folder_write_the_store_the_build_named(tmp_path, monkeypatch):
    """``--out out.zarr`` is relative to the build's folder, not to a worker's (a
    ``dask worker`` started elsewhere): those workers wrote their shards into the
    ``out.zarr`` of their own folder, an older store, and the build marked its own
    cases complete with no pixels."""
    from distributed import LocalCluster

    source = _stack_source(tmp_path / "src", 4)
    recipe = _recipe(cases_per_shard=2)
    (tmp_path / "workers").mkdir()
    (tmp_path / "build").mkdir()
    monkeypatch.chdir(tmp_path / "workers")
    build_store(recipe, source, "out.zarr", workers=1, progress=False)  # the older store
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        monkeypatch.chdir(tmp_path / "build")
        build_store(recipe, source, "serial.zarr", workers=1, progress=False)
        assert build_store(recipe, source, "out.zarr", scheduler=cluster.scheduler_address,
                           progress=False).ok
    built, serial = open_store(tmp_path / "build" / "out.zarr"), open_store(
        tmp_path / "build" / "serial.zarr")
    assert built.attrs["manifest"]["content_sha256"] == \
        serial.attrs["manifest"]["content_sha256"]
