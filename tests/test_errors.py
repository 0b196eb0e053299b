"""Faults and damaged stores end as one line naming the file and the fix, never as a
traceback: damaged chunks in report, damaged or foreign stores in verify, a snapshot of
a snapshot, a full disk, a read-only output, an absent scheduler, a bad --set value."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import zarr
from zarr.storage import _local

from medimg_build.cli import main
from medimg_build.failpoints import KILL_AT
from medimg_build.store.opening import verify_store
from test_resume import _args, _volume_source

CHUNK = ("cases", "case1", "scale0", "image", "c", "0", "0", "0", "0")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    source = _volume_source(root / "nifti")
    reference = root / "reference.zarr"
    assert main(_args("volumes", source, reference) + ["--workers", "1"]) == 0
    return root, source, reference


@pytest.fixture
def store(built, tmp_path):
    """A copy of the reference store, to damage."""
    copy = tmp_path / "ds.zarr"
    shutil.copytree(built[2], copy)
    return copy


def _error_line(capsys) -> str:
    """The one line a failed command wrote to stderr."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    assert err.startswith("medimg-build: error: ")
    return err


def _content_hash(store) -> str:
    return zarr.open_group(store, mode="r").attrs["medimg"]["manifest"]["content_sha256"]


# -- damaged stores (item 4) -----------------------------------------------------------
@pytest.mark.parametrize("damage", ["flipped byte", "truncated shard"])
def test_report_on_a_damaged_chunk_names_the_store_and_the_case(store, tmp_path, capsys,
                                                                damage):
    chunk = store.joinpath(*CHUNK)
    data = bytearray(chunk.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 2:]
    chunk.write_bytes(bytes(data))
    assert main(["report", str(store), "--out", str(tmp_path / "report")]) == 2
    err = _error_line(capsys)
    # The chunk checksum (store/integrity.py) names the array and the chunk; what it
    # cannot see, the report's reader names by the case.
    assert (f"{store}: cases/case1/scale0/image " in err
            or f"{store}: case case1: its pixels cannot be read" in err)
    assert "medimg-build verify" in err


@pytest.mark.parametrize("command", ["report", "inspect", "export-table"])
def test_a_damaged_table_column_is_named(store, tmp_path, capsys, command):
    chunk = store / "split" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    out = [] if command == "inspect" else ["--out", str(tmp_path / "out")]
    assert main([command, str(store), *out]) == 2
    err = _error_line(capsys)
    assert "ds.zarr/split: the case table's column split cannot be read" in err
    assert "medimg-build verify" in err


def test_verify_a_corrupt_root_metadata(store, capsys):
    (store / "zarr.json").write_text('{"zarr_format": 3, "node_')
    assert main(["verify", str(store)]) == 2
    err = _error_line(capsys)
    assert f"{store}/zarr.json: the store's root metadata is damaged" in err
    assert "restore the store from a snapshot, or rebuild it" in err


def test_verify_a_store_whose_manifest_is_deleted(store, capsys):
    shutil.rmtree(store / "manifest")
    assert main(["verify", str(store)]) == 2
    err = _error_line(capsys)
    assert f"{store}/manifest: the content manifest is missing or damaged" in err
    assert _content_hash(store) in err  # what the store claimed to be


def test_verify_a_folder_that_is_not_a_store(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"\x89PNG")
    assert main(["verify", str(tmp_path / "photos")]) == 2
    assert f"{tmp_path / 'photos'}: is not a store" in _error_line(capsys)
    assert main(["verify", str(tmp_path / "nothing")]) == 2
    assert f"{tmp_path / 'nothing'}: no store at this path" in _error_line(capsys)


def _edit_root_metadata(store, edit) -> None:
    path = store / "zarr.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("edit, named", [
    (lambda d: d["attributes"].__setitem__("medimg", "x"), "'medimg'"),
    (lambda d: d["attributes"]["medimg"].__setitem__("manifest", "x"), "'medimg.manifest'"),
    (lambda d: d["attributes"]["medimg"].pop("manifest"), "'medimg.manifest'")],
    ids=["medimg a string", "manifest summary a string", "manifest summary removed"])
