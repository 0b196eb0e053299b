"""Issue 14, red-team review: hostile files the first round of limits did not cover.

Each test makes its hostile file (a few MB at most), reads it in a fresh process under
an address-space limit (tests/peak_memory.py) where it could cost memory, and checks the
one-line refusal. Each failed on the code before its fix (commit messages name them).
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from numcodecs import Blosc

from medimg_build.errors import StoreError
from medimg_build.store import open_store
from peak_memory import run_measured
from test_hostile_stores import IMAGE, built_zarr  # noqa: F401 (a fixture)

from test_size_bombs import assert_refused_early, read_in_child


# -- NIfTI header extensions ------------------------------------------------------------


def nifti_with_extensions(extensions: int, extension_bytes: int) -> bytes:
    """A 4x4x4 int16 NIfTI-1 whose header extensions (comment code 6) hold
    ``extensions`` x ``extension_bytes`` bytes of 'A' before the voxels. nibabel reads
    every extension whole into memory before the voxels, and keeps it."""
    header = nib.Nifti1Header()
    header.set_data_shape((4, 4, 4))
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352 + extensions * extension_bytes
    head = header.binaryblock + b"\x01\0\0\0"
    one = struct.pack("<ii", extension_bytes, 6) + b"A" * (extension_bytes - 8)
    return head + one * extensions + bytes(4 * 4 * 4 * 2)


def test_nifti_gz_extensions_inflating_to_gigabytes_are_refused_before_nibabel_reads_them(
        tmp_path):
    """Two 1 GiB comment extensions of a .nii.gz are 2 MB of gzip: nibabel would hold
    both in memory (2 GiB) before reaching the 4x4x4 voxels."""
    path = tmp_path / "extensions.nii.gz"
    gib = 2**30
    header = nib.Nifti1Header()
    header.set_data_shape((4, 4, 4))
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352 + 2 * gib
    # 'A' * 1 GiB, deflated block by block (a few seconds; 2 MB of gzip).
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(b"A" * 2**24)
    parts = [deflate.compress(header.binaryblock + b"\x01\0\0\0")]
    for _ in range(2):
        parts.append(deflate.compress(struct.pack("<ii", gib, 6) + b"A" * (2**24 - 8)))
        parts.extend(deflate.compress(block) for _ in range(gib // 2**24 - 1))
    parts += [deflate.compress(bytes(128)), deflate.flush()]
    path.write_bytes(b"".join(parts))
    run = read_in_child(path)
    assert_refused_early(run, path, "extensions", error="ImageReadError")


def test_nifti_with_a_small_extension_still_reads(tmp_path):
    path = tmp_path / "comment.nii"
    path.write_bytes(nifti_with_extensions(1, 4096))
    run = read_in_child(path)
    assert run.stdout.startswith("READ (4, 4, 4)"), run.stdout + run.stderr[-2000:]


# -- Zarr stores whose chunk codecs the integrity checks did not cover ----------------
# The Blosc declared-size check ran only for arrays whose codecs end with crc32c: a
# store from another lab could drop the codec from its metadata and skip it; zstd (which
# allocates its frame's declared size) and gzip (inflated whole) were not checked at all.

UNCHECKED = [{"name": "bytes", "configuration": {"endian": "little"}}]


def _store_with_image_chunk(built: Path, tmp_path: Path, compressor: dict,
                            chunk: bytes) -> Path:
    """A copy of the store whose image array is one unsharded chunk without crc32c,
    compressed by ``compressor`` and holding ``chunk``; the consolidated metadata says
    the same."""
    store = tmp_path / "store.zarr"
    shutil.copytree(built, store)
    meta_path = store / IMAGE / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["chunk_grid"]["configuration"]["chunk_shape"] = meta["shape"]
    meta["codecs"] = UNCHECKED + [compressor]
    meta_path.write_text(json.dumps(meta))
    root = json.loads((store / "zarr.json").read_text())
    root["consolidated_metadata"]["metadata"][IMAGE] = meta
    (store / "zarr.json").write_text(json.dumps(root))
    shutil.rmtree(store / IMAGE / "c")
    target = store / IMAGE / "c" / "/".join("0" * len(meta["shape"]))
    target.parent.mkdir(parents=True)
    target.write_bytes(chunk)
    return store


def _read_in_child(store: Path):
    return run_measured(f"""
        from medimg_build import open_store
        from medimg_build.errors import StoreError
        try:
            open_store({str(store)!r}).read_image("a")
        except StoreError as error:
            print(error)
        else:
            print("READ")
    """)


def test_blosc_chunk_without_crc32c_declaring_a_gigabyte_is_refused(built_zarr, tmp_path):
    """A 4 MB Blosc frame of 1 GiB, in an array whose metadata has no crc32c."""
    frame = Blosc(cname="zstd", clevel=9, shuffle=Blosc.NOSHUFFLE).encode(bytes(2**30))
    blosc = {"name": "blosc", "configuration": {"typesize": 2, "cname": "zstd", "clevel": 9,
                                                "shuffle": "noshuffle", "blocksize": 0}}
    store = _store_with_image_chunk(built_zarr, tmp_path, blosc, frame)
    run = _read_in_child(store)
    assert "declares 1073741824 decoded bytes where its shape holds" in run.stdout, \
        run.stdout + run.stderr[-2000:]
    assert run.peak_rss < 2**30 / 2, f"peak {run.peak_mib:.0f} MiB"


def test_zstd_chunk_declaring_a_terabyte_is_refused(built_zarr, tmp_path):
    """A 16-byte zstd frame header declaring 2**40 bytes: numcodecs allocates that."""
    frame = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + struct.pack("<Q", 2**40) + b"\x01\0\0"
    zstd = {"name": "zstd", "configuration": {"level": 1, "checksum": False}}
    store = _store_with_image_chunk(built_zarr, tmp_path, zstd, frame)
    with pytest.raises(StoreError, match="declares 1099511627776 decoded bytes"):
        open_store(store).read_image("a")


def test_gzip_compressed_array_is_refused_before_any_chunk_inflates(built_zarr, tmp_path):
    """gzip has no declared size: zarr inflates each chunk whole (4 MB -> 4 GiB here)."""
    deflate = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = b"".join(deflate.compress(bytes(2**24)) for _ in range(256)) + deflate.flush()
    gzip = {"name": "gzip", "configuration": {"level": 1}}
    store = _store_with_image_chunk(built_zarr, tmp_path, gzip, chunk)
    run = _read_in_child(store)
    assert "is compressed with gzip, whose decoded size cannot be checked" in run.stdout, \
        run.stdout + run.stderr[-2000:]
    assert run.peak_rss < 2**30 / 2, f"peak {run.peak_mib:.0f} MiB"


def test_zstd_chunks_the_store_writes_itself_still_read(built_zarr):
    """Tables and coordinates are zstd (zarr's default): their frames declare sizes."""
    store = open_store(built_zarr)
    assert list(store.cases.case_id) == ["a"]
    assert store.case("a")["image"].values.shape[-3:] == (20, 30, 40)


# -- A store declaring an enormous image ------------------------------------------------


def _store_declaring_shape(built: Path, tmp_path: Path, shape: list[int]) -> Path:
    """The image array declares ``shape`` (one chunk, no checksum, no chunk written):
    zarr reads it as fill values of that shape, and validate computes its coordinates."""
    store = _store_with_image_chunk(built, tmp_path, {"name": "zstd", "configuration": {
        "level": 1, "checksum": False}}, b"")
    for path in (store / IMAGE / "c").rglob("*"):
        if path.is_file():
            path.unlink()
    meta = json.loads((store / IMAGE / "zarr.json").read_text())
    meta["shape"] = meta["chunk_grid"]["configuration"]["chunk_shape"] = shape
    (store / IMAGE / "zarr.json").write_text(json.dumps(meta))
    root = json.loads((store / "zarr.json").read_text())
    root["consolidated_metadata"]["metadata"][IMAGE] = meta
    (store / "zarr.json").write_text(json.dumps(root))
    return store


def test_a_case_declaring_a_huge_shape_is_refused_before_reading(built_zarr, tmp_path):
    """1 x 4096^3 int16 is 128 GiB of fill values: refused from the shape."""
    store = _store_declaring_shape(built_zarr, tmp_path, [1, 4096, 4096, 4096])
    run = _read_in_child(store)
    assert "case a: its image of shape [1, 4096, 4096, 4096] = 68,719,476,736 values is " \
        "over the limit" in run.stdout, run.stdout + run.stderr[-2000:]
    assert run.peak_rss < 2**30 / 2, f"peak {run.peak_mib:.0f} MiB"


def test_validate_reports_a_huge_declared_shape_instead_of_crashing(built_zarr, tmp_path):
    from medimg_build.store.validate import validate_store
    store = _store_declaring_shape(built_zarr, tmp_path, [1, 100000, 100000, 100000])
    problems = validate_store(store)
    assert any("is over the size limit" in str(p) for p in problems), problems


# -- DICOM frames whose codestream declares more than the header ----------------------


def _jpeg_lossless(rows: int, columns: int) -> bytes:
    """A JPEG Lossless (process 14) codestream header declaring rows x columns of 16-bit
    values, with one Huffman code (difference 0) and 4 KB of scan data."""
    sof = b"\xff\xc3" + struct.pack(">HBHHB", 11, 16, rows, columns, 1) + b"\x01\x11\x00"
    dht = b"\xff\xc4" + struct.pack(">H", 20) + b"\x00" + bytes([1] + [0] * 15) + b"\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x01\x00\x00"
    return b"\xff\xd8" + sof + dht + sos + bytes(4096) + b"\xff\xd9"


def _j2k(rows: int, columns: int) -> bytes:
    """A real 64x64 JPEG 2000 codestream whose SIZ marker then declares rows x columns."""
    from openjpeg import encode
    stream = bytearray(encode(np.zeros((64, 64), np.uint16), bits_stored=16,
                              photometric_interpretation=2, use_mct=False))
    if (rows, columns) != (64, 64):
        siz = stream.find(b"\xff\x51")
        struct.pack_into(">IIIIII", stream, siz + 6, columns, rows, 0, 0, columns, rows)
    return bytes(stream)


def _dicom_of_frame(path: Path, syntax, frame: bytes) -> Path:
    """A 64x64 16-bit CT slice whose one encapsulated frame is ``frame``."""
    from pydicom.encaps import encapsulate
    from test_size_bombs import ct_slice
    dataset = ct_slice(0, size=64, syntax=syntax)
    dataset.PixelData = encapsulate([frame])
    dataset["PixelData"].VR = "OB"
    dataset.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("codec", ["jpeg-lossless", "j2k"])
def test_a_frame_declaring_more_than_rows_and_columns_is_refused_before_decoding(
        tmp_path, codec):
    """5 KB (JPEG Lossless, 30000^2) and 1 KB (J2K, 40000^2) in a 64x64 slice: the
    decoders allocated the codestream's size, 5.3 and 3.4 GB, before pydicom compared."""
    from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1
    syntax, frame, size = (JPEGLosslessSV1, _jpeg_lossless(30000, 30000), "30000x30000") \
        if codec == "jpeg-lossless" else (JPEG2000Lossless, _j2k(40000, 40000), "40000x40000")
    path = _dicom_of_frame(tmp_path / "slice.dcm", syntax, frame)
    run = read_in_child(path)
    assert_refused_early(run, path, f"codestream of {size}x1", error="ImageReadError")


def test_a_j2k_frame_matching_its_header_still_reads(tmp_path):
    from pydicom.uid import JPEG2000Lossless
    path = _dicom_of_frame(tmp_path / "slice.dcm", JPEG2000Lossless, _j2k(64, 64))
    run = read_in_child(path)
    assert run.stdout.startswith("READ (64, 64"), run.stdout + run.stderr[-2000:]


# -- A Decathlon dataset.json that breaks the JSON reader -----------------------------


@pytest.mark.parametrize("document, problem", [
    ('{"name": "x", "modality": {"0": "CT"}, "labels": {"0": "bg"}, "training": '
     + "[" * 100_000 + "]" * 100_000 + "}", "nests its JSON deeper"),
    ('{"name": "x", "modality": {"0": "CT"}, "labels": {"1' + "0" * 5000
     + '": "bg"}, "training": []}', "is not a small whole number"),
    ('{"name": "x", "modality": {"zero": "CT"}, "labels": {"0": "bg"}, "training": []}',
     "modality key 'zero' is not a small whole number"),
    ("[1, 2]", "holds a JSON list, not an object"),
])
def test_a_hostile_dataset_json_is_one_recipe_error(tmp_path, document, problem):
    """Each was a raw RecursionError, ValueError (int() of 5001 digits, of 'zero') or
    TypeError that stopped the build with a traceback."""
    from medimg_build.errors import RecipeError
    from medimg_build.recipe.parsers.msd import msd
    (tmp_path / "dataset.json").write_text(document)
    with pytest.raises(RecipeError, match=problem):
        msd({}, tmp_path, b"key")


def test_a_table_column_declaring_10_billion_rows_is_refused_before_reading(
        built_zarr, tmp_path):
    """A column's missing chunks read as fill values: 149 GiB of empty strings."""
    store = tmp_path / "store.zarr"
    shutil.copytree(built_zarr, store)
    meta = json.loads((store / "split" / "zarr.json").read_text())
    meta["shape"] = meta["chunk_grid"]["configuration"]["chunk_shape"] = [10**10]
    (store / "split" / "zarr.json").write_text(json.dumps(meta))
    root = json.loads((store / "zarr.json").read_text())
    root["consolidated_metadata"]["metadata"]["split"] = meta
    (store / "zarr.json").write_text(json.dumps(root))
    shutil.rmtree(store / "split" / "c")
    with pytest.raises(StoreError, match="column split has 10,000,000,000 rows where"):
        open_store(store).cases


# -- A scaled NIfTI within the limit -----------------------------------------------------


def test_a_scaled_nifti_at_the_limit_reads_in_a_few_bytes_per_voxel(tmp_path):
    """1 MB of gzip: 2**29 int16 zeros with scl_slope. Scaled whole in float64 it peaked
    at 7.3 GB (and failed as out of memory under 5.5 GiB); slab by slab, about 3.3 GB:
    the int16 voxels (1 GiB), the float32 result (2 GiB) and one slab."""
    from test_size_bombs import deflate_with_zeros
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 512))
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352
    header["scl_slope"], header["scl_inter"] = 2.0, -1024.0
    path = tmp_path / "scaled.nii.gz"
    path.write_bytes(deflate_with_zeros(header.binaryblock + b"\0" * 4, 2**30, 31))
    run = run_measured(f"""
        from medimg_build.io import read_image
        image = read_image({str(path)!r})
        print("READ", image.array.shape, image.array.dtype, float(image.array[5, 5, 5]))
        """, limit=int(5.5 * 2**30))
    assert run.stdout.startswith("READ (1024, 1024, 512) float32 -1024.0"), \
        run.stdout + run.stderr[-2000:]
    assert run.peak_rss < 4 * 2**30, f"peak {run.peak_mib:.0f} MiB"


