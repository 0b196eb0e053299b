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
        "2dd2d19320cf5aa2401c7efadc0697efc305bfd7bc1b1baaf25e6a87b6c38014",
    ("volume-folder", "hdf5"):
        "872b5cd52db9e895145f7a4121fadab2dc666d79f3ddae9c288cdd7bbd451f21",
    ("class-folders", "zarr"):
        "da122d8c0f92297d227e1404e9f920590aeb33650626ca51d241f1f78657b653",
    ("class-folders", "hdf5"):
        "03927bad394593e75862ccbcd99de378561628e0cfda7df9876a384046392cbd",
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