def test_verify_root_attributes_of_the_wrong_type(store, capsys, edit, named):
    """An edited root zarr.json whose medimg record (or its manifest summary) is not a
    mapping, or is gone while the manifest array is there: one line, not the
    AttributeError of reading it."""
    _edit_root_metadata(store, edit)
    assert main(["verify", str(store)]) == 2
    err = _error_line(capsys)
    assert f"{store}/zarr.json: the root attribute {named} is missing or damaged" in err


@pytest.mark.parametrize("name, again", [("killed.zarr", "--resume"),
                                         ("killed.h5", "--overwrite")])
def test_verify_an_unfinished_store_says_so(built, tmp_path, capsys, name, again):
    """A build killed (or still running): not 'built by an older medimg-build'."""
    _, source, _ = built
    out = tmp_path / name
    done = subprocess.run([sys.executable, "-m", "medimg_build.cli",
                           *_args("volumes", source, out), "--workers", "1"],
                          env=dict(os.environ, **{KILL_AT: "2"}), capture_output=True)
    assert done.returncode == -9, done.stderr.decode()[-500:]
    assert main(["verify", str(out)]) == 2
    err = _error_line(capsys)
    assert f"{out}: the build that writes this store has not finished" in err
    assert f"run it again with {again}" in err


@pytest.mark.parametrize("command", ["validate", "inspect", "export-table"])
def test_root_metadata_of_the_wrong_type(store, capsys, command):
    """zarr raises TypeError on zarr.json fields of the wrong JSON type."""
    _edit_root_metadata(store, lambda d: d.__setitem__("attributes", []))
    assert main([command, str(store)]) == 2
    assert f"{store}: not a Zarr v3 group (TypeError)" in _error_line(capsys)


def test_outputs_that_are_directories_are_refused_and_missing_folders_made(
        built, tmp_path, capsys):
    """export-table, snapshot or report onto a directory (the store itself, say): one
    line, and the directory untouched; a table under a folder not yet made."""
    reference = built[2]
    assert main(["export-table", str(reference), "--out", str(reference)]) == 2
    assert f"{reference}: is a directory, not a file name for the table" in \
        _error_line(capsys)
    assert verify_store(reference) == []
    (tmp_path / "taken.zip").mkdir()
    assert main(["snapshot", str(reference), str(tmp_path / "taken.zip")]) == 2
    assert "is a directory, not a file name for the snapshot" in _error_line(capsys)
    assert main(["report", str(reference), "--out", str(reference)]) == 2
    assert f"{reference}: is a Zarr store (it holds zarr.json)" in _error_line(capsys)
    assert verify_store(reference) == []  # no report files written into it
    assert main(["export-table", str(reference), "--out",
                 str(tmp_path / "new" / "folder" / "t.parquet")]) == 0
    assert (tmp_path / "new" / "folder" / "t.parquet").stat().st_size > 0


def test_an_export_that_cannot_open_its_output_leaves_an_existing_file(
        built, tmp_path, capsys, monkeypatch):
    """Only a table the export began writing is removed when it fails, never a file
    it could not even open (here: permission denied)."""
    import fsspec.implementations.local

    existing = tmp_path / "cases.parquet"
    existing.write_bytes(b"last week's table")

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(existing))

    monkeypatch.setattr(fsspec.implementations.local.LocalFileSystem, "open", denied)
    assert main(["export-table", str(built[2]), "--out", str(existing)]) == 2
    assert "permission denied" in _error_line(capsys)
    assert existing.read_bytes() == b"last week's table"


def test_a_snapshot_of_a_snapshot_is_the_same_bytes(built, tmp_path, capsys):
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    assert main(["snapshot", str(built[2]), str(first)]) == 0
    assert main(["snapshot", str(first), str(second)]) == 0
    assert _content_hash(built[2]) in capsys.readouterr().out
    assert first.read_bytes() == second.read_bytes()
    assert verify_store(second) == []


