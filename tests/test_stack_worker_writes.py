"""Dask workers write stack shards themselves (``stack_shards.ShardDestination``): one
task per shard harmonizes its cases and writes the shard, the build process records
them. The store is the one a single process writes, byte for byte (its content hash),
with masks or without, a failed case, shards that do not divide the cases, a case the
store refuses after its worker wrote it, and a resume."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
from fixtures import drive
from store_contents import store_contents
from test_parallel import _recipe, _stack_source

from medimg_build import open_store
from medimg_build.case import Case
from medimg_build.errors import StoreError
from medimg_build.image import MedicalImage
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store import create_store, stack
from medimg_build.store.journal import JOURNAL_DIR
from medimg_build.store.results import CaseFailed, template_record
from medimg_build.store.stack_shards import ShardCaseWritten
from medimg_build.store.validate import validate_store
from medimg_build.store.writer import reopen_store


def _no_shard_written_here(monkeypatch) -> None:
    """Only this process is patched: the workers (new processes) write with the real
    one. Today's build process wrote every shard of a parallel build."""
    def not_here(*args):
        raise AssertionError("the build process wrote a shard's pixels")

    monkeypatch.setattr(stack.StackWriter, "_write_shard", not_here)


def _content_hash(path) -> str:
    return open_store(path).attrs["manifest"]["content_sha256"]


def _contents(path) -> dict:
    """Every array and attribute; the journal a build with failed cases keeps for
    --resume is not part of the store (nor of its hash)."""
    shutil.rmtree(path / JOURNAL_DIR, ignore_errors=True)
    return store_contents(path)


def _builds_agree(recipe, source, tmp_path, monkeypatch, cluster: bool = False) -> None:
    serial, local = tmp_path / "serial.zarr", tmp_path / "local.zarr"
    expected = build_store(recipe, source, serial, workers=1, progress=False)
    with monkeypatch.context() as patched:
        _no_shard_written_here(patched)
        report = build_store(recipe, source, local, workers=2, progress=False)
    assert report.failed == expected.failed and report.built == expected.built
    reference = _contents(serial)
    assert _contents(local) == reference
    assert _content_hash(local) == _content_hash(serial)
    assert validate_store(local) == []
    if cluster:
        from distributed import LocalCluster

        remote = tmp_path / "remote.zarr"
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as c, \
                monkeypatch.context() as patched:
            _no_shard_written_here(patched)
            build_store(recipe, source, remote, scheduler=c.scheduler_address,
                        progress=False)
        assert _contents(remote) == reference
        assert _content_hash(remote) == _content_hash(serial)


def test_workers_write_shards_of_the_serial_store_with_a_failed_case(tmp_path, monkeypatch):
    """14 cases in shards of 4 (the last one short), the first case and one more
    unreadable: the arrays come from the first case that builds."""
    source = _stack_source(tmp_path / "src", 14)
    for broken in (0, 9):
        (source / "images" / f"{broken:08d}_000.png").write_bytes(b"not a png")
    recipe = _recipe(cases_per_shard=4)
    _builds_agree(recipe, source, tmp_path, monkeypatch, cluster=True)
    failed = open_store(tmp_path / "local.zarr").attrs["build_report"]["failed"]
    assert sorted(failed) == ["00000000_000", "00000009_000"]


def test_workers_write_shards_with_masks_of_the_serial_store(tmp_path, monkeypatch):
    """DRIVE: RGB images and flag masks, 5 cases in shards of 2, one case unreadable."""
    made = drive.make(tmp_path / "src")
    broken = next(iter(made["made"]))
    image = next((tmp_path / "src").rglob(f"{broken}.tif"))
    image.write_bytes(image.read_bytes()[:200])
    recipe = load_recipe("drive").with_overrides({"store": {"cases_per_shard": 2}})
    _builds_agree(recipe, tmp_path / "src", tmp_path, monkeypatch)
    store = open_store(tmp_path / "local.zarr")
    assert list(store.attrs["build_report"]["failed"]) == [broken]
    assert "mask" in store.attrs["arrays"]


# -- the writer's side: what a worker wrote, recorded or refused ------------------------
def _case(case_id: str, value: int, shape=(6, 5), mask: bool = True) -> Case:
    pixels = np.full(shape, value, dtype=np.int16)
    pixels[0, 0] = value + 1
    image = MedicalImage(pixels, np.diag([0.5, 0.7, 1.0, 1.0]), spatial_ndim=2,
                         meta={"modality": "DX"})
    masked = image.replace(array=(pixels % 2).astype(np.uint8)) if mask else None
    return Case(case_id, image, mask=masked, row={"site": "A"})


def _serial(path, cases: dict[int, Case], n: int, k: int) -> None:
    writer = create_store(path, "stack", n_cases=n, cases_per_shard=k)
    for index, case in cases.items():
        writer.write_case(index, case)
    writer.close(pd.DataFrame({"case_id": [f"c{i}" for i in range(n)]}))


