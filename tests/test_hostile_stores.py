"""Stores come from other labs, so a store is hostile input too: it must not make its
reader read files of the reader's own machine, nor allocate more than its arrays hold.

HDF5 follows external links, external raw storage and virtual datasets on read; a Zarr
folder may hold symbolic links, a chunk may declare any decoded size, a snapshot member
may be compressed. medimg-build writes none of these, so each is refused where a reader
meets it."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import google_crc32c
import h5py
import nibabel as nib
import numpy as np
import pytest
import zarr
from numcodecs import Blosc

from medimg_build.errors import StoreError
from medimg_build.limits import max_voxels
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store import open_store
from medimg_build.store.integrity import checksummed_array, index_entries, index_size
from medimg_build.store.validate import validate_store
from peak_memory import run_measured

IMAGE = "cases/a/scale0/image"
SECRET = b"PRIVATE KEY OF THE READER "


def _store_of_one_case(root: Path, name: str, shape: tuple[int, ...]) -> Path:
    """A store of one NIfTI volume ``a`` of ``shape``, on its own grid."""
    (root / "src" / "images").mkdir(parents=True)
    image = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    nib.save(nib.Nifti1Image(image, np.eye(4)), root / "src" / "images" / "a.nii.gz")
    recipe = load_recipe("volume-folder").with_overrides({"harmonize": {"spacing": None}})
    assert build_store(recipe, root / "src", root / name, progress=False).ok
    return root / name


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return _store_of_one_case(tmp_path_factory.mktemp("hostile_store"), "store.h5", (6, 5, 4))


def _altered(built: Path, tmp_path: Path, how: str) -> Path:
    """A copy of the store whose image reads the reader's own file ``secret.bin``."""
    store, secret = tmp_path / "store.h5", tmp_path / "secret.bin"
    store.write_bytes(built.read_bytes())
    with h5py.File(store, "a") as h5:
        old = h5[IMAGE]
        shape, dtype, attrs = old.shape, old.dtype, dict(old.attrs)
        size = int(np.prod(shape)) * dtype.itemsize
        secret.write_bytes((SECRET * (size // len(SECRET) + 1))[:size])
        del h5[IMAGE]
        if how == "external storage":
            new = h5.create_dataset(IMAGE, shape=shape, dtype=dtype,
                                    external=[(str(secret), 0, size)])
        elif how == "virtual dataset":
            with h5py.File(tmp_path / "other.h5", "w") as other:
                other.create_dataset("x", data=np.frombuffer(secret.read_bytes(), dtype)
                                     .reshape(shape))
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            layout[...] = h5py.VirtualSource(str(tmp_path / "other.h5"), "x", shape=shape)
            new = h5.create_virtual_dataset(IMAGE, layout)
        else:  # an external link to a dataset of another file
            with h5py.File(tmp_path / "other.h5", "w") as other:
                new = other.create_dataset("x", data=np.frombuffer(secret.read_bytes(), dtype)
                                           .reshape(shape))
                for key, value in attrs.items():
                    new.attrs[key] = value
            h5[IMAGE] = h5py.ExternalLink(str(tmp_path / "other.h5"), "x")
            return store
        for key, value in attrs.items():
            new.attrs[key] = value
    return store


HOW = ["external storage", "virtual dataset", "external link"]


@pytest.mark.parametrize("how", HOW)
def test_an_hdf5_store_reading_another_file_is_refused_by_every_reader(built, tmp_path, how):
    store = _altered(built, tmp_path, how)
    expected = r"cases/a/scale0/image (keeps its values in external file|is a virtual " \
               r"dataset|is an external link).*this one was altered"
    with pytest.raises(StoreError, match=expected):
        open_store(store).read_image("a")
    with pytest.raises(StoreError, match=expected):
        open_store(store).case("a").load()
    with pytest.raises(StoreError, match=expected):
        validate_store(store)


def test_the_unaltered_store_reads(built):
    """The check refuses only what reads outside: the built store itself reads."""
    assert open_store(built).read_image("a").array.shape == (6, 5, 4)
    assert validate_store(built) == []


# Zarr: a local store is a folder from someone else, and a snapshot a zip.

@pytest.fixture(scope="module")
def built_zarr(tmp_path_factory) -> Path:
    return _store_of_one_case(tmp_path_factory.mktemp("hostile_zarr"), "store.zarr",
                              (40, 30, 20))


def _copy(built: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the store and the path of its image's first shard."""
    store = tmp_path / "store.zarr"
    shutil.copytree(built, store)
    return store, next(p for p in (store / IMAGE / "c").rglob("*") if p.is_file())


def _reads(store: Path):
    """Both read paths: zarr-python (read_image) and the lean reader (a case's slice)."""
    yield lambda: open_store(store).read_image("a")
    yield lambda: open_store(store).case("a")["image"][0, 0].values


@pytest.mark.parametrize("target", ["/dev/zero", "outside"])
def test_a_chunk_that_is_a_link_out_of_the_store_is_refused(built_zarr, tmp_path, target):
    """/dev/zero would read without end; a file of the reader's machine as pixels."""
    store, shard = _copy(built_zarr, tmp_path)
    if target == "outside":
        target = tmp_path / "secret.bin"
        target.write_bytes(shard.read_bytes())  # even bytes that pass every checksum
    shard.unlink()
    shard.symlink_to(target)
    for read in _reads(store):
        with pytest.raises(StoreError, match="(is not a regular file|leads outside the "
                                             "store).*this one was altered"):
            read()


def test_a_link_inside_the_store_still_reads(built_zarr, tmp_path):
    store, shard = _copy(built_zarr, tmp_path)
    moved = store / "moved_shard"
    shard.rename(moved)
    shard.symlink_to(moved)
    for read in _reads(store):
        read()


def _decompression_bomb(built: Path, tmp_path: Path, decoded: int) -> Path:
    """A copy of the store whose first image chunk is a valid Blosc frame of ``decoded``
    zero bytes, with a right crc32c and shard index: only its declared size is wrong."""
    store, shard = _copy(built, tmp_path)
    array = zarr.open_array(store / IMAGE, mode="r")
    per_shard = checksummed_array(array.metadata).per_shard
    data = shard.read_bytes()
    size = index_size(int(np.prod(per_shard)))
    entries = index_entries(data[-size:])
    chunks = [data[o:o + n] for o, n in entries.tolist()]
    frame = Blosc(cname="lz4").encode(np.zeros(decoded, np.uint8))
    chunks[0] = frame + google_crc32c.value(frame).to_bytes(4, "little")
    offsets = np.cumsum([0] + [len(c) for c in chunks[:-1]])
    index = np.column_stack([offsets, [len(c) for c in chunks]]).astype("<u8").tobytes()
    shard.write_bytes(b"".join(chunks) + index + google_crc32c.value(index).to_bytes(4, "little"))
    return store


def test_a_chunk_declaring_a_gigabyte_is_refused_before_decoding(built_zarr, tmp_path):
    """2 MB on disk, 1 GiB once decoded: refused from the Blosc header."""
    store = _decompression_bomb(built_zarr, tmp_path, 2**30)
    for read in _reads(store):
        with pytest.raises(StoreError, match=r"chunk \(0, 0, 0, 0\) declares 1073741824 "
                                             r"decoded bytes where its shape holds"):
            read()
    run = run_measured(f"""
        from medimg_build import open_store
        from medimg_build.errors import StoreError
        try:
            open_store({str(store)!r}).read_image("a")
        except StoreError as error:
            print(error)
    """)
    assert "declares 1073741824 decoded bytes" in run.stdout, run.stderr
    assert run.peak_rss < 2**30 / 2, f"peak {run.peak_mib:.0f} MiB"


def test_a_zip_member_that_inflates_a_thousandfold_is_refused(built_zarr, tmp_path):
    """Any zip of a store opens (a deflated one made by hand too), but zarr reads a
    compressed member whole: 1 GiB of zeros in 1 MB of deflate is refused from the zip's
    directory, before anything is inflated."""
    archive, (_, shard) = tmp_path / "store.zip", _copy(built_zarr, tmp_path)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(built_zarr.rglob("*")):
            name = path.relative_to(built_zarr).as_posix()
            if path.is_file() and name != shard.relative_to(tmp_path / "store.zarr").as_posix():
                zipped.write(path, name)
        with zipped.open(shard.relative_to(tmp_path / "store.zarr").as_posix(), "w",
                         force_zip64=True) as member:
            for _ in range(64):
                member.write(bytes(2**24))
    run = run_measured(f"""
        from medimg_build import open_store
        from medimg_build.errors import StoreError
        try:
            open_store({str(archive)!r}).read_image("a")
        except StoreError as error:
            print(error)
    """)
    assert "inflates" in run.stdout and "a zip bomb" in run.stdout, run.stderr
    assert run.peak_rss < 2**29, f"peak {run.peak_mib:.0f} MiB"


def test_a_zip_of_a_store_made_by_hand_still_opens(built_zarr, tmp_path):
    archive = shutil.make_archive(str(tmp_path / "store"), "zip", root_dir=built_zarr)
    assert open_store(archive).read_image("a").array.shape == (40, 30, 20)


def test_a_store_built_with_a_raised_limit_reads_and_validates_its_own_cases(tmp_path):
    """Reads refuse a case past the size limit, but a store built with --max-voxels N
    (recorded in its recipe) is read under the larger of the two limits."""
    (tmp_path / "src" / "images").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.ones((80, 80, 80), np.int16), np.eye(4)),
             tmp_path / "src" / "images" / "a.nii.gz")
    recipe = load_recipe("volume-folder").with_overrides({"harmonize": {"spacing": None}})
    raised = recipe.with_overrides({"limits": {"max_voxels": 600_000}})
    for name, built_with in (("default.zarr", recipe), ("raised.zarr", raised)):
        assert build_store(built_with, tmp_path / "src", tmp_path / name, progress=False).ok
    with max_voxels(500_000):  # a reader's limit below the 512,000 values of the case
        with pytest.raises(StoreError, match="over the limit of 500,000"):
            open_store(tmp_path / "default.zarr").read_image("a")
        assert validate_store(tmp_path / "default.zarr") != []
        assert open_store(tmp_path / "raised.zarr").read_image("a").array.shape == (80, 80, 80)
        assert validate_store(tmp_path / "raised.zarr") == []
