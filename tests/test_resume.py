"""Kill-and-resume: a build SIGKILLed at any point and run again with --resume ends
identical to an uninterrupted build; the build lock keeps a second build out."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.errors import StoreError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.failpoints import KILL_AT
from medimg_build.store.journal import JOURNAL_DIR, LOCK_NAME, BuildLock
from medimg_build.store.validate import validate_store
from store_contents import store_contents

AFFINE = np.diag([-0.9, -0.9, 2.5, 1.0])
VOLUME_ARGS = ["volume-folder", "--set", "harmonize.spacing=[1.5,1.5,2.0]", "--set",
               'labels.segmentation.classes={"0": background, "1": a, "2": b}']
STACK_ARGS = ["nih-chestxray14", "--set", "harmonize.shape=[16,16]",
              "--set", "store.cases_per_shard=3",
              "--set", "source.columns=null"]  # the table below has none of them
# Kill points: after N cases handed to the writer, or inside a write unit ("shard",
# "case": pixels written, completion marker not) or close ("close": table written).
STACK_KILLS = ["1", "4", "shard", "7", "close"]  # 8 cases, shards of 3: 3 shards
VOLUME_KILLS = ["2", "case", "5", "close", "6"]  # 6 cases
# Cases a resume finds complete (not harmonized again): whole shards only in the stack.
RECOVERED = {("stack", "1"): 0, ("stack", "4"): 3, ("stack", "shard"): 0,
             ("stack", "7"): 6, ("stack", "close"): 8, ("volumes", "2"): 2,
             ("volumes", "case"): 0, ("volumes", "5"): 5, ("volumes", "close"): 6,
             ("volumes", "6"): 6}


def _volume_source(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(1)
    for index in range(6):
        image = rng.integers(-1000, 1500, size=(10, 9, 4)).astype(np.int16)
        nib.save(nib.Nifti1Image(image, AFFINE), root / "images" / f"case{index}.nii.gz")
        if index % 3:  # some cases without a mask
            mask = (image > 800).astype(np.uint8) + (image > 1300)
            nib.save(nib.Nifti1Image(mask, AFFINE), root / "labels" / f"case{index}.nii.gz")
    return root


def _stack_source(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        name = f"{i:08d}_000.png"
        Image.fromarray(rng.integers(0, 255, (12, 10)).astype(np.uint8)).save(
            root / "images" / name)
        rows.append([name, "Mass|Effusion" if i % 3 == 0 else "No Finding", 0, i // 2])
    with open(root / "Data_Entry_2017.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Image Index", "Finding Labels", "Follow-up #", "Patient ID"])
        writer.writerows(rows)
    (root / "test_list.txt").write_text("00000007_000.png\n")
    (root / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00000000_000.png,Mass,1,2,4,5\n00000003_000.png,Effusion,2,1,5,6\n")
    return root


def _args(kind: str, source: Path, out: Path) -> list[str]:
    recipe, *options = VOLUME_ARGS if kind == "volumes" else STACK_ARGS
    return ["build", recipe, "--source", str(source), "--out", str(out), "--key", "k",
            "--quiet", *options]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Sources, uninterrupted reference stores, and for each kill point a store left
    by a build SIGKILLed there (the killed builds run in parallel subprocesses)."""
    root = tmp_path_factory.mktemp("resume")
    sources = {"volumes": _volume_source(root / "nifti"), "stack": _stack_source(root / "png")}
    references = {}
    for kind, source in sources.items():
        references[kind] = root / f"{kind}-reference.zarr"
        assert main(_args(kind, source, references[kind])) == 0
    killed = {}
    for kind, points in (("stack", STACK_KILLS), ("volumes", VOLUME_KILLS)):
        for point in points:
            out = root / f"{kind}-killed-{point}.zarr"
            env = dict(os.environ, **{KILL_AT: point})
            command = [sys.executable, "-m", "medimg_build.cli",
                       *_args(kind, sources[kind], out)]
            killed[kind, point] = (out, subprocess.Popen(command, env=env,
                                                         stderr=subprocess.PIPE))
    for (kind, point), (out, process) in killed.items():
        _, err = process.communicate(timeout=120)
        assert process.returncode == -signal.SIGKILL, (kind, point, err.decode()[-500:])
    return sources, references, {key: out for key, (out, _) in killed.items()}


