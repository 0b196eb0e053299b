"""Builds that must never lose or mix data: --overwrite builds beside the old store and
swaps it in only at a successful close; HDF5 builds are locked; --resume rebuilds
cases whose sources changed, drops half-written files, starts a build killed right
after it took its lock; a Dask worker that dies fails only its own case."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import nibabel as nib
import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.errors import StoreError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store import create_store
from medimg_build.failpoints import KILL_AT, KILL_WORKER_ON, STOP_AT
from medimg_build.store.journal import JOURNAL_DIR, LOCK_NAME
from medimg_build.store.validate import validate_store
from store_contents import store_contents
from test_resume import AFFINE, _args, _stack_source, _volume_source

OTHER_SPACING = "[2,2,2]"  # a second recipe: the rebuild differs from the old store


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    return {"volumes": _volume_source(root / "nifti"), "stack": _stack_source(root / "png")}


@pytest.fixture(scope="module")
def references(sources, tmp_path_factory):
    """Uninterrupted builds: (kind, spacing) -> store."""
    root = tmp_path_factory.mktemp("references")
    built = {}
    for kind in sources:
        built[kind] = root / f"{kind}.zarr"
        assert main(_args(kind, sources[kind], built[kind])) == 0
    built["volumes-other"] = root / "volumes-other.zarr"
    assert main(_other(_args("volumes", sources["volumes"], built["volumes-other"]))) == 0
    return built


def _other(args: list[str]) -> list[str]:
    return [a.replace("[1.5,1.5,2.0]", OTHER_SPACING) for a in args]


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "medimg_build.cli", *args]


def _killed(args: list[str], point: str) -> None:
    done = subprocess.run(_command(args), env=dict(os.environ, **{KILL_AT: point}),
                          capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-800:]


def _stopped(args: list[str], point: str) -> subprocess.Popen:
    """A build started in a subprocess and held (SIGSTOP) at ``point``."""
    process = subprocess.Popen(_command(args), env=dict(os.environ, **{STOP_AT: point}),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open(f"/proc/{process.pid}/stat") as handle:
            if handle.read().rsplit(")", 1)[1].split()[0] == "T":
                return process
        assert process.poll() is None, process.communicate()[1].decode()[-800:]
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the build never reached stop point {point}")


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGCONT)
    out, err = process.communicate(timeout=120)
    return process.returncode, out.decode() + err.decode()


def _same(out: Path, reference: Path) -> None:
    assert not (out / LOCK_NAME).exists() and not (out / JOURNAL_DIR).exists()
    assert store_contents(out) == store_contents(reference)
    assert validate_store(out) == []


def _other_recipe():
    """The recipe of ``_other`` builds, for build_store."""
    return load_recipe("volume-folder").with_overrides({
        "harmonize": {"spacing": [2, 2, 2]},
        "labels": {"segmentation": {"classes": {"0": "background", "1": "a", "2": "b"}}}})


def _beside(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}"))


# -- 5: --overwrite builds beside the old store and swaps it in at close ------------
def test_an_overwrite_whose_cases_all_fail_keeps_the_old_store(sources, references,
                                                               tmp_path, capsys):
    out = tmp_path / "ct.zarr"
    shutil.copytree(references["volumes"], out)
    broken = tmp_path / "broken"
    shutil.copytree(sources["volumes"], broken)
    for image in (broken / "images").iterdir():
        image.write_bytes(b"\x1f\x8b\x08\x00 not a gzip stream")
    assert main(_args("volumes", broken, out) + ["--overwrite"]) == 1
    printed = capsys.readouterr().out
    assert "0 case(s) built, 6 failed" in printed and "the old store" in printed
    _same(out, references["volumes"])
    rebuilds = _beside(out)  # the failed rebuild, kept for --resume
    assert len(rebuilds) == 1 and rebuilds[0].startswith(".ct.zarr.medimg-build-")
    # Fixed sources: --resume finishes that rebuild and swaps it in.
    assert main(_args("volumes", sources["volumes"], out) + ["--resume"]) == 0
    _same(out, references["volumes"])
    assert _beside(out) == []


def test_a_reader_sees_the_old_store_until_the_rebuild_is_swapped_in(sources, references,
                                                                     tmp_path):
    out = tmp_path / "ct.zarr"
    shutil.copytree(references["volumes"], out)
    build = _stopped(_other(_args("volumes", sources["volumes"], out)) + ["--overwrite"], "3")
    try:
        _same_but_locked(out, references["volumes"], build.pid)
    finally:
        code, output = _finish(build)
    assert code == 0, output
    _same(out, references["volumes-other"])
    assert _beside(out) == []


def test_a_reader_of_the_old_store_never_reads_the_new_one(sources, references, tmp_path):
    """Opened before an --overwrite whose cases keep their shapes: after the swap its
    metadata describes the old store, so reading the new store's chunks under it (the
    same shapes: plausible pixels of the wrong store) must be an error."""
    out = tmp_path / "ct.zarr"
    shutil.copytree(references["volumes"], out)
    changed = tmp_path / "changed"
    shutil.copytree(sources["volumes"], changed)
    for path in (changed / "images").glob("*.nii.gz"):
        image = nib.load(path)
        brighter = np.asarray(image.dataobj) + np.int16(7)  # same shape, other pixels
        nib.save(nib.Nifti1Image(brighter, image.affine), path)
    reader = open_store(out)
    before = reader.read_image("case1").array
    lean = reader.case("case2")["image"]
    assert lean[0, 1].values.shape  # the lean reader has read this shard's index
    assert main(_args("volumes", changed, out) + ["--overwrite"]) == 0
    assert not np.array_equal(open_store(out).read_image("case1").array, before)
    with pytest.raises(StoreError, match="was replaced or removed .* while it was open"):
        reader.read_image("case1")  # zarr-python's reads
    with pytest.raises(StoreError, match="was replaced or removed"):
        lean[0, 2].values  # the lean local reader's


def _same_but_locked(out: Path, reference: Path, pid: int) -> None:
    """The old store, whole, with the rebuilding process's lock in it."""
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == pid
    store = open_store(out)
    expected = open_store(reference)
    for case_id in expected.cases["case_id"]:
        np.testing.assert_array_equal(store.read_image(case_id).array,
                                      expected.read_image(case_id).array)


