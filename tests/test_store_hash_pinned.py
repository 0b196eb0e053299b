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
        "65163531e5748d6d9671946e1b9dd6d44c1c179393cd37125a0ed2c059d54fce",
    ("volume-folder", "hdf5"):
        "2451473385d268385697294edc9fbb8f595c5fd7a9cd35ae6b3d10f32e122f43",
    ("class-folders", "zarr"):
        "40ebd672412e80205304576400107e95eaf7c34d6bf6eaaa832f31cff42383e8",
    ("class-folders", "hdf5"):
        "f9678c6b5240f8236ab2071934fd5c7fd4b89c587f4baebfb5a53c25b19e4033",
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
