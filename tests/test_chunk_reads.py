"""One-chunk reads of local stores bypass zarr-python (store/chunk_reads.py) and give
exactly what zarr-python gives."""

from __future__ import annotations

import ast
import shutil
import tomllib
from pathlib import Path

import google_crc32c
import nibabel as nib
import numpy as np
import pytest
import zarr

from medimg_build import build_store, load_recipe, open_store
from medimg_build.errors import StoreError
from medimg_build.store.chunk_reads import (
    CRC32C_BYTES, NO_CHUNK, LocalShardArray, index_entries, index_size, local_shard_array,
)
from medimg_build.store.schema import default_compressor, image_path, mask_path


def _arrays(location, case_id):
    store = open_store(location)
    root = zarr.open_group(location, mode="r")
    case = store.case(case_id)
    return case, root[f"cases/{case_id}/{image_path()}"], root[f"cases/{case_id}/{mask_path()}"]


def test_case_arrays_of_a_local_store_read_through_lean_arrays(reference_stores):
    case, image, mask = _arrays(reference_stores.ct, "ct")
    for name in ("image", "mask"):
        assert isinstance(case[name].variable._data.array, LocalShardArray)
    assert isinstance(local_shard_array(image), LocalShardArray)
    stack = open_store(reference_stores.xray)
    first = stack.cases["case_id"][0]
    np.testing.assert_array_equal(
        stack.case(first)["image"].values,
        zarr.open_group(reference_stores.xray, mode="r")["image"][0])


@pytest.mark.parametrize("selection", [
    (0, 0), (0, -1), (0, 7, slice(10, 40), slice(None, None, 3)), (0, 12, 50), (0, 3, -1, -2),
    (slice(None), 5),  # one channel: still one chunk
    (0, slice(3, 9)),  # several chunks, assembled
    (0, slice(2, 25, 3), slice(5, 50, 7), slice(None, None, 4)),
    (slice(None),),  # the whole image
    (0, slice(9, 3, -1), slice(None, None, -5)),  # reversed
    (0, slice(5, 5)),  # empty
])
def test_selections_equal_zarr_python(reference_stores, selection):
    case, image, _ = _arrays(reference_stores.ct, "ct")
    expected = image[...][selection]  # zarr-python reads, NumPy selects (zarr has no -step)
    np.testing.assert_array_equal(case["image"][selection].values, expected)


def test_empty_mask_slices_are_written_and_read_back(tmp_path):
    """Every chunk is written, an all-zero one too: a chunk missing from a complete
    case is damage (tests/test_read_integrity.py), never a slice of zeros."""
    source = tmp_path / "src"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    rng = np.random.default_rng(0)
    image = rng.integers(-900, 900, (16, 12, 8)).astype(np.int16)
    mask = np.zeros(image.shape, np.uint8)
    mask[4:9, 3:7, 2:5] = 1  # slices 0-1 and 5-7 of the mask stay empty
    for folder, array in (("images", image), ("labels", mask)):
        nib.save(nib.Nifti1Image(array, np.diag([1.0, 1.0, 2.0, 1.0])),
                 source / folder / "case.nii.gz")
    recipe = load_recipe("volume-folder").with_overrides(
        {"labels": {"segmentation": {"classes": {"1": "lesion"}}},
         "harmonize": {"spacing": None}})
    assert build_store(recipe, source, tmp_path / "s.zarr", progress=False).ok
    case, _, stored = _arrays(tmp_path / "s.zarr", "case")
    empty = [z for z in range(stored.shape[0]) if not stored[z].any()]
    assert empty == [0, 1, 5, 6, 7]
    shard = tmp_path / "s.zarr" / "cases" / "case" / mask_path() / "c" / "0" / "0" / "0"
    with open(shard, "rb") as handle:
        index = local_shard_array(stored)._index((0, 0, 0), handle)
    assert not (index[:, 0] == NO_CHUNK).any()
    for z in range(stored.shape[0]):
        np.testing.assert_array_equal(case["mask"][z].values, stored[z])


def test_chunks_of_an_older_store_never_written_read_as_the_fill_value(tmp_path):
    """A store written without checksums (before them) left empty chunks out: the lean
    reader still reads them as fill values, as zarr-python does."""
    group = zarr.open_group(tmp_path / "old.zarr", mode="w")
    array = group.create_array("image", shape=(4, 8, 8), dtype="int16", chunks=(1, 8, 8),
                               shards=(4, 8, 8), compressors=default_compressor())
    values = np.zeros((4, 8, 8), np.int16)
    values[2] = 7
    array[...] = values
    lean = local_shard_array(array)
    assert lean.grid is None  # not checksummed
    with open(tmp_path / "old.zarr" / "image" / "c" / "0" / "0" / "0", "rb") as handle:
        assert np.flatnonzero(lean._index((0, 0, 0), handle)[:, 0] == NO_CHUNK).tolist() \
            == [0, 1, 3]
    for z in range(4):
        np.testing.assert_array_equal(lean._read((z, slice(None), slice(None))), values[z])