def test_a_second_overwrite_during_a_build_ends_with_the_lock_message(sources, references,
                                                                      tmp_path, capsys):
    out = tmp_path / "ct.zarr"
    shutil.copytree(references["volumes"], out)
    args = _other(_args("volumes", sources["volumes"], out)) + ["--overwrite"]
    for point in ("lock", "2"):  # right after taking the lock; and after two cases
        first = _stopped(args, point)
        try:
            assert main(_args("volumes", sources["volumes"], out) + ["--overwrite"]) == 2
            err = capsys.readouterr().err.strip()
            assert err.count("\n") == 0 and "holds its lock" in err, err
            assert f"pid {first.pid}" in err
        finally:
            code, output = _finish(first)
        assert code == 0, output
        _same(out, references["volumes-other"])


def test_the_lock_never_holds_or_shows_the_pseudonym_key(sources, references, tmp_path,
                                                         capsys):
    """The lock records the command line, which may carry --key (issue 14)."""
    out = tmp_path / "ct.zarr"
    secret = "s3cret-pseudonym-key"
    args = [a if a != "k" else secret for a in _args("volumes", sources["volumes"], out)]
    first = _stopped(args, "2")
    try:
        lock = (out / LOCK_NAME).read_text()
        assert secret not in lock and "--key ***" in lock
        assert main(args + ["--resume"]) == 2
        err = capsys.readouterr().err
        assert "holds its lock" in err and secret not in err
    finally:
        code, output = _finish(first)
    assert code == 0, output


def test_an_overwrite_past_the_lock_check_when_another_takes_the_lock_is_refused(
        sources, references, tmp_path):
    """The race of two --overwrite builds: the second passed the lock check before the
    first took the lock. It must not delete the first build's store: it ends with the
    one-line lock message, and the first build finishes intact."""
    out = tmp_path / "ct.zarr"
    shutil.copytree(references["volumes"], out)
    args = _other(_args("volumes", sources["volumes"], out)) + ["--overwrite"]
    second = _stopped(args, "checked")
    first = _stopped(args, "2")  # holds the lock, two cases written
    code, output = _finish(second)
    assert code == 2 and output.strip().count("\n") == 0, output
    assert "holds its lock" in output and f"pid {first.pid}" in output
    code, output = _finish(first)
    assert code == 0, output
    _same(out, references["volumes-other"])
    assert _beside(out) == []


def test_a_killed_overwrite_is_resumed_beside_the_old_store(sources, references, tmp_path):
    out = tmp_path / "ct.zarr"
    shutil.copytree(references["volumes"], out)
    args = _other(_args("volumes", sources["volumes"], out))
    _killed(args + ["--overwrite"], "4")
    _same_but_stale_lock(out, references["volumes"])
    assert len(_beside(out)) == 1
    assert main(args + ["--resume"]) == 0
    _same(out, references["volumes-other"])
    assert _beside(out) == []


