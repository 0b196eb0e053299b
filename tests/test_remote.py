"""Stores read from S3 (a moto server on 127.0.0.1, through s3fs): one slice of a volume
costs the shard index and the chunk, nothing more."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest

from medimg_build import build_store, load_recipe, open_store


@pytest.fixture
def s3(tmp_path):
    """A bucket on a local moto S3 server and the storage options to reach it."""
    s3fs = pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    options = {"key": "test", "secret": "test",
               "client_kwargs": {"endpoint_url": f"http://{host}:{port}",
                                 "region_name": "us-east-1"}}
    fs = s3fs.S3FileSystem(**options)
    fs.call_s3("create_bucket", Bucket="bucket")
    yield fs, options
    server.stop()


def _built_store(tmp_path):
    source = tmp_path / "src"
    (source / "images").mkdir(parents=True)
    volume = np.random.default_rng(0).integers(-1000, 1000, (64, 64, 40)).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.diag([-1.0, -1.0, 2.0, 1.0])),
             source / "images" / "ct.nii.gz")
    out = tmp_path / "ds.zarr"
    recipe = load_recipe("volume-folder").with_overrides(
        {"labels": None, "harmonize": {"spacing": None}})
    assert build_store(recipe, source, out, progress=False).ok
    return out


def test_a_slice_from_s3_costs_the_shard_index_and_one_chunk(s3, tmp_path, monkeypatch):
    fs, options = s3
    local = _built_store(tmp_path)
    fs.put(str(local), "bucket/ds.zarr", recursive=True)

    store = open_store("s3://bucket/ds.zarr", storage_options=options)
    assert store.cases["case_id"].tolist() == ["ct"]
    case = store.case("ct")

    # Count S3 calls from here on (s3fs funnels every request through _call_s3).
    import s3fs

    calls = []
    original = s3fs.S3FileSystem._call_s3

    async def counting(self, method, *args, **kwargs):
        calls.append((method, kwargs.get("Key"), kwargs.get("Range")))
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counting)
    remote = case["image"][0, 10].values
    expected = open_store(local).case("ct")["image"][0, 10].values
    np.testing.assert_array_equal(remote, expected)

    gets = [c for c in calls if c[0] == "get_object"]
    assert len(gets) <= 2, calls
    read = 0
    for _, _, byte_range in gets:  # "bytes=-N" (suffix) or "bytes=a-b"
        start, _, end = byte_range.removeprefix("bytes=").partition("-")
        read += int(end) if not start else int(end) - int(start) + 1
    shard = local / "cases" / "ct" / "scale0" / "image" / "c" / "0" / "0" / "0" / "0"
    chunks = 40  # one chunk per slice, one shard per array
    index_bytes = chunks * 16 + 4  # (offset, length) per chunk + crc32c
    chunk_bytes = (shard.stat().st_size - index_bytes) / chunks
    assert read <= 1.5 * chunk_bytes + index_bytes, (read, chunk_bytes)
