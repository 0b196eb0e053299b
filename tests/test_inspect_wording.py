"""``medimg-build inspect`` on each kind of store (issue 19, red team): an HDF5 file is
not described with shards it does not have, and its size is given like a folder's; a
store whose every case failed says it has no arrays, and names each failed case once;
splits read as words, not a Python dict; ``inspect STORE | head`` ends quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medimg_build.cli import main
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

from fixtures import volume_folder


@pytest.fixture(scope="module")
def hdf5_volumes(tmp_path_factory) -> Path:
    return volume_folder.built(tmp_path_factory.mktemp("h5"), "ct.h5")


def _inspect(store: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["inspect", str(store)]) == 0
    return capsys.readouterr().out


def test_an_hdf5_file_has_no_shards_and_a_size(hdf5_volumes, capsys):
    out = _inspect(hdf5_volumes, capsys)
    image = next(line for line in out.splitlines() if "scale0/image" in line)
    assert "shards" not in image  # was "shards whole array": HDF5 has chunks only
    assert "chunks (1, 1, all, all)" in image and "fletcher32" in image
    size = os.path.getsize(hdf5_volumes) / 1e6
    assert f"on disk     {size:.2f} MB in 1 file" in out


def test_splits_are_words(hdf5_volumes, capsys):
    out = _inspect(hdf5_volumes, capsys)
    line = next(line for line in out.splitlines() if line.startswith("  cases"))
    assert "{" not in line and "'" not in line
    assert line.startswith("  cases       3 cases complete; splits train ")


def test_a_store_whose_every_case_failed(tmp_path, capsys):
    for name in ("benign/a.png", "malignant/b.png"):
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(b"not a png")
    store = tmp_path / "failed.zarr"
    assert not build_store(load_recipe("class-folders"), tmp_path / "src", store,
                           progress=False).ok
    out = _inspect(store, capsys)
    assert "  cases       0 cases complete\n" in out
    assert "  arrays      none: no case was built" in out
    assert "    failed benign_a: not a PNG image" in out  # not "benign_a: benign_a: ..."


def test_a_reader_that_leaves_early_is_no_error(hdf5_volumes):
    """``inspect STORE | head -1``: Python raised BrokenPipeError with a traceback."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-m", "medimg_build.cli", "inspect",
                                str(hdf5_volumes)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    process.stdout.close()  # the reader is gone before anything is written
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