def test_an_overwrite_through_a_symbolic_link_replaces_the_store_it_points_at(
        sources, references, tmp_path):
    """ds.zarr -> a store on a larger disk: the rebuild goes there, the link stays, and
    the old store is not left behind (it was: the link became a new directory on the
    link's disk, and the old store stayed where the link had pointed)."""
    real = tmp_path / "big disk" / "ct.zarr"
    real.parent.mkdir()
    shutil.copytree(references["volumes"], real)
    link = tmp_path / "home" / "ct.zarr"
    link.parent.mkdir()
    link.symlink_to(real)
    assert main(_other(_args("volumes", sources["volumes"], link)) + ["--overwrite"]) == 0
    assert link.is_symlink() and link.resolve() == real
    _same(real, references["volumes-other"])
    assert _beside(real) == [] and _beside(link) == []


def _same_but_stale_lock(out: Path, reference: Path) -> None:
    (out / LOCK_NAME).unlink()
    _same(out, reference)


def test_a_new_overwrite_clears_the_rebuilds_of_killed_ones(sources, references, tmp_path):
    out = tmp_path / "ct.zarr"
    shutil.copytree(references["volumes"], out)
    args = _other(_args("volumes", sources["volumes"], out))
    _killed(args + ["--overwrite"], "2")
    assert len(_beside(out)) == 1
    assert main(args + ["--overwrite"]) == 0
    _same(out, references["volumes-other"])
    assert _beside(out) == []


def test_overwrite_with_allow_failures_swaps_in_the_cases_that_built(sources, references,
                                                                     tmp_path):
    out = tmp_path / "ct.zarr"
    shutil.copytree(references["volumes"], out)
    broken = tmp_path / "broken"
    shutil.copytree(sources["volumes"], broken)
    (broken / "images" / "case4.nii.gz").write_bytes(b"not a nifti")
    assert main(_other(_args("volumes", broken, out)) + ["--overwrite"]) == 1
    assert len(open_store(out).cases) == 6  # kept: a case failed
    assert main(_other(_args("volumes", broken, out))
                + ["--overwrite", "--allow-failures"]) == 0
    assert list(open_store(out).cases["case_id"]) == [f"case{i}" for i in (0, 1, 2, 3, 5)]
    assert _beside(out) == []


@pytest.mark.parametrize("exchange", [True, False])
def test_the_swap_puts_the_new_store_in_place_and_leaves_nothing_beside(
        sources, references, tmp_path, monkeypatch, exchange):
    """RENAME_EXCHANGE where the system has it (Linux), else two renames."""
    from medimg_build.store import replace

    if exchange:
        probe = [tmp_path / "a", tmp_path / "b"]
        for folder in probe:
            folder.mkdir()
        (probe[0] / "marker").touch()
        assert replace._exchange(str(probe[0]), str(probe[1]))  # else the test is void
        assert (probe[1] / "marker").exists() and not (probe[0] / "marker").exists()
    else:
        monkeypatch.setattr(replace, "_exchange", lambda a, b: False)
    out = tmp_path / "ct.zarr"
    shutil.copytree(references["volumes"], out)
    recipe = _other_recipe()
    assert build_store(recipe, sources["volumes"], out, key="k", progress=False,
                       overwrite=True).ok
    _same(out, references["volumes-other"])
    assert _beside(out) == []


def test_a_kill_right_after_the_swap_never_brings_the_old_store_back(
        sources, references, tmp_path, monkeypatch):
    """Killed between the exchange and the removal of what it swapped out: the old
    store must not lie under a rebuild's name, where --resume would swap it back in."""
    from medimg_build.store import replace

    exchange = replace._exchange

    def exchange_then_die(a: str, b: str) -> bool:
        assert exchange(a, b)  # else the test is void
        raise KeyboardInterrupt  # the build dies here

    monkeypatch.setattr(replace, "_exchange", exchange_then_die)
    out = tmp_path / "ct.zarr"
    shutil.copytree(references["volumes"], out)
    recipe = _other_recipe()
    with pytest.raises(KeyboardInterrupt):
        build_store(recipe, sources["volumes"], out, key="k", progress=False, overwrite=True)
    monkeypatch.undo()
    _same(out, references["volumes-other"])
    assert replace.rebuilds_beside(str(out)) == []
    build_store(recipe, sources["volumes"], out, key="k", progress=False, resume=True)
    _same(out, references["volumes-other"])


