"""A damaged store never reads as wrong pixels or zeros (store/integrity.py): a missing
shard or chunk, or one flipped byte, is a StoreError naming the store, the array and
the chunk, on every read path -- zarr-python (local, zip, S3, HTTP), the lean local
reader (chunk_reads.py) and HDF5 (fletcher32)."""

from __future__ import annotations

import pickle
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import zarr

from medimg_build import open_store
from medimg_build.errors import StoreError
from medimg_build.image import MedicalImage
from medimg_build.store.chunk_reads import NO_CHUNK, index_entries, index_size
from medimg_build.store.opening import snapshot_store
from medimg_build.store.schema import image_path, mask_path

import test_store_stack as stack_tests  # noqa: E402  (tests/ is on sys.path)
import test_store_volumes as volumes_tests  # noqa: E402
import test_store_formats as formats_tests  # noqa: E402

VOLUME = "liver_00"  # the damaged case of the volumes store
STACK_CASE = 3  # ... and of the stack store (index; shard 1 of k=2: cases 2 and 3)


def volume_cases():
    cases = [volumes_tests.ct_case(0), volumes_tests.ct_case(1)]
    mask = cases[0].mask.array.copy()
    mask[..., 1] = 0  # an empty mask slice: written all the same
    cases[0].mask = MedicalImage(mask, cases[0].mask.affine)
    return cases


def stack_cases():
    return formats_tests.stack_cases(5)


@dataclass(frozen=True)
class Damaged:
    """A store, the case to damage, and where its image lives."""

    layout: str
    path: Path
    case_id: str
    array: str  # the image array's path in the store
    shard: Path  # the shard file holding the case's image
    chunks: Callable[[int], list[tuple[int, ...]]]  # channel-0 chunks of slice z


def build(tmp_path: Path, layout: str, suffix: str = ".zarr") -> Damaged:
    if layout == "volumes":
        path = volumes_tests.build(tmp_path / f"v{suffix}", volume_cases())
        array = f"cases/{VOLUME}/{image_path()}"
        return Damaged(layout, path, VOLUME, array, path / array / "c" / "0" / "0" / "0" / "0",
                       lambda z: [(0, z, 0, 0)])
    path = stack_tests.build(tmp_path / f"s{suffix}", stack_cases(), k=2)
    case_id = stack_cases()[STACK_CASE].case_id
    return Damaged(layout, path, case_id, "image", path / "image" / "c" / "1" / "0" / "0" / "0",
                   lambda z: [(STACK_CASE, 0, 0, 0)])


# -- the reads: (name, function of (store, damaged, z), chunks it uses: None = all) ------
def _read_image(store, d: Damaged, z: int):
    return store.read_image(d.case_id).array


def _lean_slice(store, d: Damaged, z: int):  # store.case() without Dask: the lean reader
    image = store.case(d.case_id)["image"]
    return (image[0, z] if d.layout == "volumes" else image[0]).values


def _zarr_slice(store, d: Damaged, z: int):  # Dask-backed: xarray over zarr-python
    image = store.case(d.case_id, chunks={})["image"]
    return (image[0, z] if d.layout == "volumes" else image[0]).values


def _mask(store, d: Damaged, z: int):
    return store.read_mask(d.case_id).array


READS = [("read_image", _read_image, "case"), ("lean slice", _lean_slice, "slice"),
         ("zarr-python slice", _zarr_slice, "slice")]


def _used(d: Damaged, entries: np.ndarray, scope: str, z: int, size: int) -> set[int]:
    """The bytes of the shard file a read uses: its index and its chunks' bytes (a read
    of every chunk of a volumes shard fetches the whole file)."""
    if scope == "case" and d.layout == "volumes":
        return set(range(size))
    per_shard = _per_shard(d)
    if scope == "case":  # the stack case's chunks: every channel of it
        local = [np.ravel_multi_index((STACK_CASE % per_shard[0], c, 0, 0), per_shard)
                 for c in range(per_shard[1])]
    else:
        local = [np.ravel_multi_index(tuple(c % p for c, p in zip(chunk, per_shard)),
                                      per_shard) for chunk in d.chunks(z)]
    used = set(range(size - index_size(len(entries)), size))
    for position in local:
        offset, nbytes = (int(v) for v in entries[position])
        used |= set(range(offset, offset + nbytes))
    return used