def test_a_damaged_shard_index_is_an_error_naming_the_file(reference_stores, tmp_path):
    store = tmp_path / "ct.zarr"
    shutil.copytree(reference_stores.ct, store)
    shard = store / "cases" / "ct" / image_path() / "c" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # inside the index, before its checksum
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="crc32c") as caught:
        open_store(store).case("ct")["image"][0, 0].values
    assert str(caught.value).startswith(f"{store}: cases/ct/{image_path()} shard (0, 0, 0, 0)")


def test_stack_selections_across_shards_equal_zarr_python(reference_stores):
    store = open_store(reference_stores.xray)
    lazy = store.dataset(chunks=None)["image"]  # lean, like store.case()
    assert isinstance(lazy.variable._data.array, LocalShardArray)
    stored = zarr.open_group(reference_stores.xray, mode="r")["image"]
    for selection in [slice(1, 8), slice(None, None, 2), (slice(2, 7), 0, 100),
                      (-1, 0, slice(0, 512, 5))]:
        np.testing.assert_array_equal(lazy[selection].values, stored[selection])


def test_a_damaged_blosc_frame_is_an_error_naming_the_chunk(reference_stores, tmp_path):
    """A Blosc frame damaged under a valid checksum (so the crc32c check passes) is
    still one line naming the store, the array and the chunk."""
    store = tmp_path / "ct.zarr"
    shutil.copytree(reference_stores.ct, store)
    shard = store / "cases" / "ct" / image_path() / "c" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    n_chunks = zarr.open_array(store / "cases" / "ct" / image_path()).nchunks
    offset, nbytes = (int(v) for v in index_entries(bytes(data[-index_size(n_chunks):]))[0])
    frame = offset + nbytes - CRC32C_BYTES
    # The first chunk's Blosc header, all but its decoded size (checked before decoding,
    # test_hostile_stores.py): flags, block and compressed sizes gone.
    data[offset + 2:offset + 4] = bytes(2)
    data[offset + 8:offset + 16] = bytes(8)
    data[frame:frame + CRC32C_BYTES] = google_crc32c.value(bytes(data[offset:frame])
                                                           ).to_bytes(4, "little")
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="cannot be decoded") as caught:
        open_store(store).case("ct")["image"][0, 0].values
    assert str(caught.value).startswith(f"{store}: cases/ct/{image_path()} chunk (0, 0, 0, 0)")


def test_whole_chunks_are_decoded_straight_into_the_result(reference_stores, monkeypatch):
    """A 2D slice, or a run of whole cases of a stack, is decoded into the array returned
    (no decoded copy, then a copy into the result); a part of a chunk is still cut out."""
    destinations = []
    chunk = LocalShardArray._chunk

    def recorded(self, where, out=None):
        destinations.append(out is not None)
        return chunk(self, where, out)

    monkeypatch.setattr(LocalShardArray, "_chunk", recorded)
    case, image, _ = _arrays(reference_stores.ct, "ct")
    np.testing.assert_array_equal(case["image"][0, 7].values, image[0, 7])
    stack = open_store(reference_stores.xray).dataset(chunks=None)["image"]
    stored = zarr.open_group(reference_stores.xray, mode="r")["image"]
    np.testing.assert_array_equal(stack[2:5].values, stored[2:5])
    assert destinations == [True] * 4
    np.testing.assert_array_equal(case["image"][0, 7, 10:20].values, image[0, 7, 10:20])
    assert destinations[-1] is False


def test_no_zarr_name_that_zarr_3_3_deprecates_is_used():
    """zarr 3.3 deprecates ``ShardingCodecIndexLocation`` and ``Endian`` (zarr itself still
    uses them, so they cannot be taken away here): the reads compare the codecs' JSON
    with the spec's values instead (``integrity.codecs_json``)."""
    deprecated = {"ShardingCodecIndexLocation", "Endian"}
    package = Path(__file__).parents[1] / "medimg_build"
    used = sorted(
        f"{path.relative_to(package)}:{node.lineno}"
        for path in package.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and deprecated & {a.name for a in node.names}
        or isinstance(node, ast.Attribute) and node.attr in deprecated)
    assert used == []


def test_zarr_is_pinned_below_its_next_major_version():
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    pins = [d for d in project["project"]["dependencies"] if d.startswith("zarr")]
    assert pins == ["zarr>=3.1,<4"]