def test_replacing_a_store_on_an_object_store_is_refused():
    location = "memory://safety/ct.zarr"
    create_store(location, "volumes", n_cases=1)  # its zarr.json is written at once
    with pytest.raises(StoreError, match="no atomic rename"):
        create_store(location, "volumes", n_cases=1, overwrite=True)
    assert fsspec.filesystem("memory").exists("/safety/ct.zarr/zarr.json")


# -- 6: HDF5 builds take the lock and replace the file only at close ---------------
def test_a_second_hdf5_overwrite_during_a_build_is_refused(sources, tmp_path, capsys):
    out = tmp_path / "ct.h5"
    args = _args("volumes", sources["volumes"], out)
    assert main(args) == 0
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    first = _stopped(_other(args) + ["--overwrite"], "2")
    try:
        assert (tmp_path / "ct.h5.medimg-build.lock").exists()
        assert main(args + ["--overwrite"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "holds its lock" in err and f"pid {first.pid}" in err
        # The old file is whole while the first build writes its replacement beside it.
        assert hashlib.sha256(out.read_bytes()).hexdigest() == before
    finally:
        code, output = _finish(first)
    assert code == 0, output
    assert not (tmp_path / "ct.h5.medimg-build.lock").exists() and _beside(out) == []
    assert hashlib.sha256(out.read_bytes()).hexdigest() != before
    assert open_store(out).read_image("case0").spacing == pytest.approx((2, 2, 2))


def test_an_hdf5_overwrite_whose_cases_all_fail_keeps_the_old_file(sources, tmp_path):
    out = tmp_path / "ct.h5"
    assert main(_args("volumes", sources["volumes"], out)) == 0
    before = out.read_bytes()
    broken = tmp_path / "broken"
    shutil.copytree(sources["volumes"], broken)
    for image in (broken / "images").iterdir():
        image.write_bytes(b"not a nifti")
    assert main(_args("volumes", broken, out) + ["--overwrite"]) == 1
    assert out.read_bytes() == before
    assert _beside(out) == []  # the failed rebuild is gone: nothing could finish it
    with pytest.raises(StoreError, match="Zarr stores only"):  # HDF5: no resume
        build_store(load_recipe("volume-folder"), broken, out, progress=False, resume=True)


# -- 7: --resume --------------------------------------------------------------------
@pytest.mark.parametrize("kind, point, changed", [
    ("volumes", "4", "images/case1.nii.gz"), ("volumes", "4", "labels/case2.nii.gz"),
    ("stack", "7", "images/00000004_000.png")])
def test_resume_rebuilds_a_case_whose_source_changed(kind, point, changed, tmp_path,
                                                     capsys):
    source = (_volume_source if kind == "volumes" else _stack_source)(tmp_path / "src")
    out = tmp_path / "killed.zarr"
    _killed(_args(kind, source, out), point)
    _change(source / changed)
    assert main(_args(kind, source, out) + ["--resume"]) == 0
    case_id = "case" + changed[-8] if kind == "volumes" else "00000004_000"
    assert f"{case_id}: source changed since it was built ({changed}); rebuilt" in \
        capsys.readouterr().out
    reference = tmp_path / "reference.zarr"
    assert main(_args(kind, source, reference)) == 0
    _same(out, reference)


def test_resume_rebuilds_a_case_whose_mask_was_added(tmp_path, capsys):
    """A mask put beside a case after the case was built (killed build): the case
    built without it is stale, as if a source had changed."""
    source = _volume_source(tmp_path / "src")
    mask = source / "labels" / "case1.nii.gz"
    held = mask.rename(tmp_path / "case1 mask.nii.gz")
    out = tmp_path / "killed.zarr"
    _killed(_args("volumes", source, out), "4")
    held.rename(mask)
    assert main(_args("volumes", source, out) + ["--resume"]) == 0
    assert "case1: source added since it was built (labels/case1.nii.gz); rebuilt" in \
        capsys.readouterr().out
    reference = tmp_path / "reference.zarr"
    assert main(_args("volumes", source, reference)) == 0
    _same(out, reference)


def _change(path: Path) -> None:
    if path.suffix == ".png":
        from PIL import Image

        Image.fromarray(np.full((12, 10), 7, np.uint8)).save(path)
        return
    image = nib.load(path)
    data = np.asarray(image.dataobj)
    nib.save(nib.Nifti1Image((data[::-1] if "labels" not in str(path) else data * 0)
                             .astype(data.dtype), AFFINE), path)


def test_resume_removes_half_written_files(sources, references, tmp_path):
    out = tmp_path / "killed.zarr"
    _killed(_args("volumes", sources["volumes"], out), "3")
    leftovers = [out / f"zarr.{'a' * 32}.partial",
                 out / "cases" / "case0" / "scale0" / "image" / f"zarr.{'b' * 32}.partial"]
    chunk = next(p for p in (out / "cases" / "case1").rglob("c/*/*/*") if p.is_file())
    leftovers.append(chunk.with_suffix(f".{'c' * 32}.partial"))
    for path in leftovers:
        assert path.parent.is_dir()
        path.write_bytes(b"torn")
    assert main(_args("volumes", sources["volumes"], out) + ["--resume"]) == 0
    assert not any(p.exists() for p in leftovers)
    _same(out, references["volumes"])
    digest = open_store(out).attrs["manifest"]["content_sha256"]
    assert digest == open_store(references["volumes"]).attrs["manifest"]["content_sha256"]


def test_a_build_killed_right_after_taking_its_lock_resumes(sources, references, tmp_path,
                                                           capsys):
    out = tmp_path / "killed.zarr"
    _killed(_args("volumes", sources["volumes"], out), "lock")
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    assert main(_args("volumes", sources["volumes"], out) + ["--resume"]) == 0
    assert "took over the stale lock" in capsys.readouterr().out
    _same(out, references["volumes"])
    # What the same kill leaves when it tore the first write of the root metadata.
    torn = tmp_path / "torn.zarr"
    torn.mkdir()
    (torn / f"zarr.{'d' * 32}.partial").write_text('{"zarr_format": 3, "node_ty')
    (torn / JOURNAL_DIR).mkdir()
    (torn / JOURNAL_DIR / "cases.json").write_text('{"recipe_sha256": "x"}')
    assert main(_args("volumes", sources["volumes"], torn) + ["--resume"]) == 0
    _same(torn, references["volumes"])


# -- 8: a Dask worker that dies fails its own case only ----------------------------
# A stack's first cases are harmonized alone (for its template), the later ones several to
# a task: 00000006_000 kills a task harmonizing 00000004..7 with it.
@pytest.mark.parametrize("kind, poisoned", [("volumes", "case2"), ("stack", "00000002_000"),
                                            ("stack", "00000006_000")])
def test_a_dead_worker_fails_only_its_case_and_resume_finishes(sources, references, kind,
                                                               poisoned, tmp_path,
                                                               monkeypatch):
    out = tmp_path / f"{kind}.zarr"
    args = _args(kind, sources[kind], out) + ["--workers", "2"]
    monkeypatch.setenv(KILL_WORKER_ON, poisoned)  # inherited by the worker processes
    assert main(args) == 1
    store = open_store(out)
    built = list(store.cases.loc[store.cases["status"] == "built", "case_id"])
    assert poisoned not in built and len(built) == (5 if kind == "volumes" else 7)
    error = store.attrs["build_report"]["failed"][poisoned]
    assert "worker building this case died" in error
    monkeypatch.delenv(KILL_WORKER_ON)
    assert main(args + ["--resume"]) == 0
    _same(out, references[kind])


def test_a_cluster_whose_workers_are_all_gone_ends_the_build_resumably(
        sources, references, tmp_path, monkeypatch, capsys):
    """A running scheduler whose only worker dies and is not restarted (no nanny, as a
    batch job that ended): one line after WORKERLESS_SECONDS, not a wait forever; the
    store is resumable."""
    from distributed import LocalCluster

    from medimg_build.recipe import parallel

    monkeypatch.setattr(parallel, "WORKERLESS_SECONDS", 2)
    out = tmp_path / "ct.zarr"
    with LocalCluster(n_workers=0, processes=False, protocol="tcp",
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--no-nanny",
             "--nthreads", "1", "--no-dashboard"],
            env=dict(os.environ, **{KILL_WORKER_ON: "case2"},
                     PYTHONPATH=str(Path(__file__).resolve().parents[1])),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            args = _args("volumes", sources["volumes"], out)
            assert main(args + ["--scheduler", address]) == 2
        finally:
            worker.kill()
            worker.wait()
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{address}: every worker is gone, and none joined within 2 s" in err
    assert "--resume" in err
    assert main(args + ["--resume", "--workers", "1"]) == 0
    _same(out, references["volumes"])