@pytest.mark.parametrize("order", ["C", "F"])
def test_slab_scaling_is_bit_identical_to_scaling_whole(monkeypatch, order):
    from medimg_build.io import nifti
    monkeypatch.setattr(nifti, "_SLAB_VALUES", 1000)  # many slabs, one of them partial
    voxels = np.asarray(np.random.default_rng(0).integers(-3000, 3000, (37, 41, 23)),
                        dtype=np.int16, order=order)
    for slope, inter in [(2.0, -1024.0), (0.1234567, 3.3), (1e-7, 1e7)]:
        whole = (voxels.astype(np.float64) * slope + inter).astype(np.float32)
        slabs = nifti._scaled(voxels, slope, inter)
        assert slabs.tobytes(order="A") == whole.tobytes(order="A")
        assert slabs.flags.f_contiguous == whole.flags.f_contiguous


# -- PackBits TIFF ------------------------------------------------------------------------


def _packbits_tiff(path: Path, pixels: np.ndarray, strip: bytes) -> Path:
    """A one-strip TIFF of ``pixels``' size whose strip is ``strip``, PackBits-coded
    (tifffile cannot write PackBits without imagecodecs: its tags are patched)."""
    import tifffile
    tifffile.imwrite(path, pixels, rowsperstrip=pixels.shape[0])
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        where = {name: tags[name].valueoffset
                 for name in ("StripOffsets", "StripByteCounts", "Compression")}
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, where["StripOffsets"], len(data))
    struct.pack_into("<I", data, where["StripByteCounts"], len(strip))
    struct.pack_into("<H", data, where["Compression"], 32773)
    path.write_bytes(bytes(data) + strip)
    return path