def _assert_same(out: Path, reference: Path) -> None:
    assert not (out / LOCK_NAME).exists() and not (out / JOURNAL_DIR).exists()
    expected, got = store_contents(reference), store_contents(out)
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert got[key] == expected[key], key
    assert validate_store(out) == []
    a, b = open_store(out), open_store(reference)
    assert a.cases.equals(b.cases)


@pytest.mark.parametrize("kind, point", [("stack", p) for p in STACK_KILLS]
                         + [("volumes", p) for p in VOLUME_KILLS])
def test_killed_build_resumes_to_the_uninterrupted_store(built, kind, point, capsys):
    sources, references, killed = built
    out = killed[kind, point]
    assert (out / LOCK_NAME).exists()  # left by the killed build: stale now
    assert main(_args(kind, sources[kind], out) + ["--resume"]) == 0
    printed = capsys.readouterr().out
    assert "took over the stale lock" in printed
    recovered = RECOVERED[kind, point]
    assert (f"resumed: {recovered} case(s) already complete" in printed) == bool(recovered)
    _assert_same(out, references[kind])
    assert "provenance" in open_store(out).attrs


def test_resuming_a_finished_store_redoes_nothing(built, tmp_path):
    sources, references, _ = built
    out = tmp_path / "finished.zarr"
    shutil.copytree(references["stack"], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    recipe = load_recipe("nih-chestxray14").with_overrides(
        {"harmonize": {"shape": [16, 16]}, "store": {"cases_per_shard": 3},
         "source": {"columns": None}})
    report = build_store(recipe, sources["stack"], out, key="k", progress=False, resume=True)
    assert report.already_complete == 8 and len(report.built) == 8
    assert "nothing to redo" in report.summary()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    _assert_same(out, references["stack"])


def _lock(out: Path, pid: int) -> None:
    with open(f"/proc/{pid}/stat") as handle:
        start = handle.read().rsplit(")", 1)[1].split()[19]
    (out / LOCK_NAME).write_text(json.dumps({
        "host": socket.gethostname(), "pid": pid, "pid_start": start,
        "since": "2024-01-01T00:00:00+00:00", "command": "medimg-build build x"}))


def test_a_live_lock_keeps_a_second_build_out(built, tmp_path, capsys):
    sources, references, _ = built
    out = tmp_path / "locked.zarr"
    shutil.copytree(references["volumes"], out)
    _lock(out, os.getpid())  # a live process on this host holds it
    for extra in (["--resume"], ["--overwrite"]):
        assert main(_args("volumes", sources["volumes"], out) + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"pid {os.getpid()}" in err
        assert "holds its lock" in err and "since 2024-01-01" in err and "delete" in err
    assert (out / "zarr.json").exists()  # --overwrite did not delete it


def _stale_lock(out: Path) -> subprocess.Popen:
    """A lock in ``out`` left by a process that has ended (the ended process)."""
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock(out, dead.pid)
    finally:
        dead.kill()
        dead.wait()
    return dead


def test_a_stale_lock_is_taken_over(built, tmp_path):
    sources, references, _ = built
    out = tmp_path / "stale.zarr"
    shutil.copytree(references["volumes"], out)
    dead = _stale_lock(out)
    recipe = load_recipe("volume-folder").with_overrides({
        "harmonize": {"spacing": [1.5, 1.5, 2.0]},
        "labels": {"segmentation": {"classes": {"0": "background", "1": "a", "2": "b"}}}})
    report = build_store(recipe, sources["volumes"], out, key="k", progress=False,
                         overwrite=True)
    assert report.ok and any(f"pid {dead.pid}" in note for note in report.notes)
    assert "took over the stale lock" in report.summary()
    assert not (out / LOCK_NAME).exists()
    _assert_same(out, references["volumes"])


def test_a_stale_lock_another_build_took_over_first_is_left_to_it(tmp_path, monkeypatch):
    """Two builds find one stale lock. The faster takes it over; the slower, whose
    check read the stale lock, must not delete the faster one's live lock in its turn
    (both would then build the store): it is refused."""
    out = tmp_path / "ds.zarr"
    out.mkdir()
    dead = _stale_lock(out)
    judged_stale = BuildLock.note_stale

    def faster_build_takes_it_now(lock):
        judged_stale(lock)
        _lock(out, os.getppid())  # a live build on this host, since 2024-01-01

    monkeypatch.setattr(BuildLock, "note_stale", faster_build_takes_it_now)
    with pytest.raises(StoreError, match=f"holds its lock: host .* pid {os.getppid()} "):
        BuildLock(str(out)).acquire()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getppid()
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_resume_with_another_recipe_or_other_cases_is_refused(built, tmp_path, capsys):
    sources, _, killed = built
    out = tmp_path / "half.zarr"
    shutil.copytree(killed["volumes", "5"], out)
    args = _args("volumes", sources["volumes"], out)
    other = [a.replace("[1.5,1.5,2.0]", "[2,2,2]") for a in args]
    assert main(other + ["--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot resume" in err and "recipe" in err
    assert "--overwrite" in err
    fewer = tmp_path / "fewer"
    shutil.copytree(sources["volumes"], fewer)
    (fewer / "images" / "case5.nii.gz").unlink()
    assert main(_args("volumes", fewer, out) + ["--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "the store has 6 cases, the source 5" in err
    assert not (out / LOCK_NAME).exists() or json.loads(
        (out / LOCK_NAME).read_text())["pid"] != os.getpid()  # released on refusal


def test_resume_with_another_pseudonymization_key_is_refused(built, tmp_path, capsys):
    """Patient ids and splits of the two halves would come from two keys."""
    sources = built[0]
    out = tmp_path / "half.zarr"  # killed here: the fixture's stores get resumed by others
    command = [sys.executable, "-m", "medimg_build.cli", *_args("volumes", sources["volumes"], out)]
    subprocess.run(command, env=dict(os.environ, **{KILL_AT: "3"}), capture_output=True,
                   timeout=120)
    assert (out / JOURNAL_DIR).exists()
    args = [a if a != "k" else "another-key" for a in _args("volumes", sources["volumes"], out)]
    assert main(args + ["--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pseudonymization key differs" in err and "k" not in err.split("(")[-1][:3]


def test_hdf5_resume_is_refused(built, tmp_path):
    sources, _, _ = built
    with pytest.raises(StoreError, match="Zarr stores only"):
        recipe = load_recipe("nih-chestxray14").with_overrides(
            {"harmonize": {"shape": [16, 16]}, "source": {"columns": None}})
        build_store(recipe, sources["stack"], tmp_path / "s.h5", progress=False, resume=True)


def test_a_tampered_journal_naming_a_file_outside_the_source_is_never_read(tmp_path):
    """The journal of the store being resumed names the files a case was built from;
    a store from elsewhere could name '../' paths, and whether their hash matched would
    tell whether a file of this machine holds given bytes. Such a name is not looked
    at: the case is rebuilt."""
    from medimg_build.recipe.build import _changed_source
    from medimg_build.recipe.case_table import sha256_of
    from medimg_build.recipe.sources import CaseSource

    source, outside = tmp_path / "src", tmp_path / "outside.bin"
    (source / "images").mkdir(parents=True)
    image = source / "images" / "a.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), image)
    outside.write_bytes(b"the reader's own file")
    record = {"case_id": "a", "sources": {"images/a.nii.gz": sha256_of(image),
                                          "../outside.bin": sha256_of(outside)}}
    stale = _changed_source(source, [CaseSource("a", image)], b"k")(record)
    assert stale == "source gone since it was built (../outside.bin)"