def _by_workers(path, cases: dict[int, Case], n: int, k: int, refuse: set[int] = frozenset()
                ) -> dict[int, object]:
    """The cases written as workers would (one shard per call), then recorded here;
    the build process refuses the ``refuse`` ones (their labels are not ints)."""
    writer = create_store(path, "stack", n_cases=n, cases_per_shard=k)
    first = template_record(next(iter(cases.values())))
    destination = pickle.loads(pickle.dumps(writer.worker_destination(first)))
    outcome = {}
    for unit in destination.units(sorted(cases)):
        written = destination.write_cases({index: cases[index] for index in unit})
        for index, result in pickle.loads(pickle.dumps(written)).items():
            if index in refuse:
                result = result.with_record(labels={"grade": [0.5]})
            try:
                outcome[index] = writer.write_case(index, result)
            except StoreError as error:
                outcome[index] = error
    writer.close(pd.DataFrame({"case_id": [f"c{i}" for i in range(n)]}))
    return outcome


def test_a_case_refused_after_its_worker_wrote_the_shard_is_taken_out(tmp_path):
    """Shard 0 keeps c1 only; shard 1 has no case left and is absent, as when the
    build process writes the same cases and never receives the refused ones."""
    cases = {i: _case(f"c{i}", 10 * i) for i in range(5)}
    outcome = _by_workers(tmp_path / "w.zarr", cases, n=5, k=2, refuse={0, 2, 3})
    assert isinstance(outcome[1], ShardCaseWritten)
    assert "neither an int nor a 1-D int vector" in str(outcome[0])
    _serial(tmp_path / "s.zarr", {i: cases[i] for i in (1, 4)}, n=5, k=2)
    assert store_contents(tmp_path / "w.zarr") == store_contents(tmp_path / "s.zarr")
    assert not [f for f in (tmp_path / "w.zarr").rglob("c/1/*") if f.is_file()]


def test_a_case_that_does_not_fit_fails_in_its_worker_with_the_stores_words(tmp_path):
    cases = {0: _case("c0", 0), 1: _case("c1", 10, shape=(7, 5)), 2: _case("c2", 20)}
    outcome = _by_workers(tmp_path / "w.zarr", {i: cases[i] for i in (0, 2)}, n=3, k=3)
    assert all(isinstance(w, ShardCaseWritten) for w in outcome.values())
    writer = create_store(tmp_path / "d.zarr", "stack", n_cases=3, cases_per_shard=3)
    destination = writer.worker_destination(template_record(cases[0]))
    refused = destination.write_cases(cases)[1]
    assert isinstance(refused, CaseFailed)
    writer.write_case(0, cases[0])
    with pytest.raises(StoreError) as here:
        writer.write_case(1, cases[1])
    assert refused.message == str(here.value)
    assert "shape (7, 5) where the store has (6, 5)" in refused.message


def test_a_resumed_stack_writes_its_empty_chunks(tmp_path):
    """A shard rewritten by a resume keeps its all-zero chunks (an empty mask slice),
    as the uninterrupted build wrote them: the arrays reopened with their config."""
    cases = {i: _case(f"c{i}", i) for i in range(4)}
    for case in cases.values():  # no foreground: the mask's chunks are all zero
        case.mask = case.mask.replace(array=np.zeros_like(case.mask.array))
    journal = {"recipe_sha256": "r", "case_ids": [f"c{i}" for i in range(4)]}
    options = {"layout": "stack", "n_cases": 4, "cases_per_shard": 2,
               "attrs": {"recipe": {"sha256": "r"}}}
    writer = create_store(tmp_path / "s.zarr", journal=journal, **options)
    for index, case in cases.items():
        writer.write_case(index, case)
    writer.close(pd.DataFrame({"case_id": journal["case_ids"]}))
    writer = create_store(tmp_path / "r.zarr", journal=journal, **options)
    writer.write_case(0, cases[0])
    writer.write_case(1, cases[1])  # shard 0 complete
    writer.abort()
    writer = reopen_store(tmp_path / "r.zarr", journal=journal, **options)
    assert sorted(writer.recovered) == [0, 1]
    writer.write_case(2, cases[2])
    writer.write_case(3, cases[3])
    writer.close(pd.DataFrame({"case_id": journal["case_ids"]}))
    assert _content_hash(tmp_path / "r.zarr") == _content_hash(tmp_path / "s.zarr")


def test_small_cases_share_harmonizing_tasks(tmp_path, monkeypatch):
    """Each Dask task costs the build process 2-4 ms of CPU, as much as a small picture's
    harmonizing: 24 small cases in shards of 12 take a few harmonizing tasks
    (``ShardDestination.cases_per_task``), not one per case, and build the serial
    store all the same."""
    from distributed import Client, LocalCluster, get_task_stream

    source = _stack_source(tmp_path / "src", 24)
    (source / "images" / "00000005_000.png").write_bytes(b"not a png")
    recipe = _recipe(cases_per_shard=12)
    serial = tmp_path / "serial.zarr"
    build_store(recipe, source, serial, workers=1, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client, monkeypatch.context() as patched:
        _no_shard_written_here(patched)
        with get_task_stream(client) as stream:
            build_store(recipe, source, tmp_path / "remote.zarr",
                        scheduler=cluster.scheduler_address, progress=False)
    names = [task["key"].split("-")[0] if isinstance(task["key"], str) else
             task["key"][0].split("-")[0] for task in stream.data]
    grouped, single = names.count("_attempt_group"), names.count("_attempt_shared")
    # The first cases alone (a window of them, for the store's template), then the rest
    # 8 to a task: 7 tasks here, 24 before.
    assert grouped >= 2
    assert grouped + single <= 24 // 3
    assert _contents(tmp_path / "remote.zarr") == _contents(serial)