def _per_shard(d: Damaged) -> tuple[int, ...]:
    array = zarr.open_array(d.path / d.array, mode="r")
    return tuple(s // c for s, c in zip(array.shards, array.chunks))


def _flip(path: Path, position: int) -> bytes:
    data = path.read_bytes()
    damaged = bytearray(data)
    damaged[position] ^= 0x5A
    path.write_bytes(bytes(damaged))
    return data


def _outcome(read, location, d: Damaged, z: int):
    try:
        return read(open_store(location), d, z)
    except StoreError as error:
        return error


def _assert_names(error: StoreError, location, d: Damaged) -> None:
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"{location}: {d.array} ")
    assert "shard (" in message or "chunk (" in message


# -- 1. a missing shard is an error, not zeros ------------------------------------------
@pytest.mark.parametrize("layout", ["volumes", "stack"])
@pytest.mark.parametrize("name,read,scope", READS)
def test_a_deleted_shard_is_an_error_naming_store_array_and_shard(tmp_path, layout, name,
                                                                  read, scope):
    d = build(tmp_path, layout)
    store = open_store(d.path)  # opened before the shard goes (an --overwrite under it)
    d.shard.unlink()
    with pytest.raises(StoreError, match="is missing") as caught:
        read(store, d, 1)
    _assert_names(caught.value, d.path, d)


def test_a_pickled_store_still_checks(tmp_path):
    """A lazy case sent to another process (Dask, a spawned DataLoader worker) checks
    its reads there too (the store wrapper then finds the array metadata itself)."""
    d = build(tmp_path, "volumes")
    case = pickle.loads(pickle.dumps(open_store(d.path).case(d.case_id, chunks={})))
    d.shard.unlink()
    with pytest.raises(StoreError, match="is missing") as caught:
        case["image"][0, 1].values
    _assert_names(caught.value, d.path, d)


@pytest.mark.parametrize("layout", ["volumes", "stack"])
def test_a_deleted_mask_shard_is_an_error(tmp_path, layout):
    d = build(tmp_path, layout)
    mask = (f"cases/{VOLUME}/{mask_path()}" if layout == "volumes" else "mask")
    shard = "c/0/0/0" if layout == "volumes" else "c/1/0/0"
    (d.path / mask / shard).unlink()
    with pytest.raises(StoreError, match=f"{mask} shard .* is missing"):
        _mask(open_store(d.path), d, 1)


def test_an_empty_mask_slice_is_written(tmp_path):
    """All-zero chunks are stored (write_empty_chunks), so that "missing" means damage."""
    d = build(tmp_path, "volumes")
    mask = zarr.open_array(d.path / f"cases/{VOLUME}/{mask_path()}", mode="r")
    assert not mask[1].any()
    raw = (d.path / f"cases/{VOLUME}/{mask_path()}" / "c" / "0" / "0" / "0").read_bytes()
    assert not (index_entries(raw[-index_size(mask.nchunks):])[:, 0] == NO_CHUNK).any()


@pytest.mark.parametrize("layout", ["volumes", "stack"])
def test_a_chunk_missing_from_its_shard_index_is_an_error(tmp_path, layout):
    """An index entry emptied (and its crc32c recomputed, so the index itself passes)."""
    import google_crc32c

    d = build(tmp_path, layout)
    raw = bytearray(d.shard.read_bytes())
    n = int(np.prod(_per_shard(d)))
    index = index_entries(bytes(raw[-index_size(n):])).copy()
    position = np.ravel_multi_index(
        tuple(c % p for c, p in zip(d.chunks(1)[0], _per_shard(d))), _per_shard(d))
    index[position] = NO_CHUNK
    body = index.astype("<u8").tobytes()
    raw[-index_size(n):] = body + google_crc32c.value(body).to_bytes(4, "little")
    d.shard.write_bytes(bytes(raw))
    for _, read, scope in READS:
        with pytest.raises(StoreError, match="is missing from its shard") as caught:
            read(open_store(d.path), d, 1)
        _assert_names(caught.value, d.path, d)