# -- faults of the machine (item 9) ----------------------------------------------------
def _full_disk_after(writes: int):
    """zarr's local write (``_put``) failing with ENOSPC from its ``writes``-th call on,
    as a full disk fails it (what a small tmpfs does in the test below)."""
    put, calls = _local._put, []

    def put_until_full(path, value, exclusive=False):
        calls.append(path)
        if len(calls) >= writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return put(path, value, exclusive=exclusive)
    return put_until_full


# Of a build's ~350 writes: in case0, in case2, in the case table, at the manifest.
@pytest.mark.parametrize("writes", [20, 110, 290, 348])
def test_a_full_disk_is_one_line_and_resume_then_finishes_identical(
        built, tmp_path, capsys, monkeypatch, writes):
    _, source, reference = built
    out = tmp_path / "ds.zarr"
    with monkeypatch.context() as patch:
        patch.setattr(_local, "_put", _full_disk_after(writes))
        assert main(_args("volumes", source, out) + ["--workers", "1"]) == 2
    err = _error_line(capsys)
    assert f"{out}: no space left on the device: free space there, then run the same " \
           "command with --resume" in err
    assert main(_args("volumes", source, out) + ["--workers", "1", "--resume"]) == 0
    assert verify_store(out) == []
    assert _content_hash(out) == _content_hash(reference)


@pytest.fixture
def mount_point(tmp_path):
    """A tmpfs of 600 kB (needs root; skipped elsewhere), unmounted after the test."""
    point = tmp_path / "disk"
    point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(point)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield point
    subprocess.run(["umount", "--lazy", str(point)], check=True)  # even if a file is open


def _remount(point, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(point)], check=True)


def test_a_real_full_disk_then_freed_resumes_identical(built, mount_point, capsys):
    _, source, reference = built
    out = mount_point / "ds.zarr"  # the store takes ~1.2 MB of tmpfs pages: too big
    assert main(_args("volumes", source, out) + ["--workers", "1"]) == 2
    assert "no space left on the device" in _error_line(capsys)
    _remount(mount_point, "size=8m")  # space freed
    assert main(_args("volumes", source, out) + ["--workers", "1", "--resume"]) == 0
    assert verify_store(out) == [] and _content_hash(out) == _content_hash(reference)


def test_a_full_disk_under_an_hdf5_build_is_one_line(built, mount_point):
    """h5py reports it as a RuntimeError at close (the file's metadata flush), or as an
    OSError without a file name: both are the same one line."""
    out = mount_point / "ds.h5"  # ~200 kB of data and metadata: too big for 64 kB
    (mount_point / "fill").write_bytes(bytes(600 * 1024 - 64 * 1024))
    # In its own process, as a user runs it: the file HDF5 could not close stays open
    # until the process ends (and would keep the tmpfs busy).
    build = subprocess.run([sys.executable, "-m", "medimg_build.cli",
                            *_args("volumes", built[1], out), "--workers", "1"],
                           capture_output=True, text=True)
    # Known limit: the file HDF5 could not close fails to close again as h5py frees it
    # at exit, and h5py prints that after the line (RuntimeError "Can't destroy cache").
    first = build.stderr.strip().splitlines()[0]
    assert build.returncode == 2
    assert first == (f"medimg-build: error: {out}: no space left on the device: free space "
                     "there, then run the same command with --overwrite (HDF5 builds do not "
                     "resume)")


@pytest.mark.parametrize("command", ["build", "build-h5", "snapshot", "report",
                                     "export-table"])
