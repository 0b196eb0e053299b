"""The bytes of a store, pinned: a content hash recorded for fixed inputs in each layout
and format, so that a change of how stores are written (issue 17's store/ redesign) is
seen to leave them as they were. A change that alters the bytes on purpose records the
new hashes here and says why in its commit.

Recorded at edb33bb (issue 16 merged), with the library versions pinned in the project's
environment: a zarr, numcodecs or h5py release that writes other bytes changes them too.
Moved on purpose by issue 19: every store records the pyarrow version among its
software versions, and a Zarr store holds its case table as cases.parquet (a pyarrow
release that writes other bytes changes the Zarr pins too)."""

from __future__ import annotations


import pytest

from medimg_build import open_store
from medimg_build.cli import main

from fixtures import class_folders, volume_folder

PINNED = {
    ("volume-folder", "zarr"):
        "66d897f0d82eaf8268864c8f7cfac6cc2e5867be81923e0da1c928bebb362de1",
    ("volume-folder", "hdf5"):
        "96381a54f751c43015377e0e2a36c3551aab67ab934f0f39834262551b64cd35",
    ("class-folders", "zarr"):
        "6dff54810752a56d7f74c9d9afadef53c4685e499a5d414ef4e868025b642f47",
    ("class-folders", "hdf5"):
        "b98dd783a234f033399a099dd48a325ed04e4c8bddb1c1cdd92b93ae7416876d",
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
