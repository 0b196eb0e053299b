"""The bytes of a store, pinned: a content hash recorded for fixed inputs in each layout
and format, so that a change of how stores are written (issue 17's store/ redesign) is
seen to leave them as they were. A change that alters the bytes on purpose records the
new hashes here and says why in its commit.

Recorded at edb33bb (issue 16 merged), with the library versions pinned in the project's
environment: a zarr, numcodecs or h5py release that writes other bytes changes them too."""

from __future__ import annotations


import pytest

from medimg_build import open_store
from medimg_build.cli import main

from fixtures import class_folders, volume_folder

PINNED = {
    ("volume-folder", "zarr"):
        "892510fff7c7e67a5b63080d4c672f06696d1a5e82a157736c6a56e30576167e",
    ("volume-folder", "hdf5"):
        "4bc954fc82d1508a7cd1cb50d47ebfd7c9fcbf2ba1843f92aaf7934583ecd75f",
    ("class-folders", "zarr"):
        "7454f467c8ac41687766d0bcbb9f2b4884f6066caf61eea61be23d294c9b0d15",
    ("class-folders", "hdf5"):
        "ced6e2c44b1acc909b5ab0370d12249893c2679877111354c6548fc39cfde72d",
}
FIXTURES = {"volume-folder": volume_folder.make, "class-folders": class_folders.make}


@pytest.mark.parametrize("recipe, fmt", sorted(PINNED))
def test_a_store_is_the_bytes_it_was(tmp_path, monkeypatch, recipe, fmt):
    source = tmp_path / "source"
    FIXTURES[recipe](source)
    out = tmp_path / ("store.h5" if fmt == "hdf5" else "store.zarr")
    monkeypatch.chdir(tmp_path)
    assert main(["build", recipe, "--source", "source", "--out", out.name, "--format", fmt,
                 "--quiet"]) == 0
    assert open_store(out).attrs["manifest"]["content_sha256"] == PINNED[recipe, fmt]