def test_a_read_only_output_is_one_line(built, mount_point, capsys, command):
    _, source, reference = built
    _remount(mount_point, "ro")
    out = {"build": mount_point / "ds.zarr", "build-h5": mount_point / "ds.h5",
           "snapshot": mount_point / "ds.zip", "report": mount_point / "report",
           "export-table": mount_point / "cases.parquet"}[command]
    args = (_args("volumes", source, out) + ["--workers", "1"] if command.startswith("build")
            else [command, str(reference), str(out)] if command == "snapshot"
            else [command, str(reference), "--out", str(out)])
    assert main(args) == 2
    err = _error_line(capsys)
    # An HDF5 build meets its lock file beside the output first.
    named = f"{out}.medimg-build.lock" if command == "build-h5" else f"{out}"
    assert f"{named}: read-only file system: write the output to a writable location" in err


def test_a_forbidden_output_is_one_line_and_other_os_errors_keep_their_traceback(
        built, tmp_path, capsys, monkeypatch):
    """Without root (chmod does not stop root), the errors a read-only or forbidden
    output raises, from the write layer of export-table."""
    from fsspec.implementations.local import LocalFileOpener

    out = tmp_path / "cases.parquet"
    for code, fix in ((errno.EACCES, "permission denied: check its permissions"),
                      (errno.EROFS, "read-only file system")):
        def refuse(*args, code=code, **kwargs):
            raise OSError(code, os.strerror(code), str(out))
        monkeypatch.setattr(LocalFileOpener, "write", refuse)
        assert main(["export-table", str(built[2]), "--out", str(out)]) == 2
        assert f"{out}: {fix}" in _error_line(capsys)
        assert not out.exists()  # no truncated table left under the name

    def bug(*args, **kwargs):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "dtype")
    monkeypatch.setattr(LocalFileOpener, "write", bug)
    with pytest.raises(FileNotFoundError):  # not a fault of the machine: not hidden
        main(["export-table", str(built[2]), "--out", str(out)])


def test_a_scheduler_that_does_not_answer_fails_fast_naming_it(built, tmp_path, capsys,
                                                                 monkeypatch):
    from medimg_build.recipe import scheduler

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(scheduler, "CONNECT_SECONDS", 1)
    started = time.monotonic()
    code = main(_args("volumes", built[1], tmp_path / "ds.zarr") + ["--scheduler", address])
    assert code == 2 and time.monotonic() - started < 15  # Dask alone waits 30 s
    err = _error_line(capsys)
    assert f"{address}: no Dask scheduler answers there within 1 s" in err
    assert "leave out --scheduler" in err
    assert not (tmp_path / "ds.zarr").exists()  # refused before the store was touched


def test_a_scheduler_that_answers_still_builds(built, tmp_path, capsys):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        out = tmp_path / "ds.zarr"
        assert main(_args("volumes", built[1], out) + ["--scheduler",
                                                       cluster.scheduler_address]) == 0
    assert _content_hash(out) == _content_hash(built[2])


def test_a_scheduler_without_workers_fails_fast_naming_it(built, tmp_path, capsys,
                                                           monkeypatch):
    """`dask scheduler` started, `dask worker` forgotten: the build waited forever."""
    from distributed import LocalCluster

    from medimg_build.recipe import scheduler

    monkeypatch.setattr(scheduler, "CONNECT_SECONDS", 1)
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        out = tmp_path / "ds.zarr"
        assert main(_args("volumes", built[1], out) + ["--scheduler", address]) == 2
    err = _error_line(capsys)
    assert f"{address}: the scheduler there has no worker (none joined within 1 s)" in err
    assert "dask worker ADDRESS" in err and not out.exists()


@pytest.mark.parametrize("value", ["[1,1", "{a: [" + "x" * 2000])
def test_a_set_value_that_is_not_yaml_names_the_key(built, tmp_path, capsys, value):
    code = main(["build", "volume-folder", "--source", str(built[1]), "--out",
                 str(tmp_path / "o.zarr"), "--set", f"harmonize.spacing={value}"])
    err = _error_line(capsys)
    assert code == 2 and f"--set harmonize.spacing: the value {value[:20]!r}"[:-1] in err
    assert "is not YAML" in err and len(err) < 600
