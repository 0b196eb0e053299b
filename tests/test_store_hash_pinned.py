"""The bytes of a store, pinned: a content hash recorded for fixed inputs in each layout
and format, so that a change of how stores are written (issue 17's store/ redesign) is
seen to leave them as they were. A change that alters the bytes on purpose records the
new hashes here and says why in its commit.

Recorded at edb33bb (issue 16 merged), with the library versions pinned in the project's
environment: a zarr, numcodecs or h5py release that writes other bytes changes them too.
Moved on purpose by issue 19: every store records the pyarrow version among its
software versions, and a Zarr store holds its case table as cases.parquet (a pyarrow
release that writes other bytes changes the Zarr pins too). Moved again for the
Zarr stores by issue 19's red team: cases.parquet types text as Arrow string, not the
large_string pandas 3 holds it as (the file's bytes no longer follow pandas' setting)."""

from __future__ import annotations


import pytest

from medimg_build import open_store
from medimg_build.cli import main

from fixtures import class_folders, volume_folder

PINNED = {
    ("volume-folder", "zarr"):
        "e36a29d17669fd89cbd2099b951971b4e246ff9bb54f677a0f8ed41bd39104f8",
    ("volume-folder", "hdf5"):
        "96381a54f751c43015377e0e2a36c3551aab67ab934f0f39834262551b64cd35",
    ("class-folders", "zarr"):
        "b273483d10a3aa1a06f32e706a998abf29afdc421fb7566ba20fee3af3df7905",
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