def test_packbits_tiff_strip_decoding_past_its_page_is_refused(tmp_path):
    """21 MB of PackBits runs (2 bytes -> 128 zeros) behind a 1000x1000 page: 1.3 GB
    decoded, in tifffile's list of ints 10 GB (out of memory at 5.2 GB under 6 GB)."""
    path = _packbits_tiff(tmp_path / "bomb.tif", np.zeros((1000, 1000), np.uint8),
                          b"\x81\x00" * (10 * 2**20))
    run = read_in_child(path)
    assert_refused_early(run, path, "inflates past the 1,000,000 bytes of its page",
                         error="ImageReadError")


def test_packbits_tiff_within_its_page_still_reads(tmp_path):
    pixels = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)
    raw = pixels.tobytes()
    literal = b"".join(b"\x7f" + raw[i:i + 128] for i in range(0, len(raw), 128))
    path = _packbits_tiff(tmp_path / "ok.tif", pixels, literal)
    run = read_in_child(path)
    assert run.stdout.startswith("READ (64, 64)"), run.stdout + run.stderr[-2000:]


@pytest.mark.parametrize("reader", ["open_store", "validate_store", "verify_store"])
def test_a_zarr_json_nested_past_pythons_stack_is_one_store_error(built_zarr, tmp_path,
                                                                    reader):
    """zarr's json.loads raised a raw RecursionError out of every reader."""
    from medimg_build.store.opening import verify_store
    from medimg_build.store.validate import validate_store
    store = tmp_path / "store.zarr"
    shutil.copytree(built_zarr, store)
    text = (store / "zarr.json").read_text().rstrip()
    (store / "zarr.json").write_text(text[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000
                                     + "}")
    read = {"open_store": open_store, "validate_store": validate_store,
            "verify_store": verify_store}[reader]
    with pytest.raises(StoreError, match="RecursionError"):
        read(store)
