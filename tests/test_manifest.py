"""Content manifest, verify and snapshots: equal inputs give one content hash (and, with
the provenance pinned, byte-identical snapshots); any changed byte is found and named."""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from datetime import datetime, timezone

import h5py
import numpy as np
import pytest
import zarr

from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.recipe import build as build_module
from medimg_build.store.opening import snapshot_store, verify_store
from medimg_build.store.schema import image_path
from medimg_build.store.validate import validate_store
from test_resume import _args, _volume_source


class _FixedClock(datetime):
    """``provenance.built_at`` and ``build_report.seconds`` are the places a build records
    its time on purpose (in the root zarr.json, out of the content hash): pinned, the
    snapshots of two builds must be byte-identical."""

    @classmethod
    def now(cls, tz=None):
        return datetime(2024, 1, 1, tzinfo=timezone.utc)


class _FixedTimer:
    perf_counter = staticmethod(lambda: 0.0)


def _build(source, out, clock=None):
    with pytest.MonkeyPatch.context() as patch:
        if clock:
            patch.setattr(build_module, "datetime", clock)
            patch.setattr(build_module, "time", _FixedTimer)
        assert main(_args("volumes", source, out) + ["--workers", "1"]) == 0
    return zarr.open_group(out, mode="r").attrs["medimg"]["manifest"]["content_sha256"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifest")
    source = _volume_source(root / "nifti")
    first = root / "a" / "ds.zarr"
    hashes = [_build(source, first, _FixedClock)]
    time.sleep(1)  # another second: any timestamp inside the data would differ
    second = root / "elsewhere" / "b" / "ds.zarr"
    hashes.append(_build(source, second, _FixedClock))
    return root, source, first, second, hashes


def test_two_builds_at_different_times_and_places_have_one_content_hash(built):
    root, source, first, second, hashes = built
    assert hashes[0] == hashes[1]
    # the real build time differs, and stays out of the hash
    assert _build(source, root / "c" / "ds.zarr") == hashes[0]
    a, b = snapshot_store(first, root / "a.zip"), snapshot_store(second, root / "b.zip")
    assert a == b
    assert (root / "a.zip").read_bytes() == (root / "b.zip").read_bytes()
    with zipfile.ZipFile(root / "a.zip") as zf:
        names = zf.namelist()
        assert names == sorted(names) and not any(".medimg-build" in n for n in names)
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


def test_a_flipped_byte_in_a_chunk_is_named_by_array_and_chunk(built, tmp_path, capsys):
    store = tmp_path / "ds.zarr"
    shutil.copytree(built[2], store)
    chunk = store / "cases" / "case1" / "scale0" / "image" / "c" / "0" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    assert [str(m) for m in verify_store(store)] == [
        "cases/case1/scale0/image: chunk c/0/0/0/0 sha256 differs"]
    assert main(["verify", str(store)]) == 1
    assert "cases/case1/scale0/image: chunk c/0/0/0/0 sha256 differs" in capsys.readouterr().out
    assert main(["snapshot", str(store), str(tmp_path / "ds.zip")]) == 2
    assert "does not verify, so no snapshot was written" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.zip"))


def test_a_deleted_chunk_and_an_extra_file_are_reported(built, tmp_path):
    store = tmp_path / "ds.zarr"
    shutil.copytree(built[2], store)
    mask = store / "cases" / "case2" / "labels" / "mask" / "mask"
    (mask / "c" / "0" / "0" / "0").unlink()
    (store / "cases" / "case2" / "stray.bin").write_bytes(b"x")
    assert sorted(str(m) for m in verify_store(store)) == [
        "cases/case2/labels/mask/mask: chunk c/0/0/0 missing",
        "cases/case2: object stray.bin extra (not in the manifest)"]


def test_changed_root_attributes_change_the_content_hash(built, tmp_path):
    store = tmp_path / "ds.zarr"
    shutil.copytree(built[2], store)
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["medimg"]["organ"] = "elsewhere"
    (store / "zarr.json").write_text(json.dumps(meta))
    [mismatch] = verify_store(store)
    assert "root attributes changed" in str(mismatch)


CONSOLIDATED_EDIT = ("cases/case0: its copy in the consolidated metadata of the root "
                     "zarr.json differs from its own zarr.json")


def _edit_consolidated_affine(store) -> None:
    """Case0's x spacing 1.5 -> 3.0 mm in the root zarr.json only, where open_store
    reads it (the case's own zarr.json, which the manifest hashes, is untouched)."""
    meta = json.loads((store / "zarr.json").read_text())
    case = meta["consolidated_metadata"]["metadata"]["cases/case0"]["attributes"]
    assert case["medimg_case"]["affine"][0][0] == 1.5
    case["medimg_case"]["affine"][0][0] = 3.0
    (store / "zarr.json").write_text(json.dumps(meta))


def test_geometry_edited_in_the_consolidated_metadata_is_found(built, tmp_path, capsys):
    store = tmp_path / "ds.zarr"
    shutil.copytree(built[2], store)
    _edit_consolidated_affine(store)
    assert open_store(store).read_image("case0").affine[0, 0] == 3.0  # readers see it
    assert [str(m) for m in verify_store(store)] == [CONSOLIDATED_EDIT]
    assert [str(v) for v in validate_store(store)] == [CONSOLIDATED_EDIT]
    assert main(["verify", str(store)]) == 1
    assert CONSOLIDATED_EDIT in capsys.readouterr().out
    # no snapshot of it: the zip would be shared under a hash its content does not have
    capsys.readouterr()
    assert main(["snapshot", str(store), str(tmp_path / "ds.zip")]) == 2
    assert f"{store}: does not verify, so no snapshot was written (1 problem(s), the " \
        f"first: {CONSOLIDATED_EDIT})" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.zip"))


def test_a_node_missing_from_the_consolidated_metadata_is_found(built, tmp_path):
    store = tmp_path / "ds.zarr"
    shutil.copytree(built[2], store)
    meta = json.loads((store / "zarr.json").read_text())
    del meta["consolidated_metadata"]["metadata"]["cases/case3"]
    (store / "zarr.json").write_text(json.dumps(meta))
    assert [str(m) for m in verify_store(store)] == [
        "cases/case3: missing from the consolidated metadata in the root zarr.json"]


def test_a_snapshot_reads_back_like_the_store_and_verifies(built, capsys):
    root, _, first, _, hashes = built
    snapshot = root / "snap.zarr.zip"
    assert main(["snapshot", str(first), str(snapshot)]) == 0
    assert hashes[0] in capsys.readouterr().out
    directory, packed = open_store(first), open_store(snapshot)
    assert list(packed.cases["case_id"]) == list(directory.cases["case_id"])
    for case_id in directory.cases["case_id"]:
        np.testing.assert_array_equal(packed.case(case_id)["image"].values,
                                      directory.case(case_id)["image"].values)
    assert verify_store(snapshot) == []
    assert main(["verify", str(snapshot)]) == 0
    # 122: the case table's mask_values column is an array and its chunk. 142 (schema
    # 3.0): each of the 4 masks has its z, y, x (3 arrays and their chunks) and no scale0/.
    # 143: and the table as cases.parquet.
    assert f"verified 143 objects, content sha256 {hashes[0]}" in capsys.readouterr().out


def test_cli_errors(built, tmp_path, capsys):
    assert main(["verify", str(built[2])]) == 0
    assert main(["verify", str(tmp_path / "nothing.zarr")]) == 2
    assert main(["snapshot", str(built[2]), str(tmp_path / "out.tar")]) == 2
    assert "must be a .zip" in capsys.readouterr().err


@pytest.fixture(scope="module")
def built_hdf5(built):
    root, source = built[0], built[1]
    paths = [root / "h5a" / "ds.h5", root / "h5b" / "elsewhere" / "ds.h5"]
    for path in paths:
        assert main(_args("volumes", source, path) + ["--workers", "1"]) == 0
    return paths


def _hdf5_hash(path) -> str:
    with h5py.File(path, "r") as h5:
        return json.loads(h5.attrs["medimg"])["manifest"]["content_sha256"]


def test_hdf5_stores_carry_a_manifest_with_one_content_hash(built_hdf5, capsys):
    first, second = built_hdf5
    assert _hdf5_hash(first) == _hdf5_hash(second)
    assert verify_store(first) == []
    assert main(["verify", str(first)]) == 0
    assert f"content sha256 {_hdf5_hash(first)}" in capsys.readouterr().out
    assert "manifest" not in open_store(first).dataset().to_dataset()  # not data
    assert main(["snapshot", str(first), str(first.parent / "s.zip")]) == 2
    assert "an HDF5 store is one file already" in capsys.readouterr().err


def test_a_flipped_byte_in_an_hdf5_chunk_is_named_by_dataset_and_chunk(built_hdf5, tmp_path):
    store = tmp_path / "ds.h5"
    shutil.copy(built_hdf5[0], store)
    with h5py.File(store, "r") as h5:
        image = h5[f"cases/case1/{image_path()}"]
        chunk = image.id.get_chunk_info(2)
        grid = [o // c for o, c in zip(chunk.chunk_offset, image.chunks)]
    with open(store, "r+b") as handle:
        handle.seek(chunk.byte_offset + chunk.size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    chunk_key = "c/" + "/".join(map(str, grid))
    expected = f"cases/case1/{image_path()}: chunk {chunk_key} sha256 differs"
    assert [str(m) for m in verify_store(store)] == [expected]


def test_changed_hdf5_attributes_are_found(built_hdf5, tmp_path):
    store = tmp_path / "ds.h5"
    shutil.copy(built_hdf5[0], store)
    with h5py.File(store, "r+") as h5:
        h5["cases/case2"].attrs["note"] = json.dumps("edited")
        medimg = json.loads(h5.attrs["medimg"])
        h5.attrs["medimg"] = json.dumps({**medimg, "organ": "elsewhere"})
    assert sorted(str(m) for m in verify_store(store)) == [
        "/: metadata sha256 differs", "cases/case2: metadata sha256 differs"]
    with h5py.File(store, "r+") as h5:
        del h5["cases/case2"].attrs["note"]
    assert [str(m) for m in verify_store(store)] == ["/: metadata sha256 differs"]