# -- 2. a flipped byte is an error or a read that does not use it -------------------------
@pytest.mark.parametrize("layout", ["volumes", "stack"])
def test_a_flipped_byte_never_reads_as_wrong_pixels(tmp_path, layout):
    """One byte flipped at positions across the whole shard file, the index included:
    each read raises StoreError exactly when it uses that byte, and otherwise returns
    exactly the stored pixels."""
    d = build(tmp_path, layout)
    z = 2
    expected = {name: read(open_store(d.path), d, z) for name, read, _ in READS}
    pristine = d.shard.read_bytes()
    size = len(pristine)
    entries = index_entries(pristine[-index_size(int(np.prod(_per_shard(d)))):])
    used = {name: _used(d, entries, scope, z, size) for name, _, scope in READS}
    index_start = size - index_size(len(entries))
    positions = sorted(set(range(0, size, max(1, size // 60)))
                       | set(range(index_start, size, 5)) | {size - 1})
    outcomes = {"raised": 0, "read": 0}
    for position in positions:
        _flip(d.shard, position)
        for name, read, _ in READS:
            got = _outcome(read, d.path, d, z)
            if position in used[name]:
                assert isinstance(got, StoreError), (name, position)
                _assert_names(got, d.path, d)
                outcomes["raised"] += 1
            else:
                assert not isinstance(got, StoreError), (name, position, got)
                np.testing.assert_array_equal(got, expected[name])
                outcomes["read"] += 1
        d.shard.write_bytes(pristine)
    assert outcomes["raised"] > 50 and outcomes["read"] > 20  # both kinds were tried


@pytest.mark.parametrize("layout", ["volumes", "stack"])
def test_a_flipped_byte_in_a_snapshot_zip(tmp_path, layout):
    """The same, read in place from a snapshot zip (zarr-python's ZipStore). Reading a
    member to its end (as the shard index is read) also checks the zip's own CRC-32 of
    the whole member (Python < 3.12 seeks by reading): that too is a StoreError."""
    d = build(tmp_path, layout)
    zip_path = tmp_path / "snap.zarr.zip"
    snapshot_store(d.path, zip_path)
    z = 2
    expected = {name: read(open_store(zip_path), d, z) for name, read, _ in READS}
    pristine = zip_path.read_bytes()
    shard = d.shard.read_bytes()
    start = pristine.find(shard)
    entries = index_entries(shard[-index_size(int(np.prod(_per_shard(d)))):])
    used = {name: _used(d, entries, scope, z, len(shard)) for name, _, scope in READS}
    for offset in range(0, len(shard), max(1, len(shard) // 25)):
        _flip(zip_path, start + offset)
        for name, read, _ in READS:
            got = _outcome(read, zip_path, d, z)
            if offset in used[name]:
                assert isinstance(got, StoreError), (name, offset)
                _assert_names(got, zip_path, d)
            elif isinstance(got, StoreError):
                assert "fails the zip's check" in str(got)
                _assert_names(got, zip_path, d)
            else:
                np.testing.assert_array_equal(got, expected[name])
        zip_path.write_bytes(pristine)


def test_a_shard_missing_from_a_snapshot_zip(tmp_path):
    d = build(tmp_path, "volumes")
    snapshot_store(d.path, tmp_path / "full.zip")
    member = d.shard.relative_to(d.path).as_posix()
    with zipfile.ZipFile(tmp_path / "full.zip") as full, \
            zipfile.ZipFile(tmp_path / "snap.zarr.zip", "w") as cut:
        for info in full.infolist():
            if info.filename != member:
                cut.writestr(info, full.read(info))
    for _, read, _ in READS:
        with pytest.raises(StoreError, match="is missing") as caught:
            read(open_store(tmp_path / "snap.zarr.zip"), d, 1)
        _assert_names(caught.value, tmp_path / "snap.zarr.zip", d)


# -- remote stores ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["s3", "http"])
def test_remote_reads_check_every_chunk(request, tmp_path, kind):
    """S3 and HTTP: a flipped byte in slice 2's chunk fails reads of it and not of
    slice 1; a deleted shard fails every read."""
    served = request.getfixturevalue(kind)
    d = build(tmp_path, "volumes")
    entries = index_entries(d.shard.read_bytes()[-index_size(int(np.prod(_per_shard(d)))):])
    offset, nbytes = (int(v) for v in entries[2])  # slice 2 of channel 0
    _flip(d.shard, offset + nbytes // 2)
    bad = tmp_path / "bad.zarr"
    shutil.copytree(d.path, bad)
    (d.shard).unlink()

    def url(name: str, local: Path) -> tuple[str, dict | None]:
        if kind == "s3":
            return served.upload(local, name), served.options
        shutil.copytree(local, served.root / name)
        return f"{served.url}/{name}", None

    location, options = url("bad.zarr", bad)
    store = open_store(location, options)
    for read in (_zarr_slice, _read_image):
        with pytest.raises(StoreError, match=r"chunk \(0, 2, 0, 0\) fails its crc32c") as err:
            read(store, d, 2)
        _assert_names(err.value, location, d)
    good = _zarr_slice(store, d, 1)
    np.testing.assert_array_equal(good, _zarr_slice(open_store(bad), d, 1))
    location, options = url("gone.zarr", d.path)
    with pytest.raises(StoreError, match="is missing") as err:
        _zarr_slice(open_store(location, options), d, 1)
    _assert_names(err.value, location, d)


# -- HDF5: fletcher32 --------------------------------------------------------------------
def _h5_chunks(path: Path, name: str) -> list[tuple[tuple[int, ...], range]]:
    """(chunk coordinates, its bytes in the file) of every chunk of a dataset."""
    with h5py.File(path, "r") as f:
        dataset = f[name]
        infos = [dataset.id.get_chunk_info(i) for i in range(dataset.id.get_num_chunks())]
        return [(tuple(o // c for o, c in zip(info.chunk_offset, dataset.chunks)),
                 range(info.byte_offset, info.byte_offset + info.size)) for info in infos]


@pytest.mark.parametrize("layout", ["volumes", "stack"])
def test_hdf5_chunks_carry_fletcher32_and_a_flip_is_a_store_error(tmp_path, layout):
    """Bytes of every chunk of the image dataset flipped one at a time: a read that
    uses the damaged chunk raises StoreError naming the file, the dataset and the
    chunk; every other read returns exactly the stored pixels."""
    d = build(tmp_path, layout, suffix=".h5")
    with h5py.File(d.path, "r") as f:
        assert f[d.array].fletcher32
    z = 2
    reads = [("read_image", _read_image), ("slice", _zarr_slice), ("mask", _mask)]
    expected = {name: read(open_store(d.path), d, z) for name, read in reads}

    def uses(name: str, chunk: tuple[int, ...]) -> bool:
        if name == "mask":
            return False
        if name == "slice":
            return chunk == d.chunks(z)[0]
        return layout == "volumes" or chunk[0] == STACK_CASE

    pristine = d.path.read_bytes()
    raised = 0
    for chunk, where in _h5_chunks(d.path, d.array):
        for position in where[::max(1, len(where) // 4)]:
            _flip(d.path, position)
            for name, read in reads:
                got = _outcome(read, d.path, d, z)
                if uses(name, chunk):
                    assert isinstance(got, StoreError), (name, chunk, position)
                    assert str(got).startswith(f"{d.path}: {d.array} chunk {chunk} fails "
                                               "its fletcher32 checksum"), str(got)
                    raised += 1
                else:
                    np.testing.assert_array_equal(got, expected[name])
            d.path.write_bytes(pristine)
    assert raised >= 8
