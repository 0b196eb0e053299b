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
