"""Stores read from S3 (a moto server, through s3fs) and from a plain HTTP server (through
fsspec): what each read costs in requests and bytes.

Budgets, after ``open_store`` (which itself reads only the root zarr.json):
- a case opens with no request (its metadata is in the consolidated root metadata);
- one 2D slice of a volume is the shard index and one chunk (the issue's test);
- a whole image is its shard, in one request;
- a full scan of a stack store reads each full shard in one request.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.store.chunk_reads import index_size
from medimg_build.store.opening import snapshot_store, verify_store
from medimg_build.store.schema import image_path, mask_path
from reference_stores import CASES_PER_SHARD
from servers import Recorder



@dataclass
class Served:
    """The stores of ``reference_stores`` behind one of the servers."""

    url: Callable[[str], str]  # name -> URL
    options: dict | None  # storage_options
    recorder: Recorder
    put: Callable[[Path, str], None]  # one more local file or folder, by name


@pytest.fixture(params=["s3", "http"])
def server(request, reference_stores) -> Served:
    kind = request.param
    served = request.getfixturevalue(kind)
    if kind == "s3":
        served_as = Served(lambda name: f"s3://bucket/{name}", served.options,
                           served.recorder, lambda path, name: served.upload(path, name))
    else:
        def put(path: Path, name: str) -> None:
            (shutil.copytree if path.is_dir() else shutil.copy)(path, served.root / name)

        served_as = Served(lambda name: f"{served.url}/{name}", None, served.recorder, put)
    for name in ("ct.zarr", "nih.zarr"):
        served_as.put(reference_stores.root / name, name)
    served.recorder.clear()
    return served_as


def _shard(local, *parts: str) -> bytes:
    return local.joinpath(*parts).read_bytes()


def test_a_slice_costs_the_shard_index_and_one_chunk(server, reference_stores):
    url, options, recorder = server.url, server.options, server.recorder
    local = reference_stores.root
    store = open_store(url("ct.zarr"), storage_options=options)
    assert len(recorder.gets()) == 1  # the root zarr.json: consolidated metadata
    case = store.case("ct")
    recorder.clear()

    depth = case["image"].shape[1]
    remote = case["image"][0, depth // 2].values
    np.testing.assert_array_equal(
        remote, open_store(local / "ct.zarr").case("ct")["image"][0, depth // 2].values)
    gets = recorder.gets()
    assert len(gets) <= 2, gets
    shard = _shard(local, "ct.zarr", "cases", "ct", *image_path().split("/"),
                   "c", "0", "0", "0", "0")
    index_bytes = index_size(depth)  # one chunk per slice, one shard per image
    chunk_bytes = (len(shard) - index_bytes) / depth
    assert sum(g.n_bytes for g in gets) <= 1.5 * chunk_bytes + index_bytes


def test_opening_a_case_and_reading_it_whole(server, reference_stores):
    url, options, recorder = server.url, server.options, server.recorder
    local = reference_stores.root
    store = open_store(url("ct.zarr"), storage_options=options)
    ids = store.cases["case_id"].tolist()  # the table: a request per column, at most
    assert len(recorder.gets()) <= 1 + len(store.attrs["table"]["columns"])
    recorder.clear()

    case = store.case(ids[0])
    assert recorder.requests == []  # metadata from the root, coordinates from the affine
    image, mask = case["image"].values, case["mask"].values
    gets = recorder.gets()
    assert sorted(g.key.rsplit("/c/", 1)[0] for g in gets) == sorted(
        f"ct.zarr/cases/ct/{path}" for path in (image_path(), mask_path()))  # each once
    assert all(g.n_bytes is None for g in gets)
    expected = open_store(local / "ct.zarr")
    np.testing.assert_array_equal(image, expected.case("ct")["image"].values)
    np.testing.assert_array_equal(mask, expected.case("ct")["mask"].values)
    assert store.read_image("ct").affine.tolist() == expected.read_image("ct").affine.tolist()


def test_a_full_scan_of_a_stack_store_reads_each_shard_once(server, reference_stores):
    url, options, recorder = server.url, server.options, server.recorder
    local = reference_stores.root
    store = open_store(url("nih.zarr"), storage_options=options)
    ds = store.dataset()
    recorder.clear()

    images = ds["image"].values
    np.testing.assert_array_equal(images, open_store(local / "nih.zarr").dataset()["image"])
    n_cases, per_shard = images.shape[0], CASES_PER_SHARD
    full_shards = n_cases // per_shard
    by_shard = {}
    for get in recorder.gets():
        by_shard.setdefault(get.key, []).append(get)
    assert len(by_shard) == -(-n_cases // per_shard)  # every shard, nothing else
    whole = [key for key, gets in by_shard.items() if [g.n_bytes for g in gets] == [None]]
    assert len(whole) == full_shards
    # The last shard is partly filled: its index, then its chunks.
    assert len(recorder.gets()) <= full_shards + 1 + (n_cases - full_shards * per_shard)



def test_a_snapshot_is_read_in_place_from_its_url(server, reference_stores, tmp_path):
    snapshot = tmp_path / "nih.zarr.zip"
    snapshot_store(reference_stores.xray, snapshot)
    server.put(snapshot, "nih.zarr.zip")
    server.recorder.clear()

    remote = open_store(server.url("nih.zarr.zip"), storage_options=server.options)
    local = open_store(reference_stores.xray)
    assert remote.cases["case_id"].tolist() == local.cases["case_id"].tolist()
    case_id = local.cases["case_id"][0]
    np.testing.assert_array_equal(remote.case(case_id)["image"].values,
                                  local.case(case_id)["image"].values)
    # only ranges of the one file: the zip's directory, then the entries read
    assert {g.key for g in server.recorder.gets()} == {"nih.zarr.zip"}
    assert verify_store(server.url("nih.zarr.zip"), server.options) == []


def test_the_read_commands_take_urls_and_storage_options(server, reference_stores, capsys,
                                                         tmp_path):
    options = [] if server.options is None else ["--storage-options",
                                                 json.dumps(server.options)]
    url = server.url("ct.zarr")
    assert main(["verify", url, *options]) == 0
    assert "verified" in capsys.readouterr().out
    assert main(["validate", url, *options]) == 0
    assert main(["inspect", url, *options]) == 0
    assert "ct" in capsys.readouterr().out
    assert main(["report", url, "--out", str(tmp_path / "report"), *options]) == 0
    assert (tmp_path / "report" / "index.html").is_file()
    assert any((tmp_path / "report" / "images").glob("*.png"))


def test_urls_that_cannot_be_read_are_one_line_errors(capsys):
    assert main(["inspect", "nope://bucket/ds.zarr"]) == 2
    assert main(["inspect", "http://127.0.0.1:9/ds.zarr"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "Protocol not known: nope" in errors[0]
    assert "check the URL, the network" in errors[1]
    with pytest.raises(SystemExit):
        main(["verify", "s3://bucket/ds.zarr", "--storage-options", "[1]"])
    assert "must be a JSON object" in capsys.readouterr().err
