"""Issue 14, size bombs: every reader refuses an image past the size limit from its
header, before decoding, at a small fraction of the memory the file declares.

Each test makes its hostile file in tmp_path (a few bytes to a few MB), reads it with
``read_image`` in a fresh process under a 3 GiB address-space limit (tests/peak_memory.py)
and checks the one-line refusal and the peak RSS. ``max_voxels`` raised or lowered around
a modest real image shows that the check counts exactly what it should.
"""

from __future__ import annotations

import gzip
import lzma
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import tifffile
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, generate_uid

from medimg_build.errors import ImageReadError
from medimg_build.io import read_image
from medimg_build.limits import ImageTooLargeError, max_voxels
from peak_memory import MiB, run_measured

# A refused bomb costs the interpreter, numpy, the readers' libraries and a header: a
# fresh process that imports medimg_build.io peaks at about 150 MiB.
REFUSED_PEAK = 500 * MiB
CHUNK = 2**24  # 16 MiB of zeros: one deflate block, repeated to make a stream of GBs


def deflate_with_zeros(head: bytes, zeros: int, wbits: int) -> bytes:
    """A valid deflate stream of ``head`` then ``zeros`` zero bytes, in a gzip
    (``wbits=31``) or zlib (``wbits=15``) wrapper or none (``wbits=-15``), built in about
    a second per 4 GiB: one fully flushed block of 16 MiB of zeros, repeated (a full
    flush makes what follows independent of what came before)."""
    blocks, rest = divmod(zeros, CHUNK)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(bytes(CHUNK)) + deflate.flush(zlib.Z_FULL_FLUSH)
    body = first + block * blocks + deflate.compress(bytes(rest)) + deflate.flush()
    if wbits == -15:
        return body
    checksum = zlib.crc32 if wbits == 31 else zlib.adler32
    check = checksum(head)
    for _ in range(blocks):
        check = checksum(bytes(CHUNK), check)
    check = checksum(bytes(rest), check)
    if wbits == 31:
        return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + body
                + struct.pack("<II", check, (len(head) + zeros) & 0xFFFFFFFF))
    return b"\x78\xda" + body + struct.pack(">I", check)


def read_in_child(path: Path, limit: int | None = None):
    """read_image(path) in a measured child process; stdout is the refusal or 'READ'."""
    return run_measured(f"""
        from medimg_build.errors import MedimgError
        from medimg_build.io import read_image
        from medimg_build.limits import max_voxels
        try:
            with max_voxels({limit!r}):
                image = read_image({str(path)!r})
        except MedimgError as error:
            print(type(error).__name__, error)
        else:
            print("READ", image.array.shape)
        """)


def assert_refused_early(run, path: Path, size: str, error: str = "ImageTooLargeError"):
    message = run.stdout.strip()
    assert run.returncode == 0, run.stderr[-2000:]
    assert "\n" not in message and message.startswith(error), message
    assert str(path) in message and size in message, message
    if error == "ImageTooLargeError":
        assert "--max-voxels" in message, message
    assert run.peak_rss < REFUSED_PEAK, f"peak {run.peak_mib:.0f} MiB: {message}"


# -- NIfTI / MGH ----------------------------------------------------------------------


def nifti_header(shape, dtype=np.int16) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    return header.binaryblock + b"\0" * 4  # 352 bytes: header and empty extension flag


def mgh_header(shape) -> bytes:
    """The 284-byte MGH header of a float32 volume of ``shape``, no data, no footer."""
    head = bytearray(nib.MGHImage(np.zeros((1, 1, 1), np.float32), np.eye(4)).to_bytes()[:284])
    head[4:16] = struct.pack(">iii", *shape)
    return bytes(head)


@pytest.mark.parametrize("name", ["bomb.nii", "bomb.nii.gz", "bomb.mgh", "bomb.mgz"])
def test_nifti_header_declaring_13_gb_is_refused_before_reading(tmp_path, name):
    path = tmp_path / name
    shape = (2048, 2048, 1600)  # int16: 13 GB (MGH float32: 27 GB), 6.7e9 values
    head = mgh_header(shape) if ".mg" in name else nifti_header(shape)
    path.write_bytes(gzip.compress(head) if name.endswith(("gz", "mgz")) else head)
    assert_refused_early(read_in_child(path), path, "2048x2048x1600 = 6,710,886,400 values")


def test_nifti_gz_whose_stream_holds_the_declared_2_gib_is_refused_from_the_header(tmp_path):
    path = tmp_path / "zeros.nii.gz"  # a complete, valid file of 1024^3 int16 zeros: 6 MB
    path.write_bytes(deflate_with_zeros(nifti_header((1024, 1024, 1024)), 2**31, 31))
    assert_refused_early(read_in_child(path), path, "1024x1024x1024")


@pytest.mark.parametrize("name", ["small.nii.gz", "small.mgz"])
def test_gzip_stream_inflating_far_past_its_header_is_refused(tmp_path, name):
    """A valid 4x4x4 image followed by 4 GiB of zeros in the same gzip stream (4 MB)."""
    image = (nib.MGHImage if name.endswith(".mgz") else nib.Nifti1Image)(
        np.zeros((4, 4, 4), np.float32), np.eye(4))
    path = tmp_path / name
    path.write_bytes(deflate_with_zeros(image.to_bytes(), 2**32, 31))
    run = read_in_child(path)
    assert_refused_early(run, path, "past the", error="ImageReadError")
    assert "gzip bomb" in run.stdout


def test_gzip_stream_with_a_little_trailing_data_still_reads(tmp_path):
    """Padding or a footer of up to 1 MiB past the voxels is not a bomb."""
    path = tmp_path / "padded.nii.gz"
    voxels = np.arange(64, dtype=np.int16).reshape(4, 4, 4)
    path.write_bytes(gzip.compress(nib.Nifti1Image(voxels, np.eye(4)).to_bytes()
                                   + bytes(2**20)))
    np.testing.assert_array_equal(read_image(path).array, voxels)


# -- MetaImage and NRRD (SimpleITK) -----------------------------------------------------


def itk_file(path: Path, size, stream_of_zeros: int) -> Path:
    """A compressed MetaImage (zlib) or NRRD (gzip) of int16 declaring ``size``, its
    stream holding ``stream_of_zeros`` zero bytes."""
    if path.suffix == ".nrrd":
        data = deflate_with_zeros(b"", stream_of_zeros, 31)
        header = ("NRRD0004\ntype: short\ndimension: 3\n"
                  f"sizes: {' '.join(map(str, size))}\nendian: little\nencoding: gzip\n\n")
    else:
        data = deflate_with_zeros(b"", stream_of_zeros, 15)
        header = ("ObjectType = Image\nNDims = 3\nBinaryData = True\n"
                  "BinaryDataByteOrderMSB = False\nCompressedData = True\n"
                  f"CompressedDataSize = {len(data)}\nDimSize = {' '.join(map(str, size))}\n"
                  "ElementType = MET_SHORT\nElementDataFile = LOCAL\n")
    path.write_bytes(header.encode() + data)
    return path


@pytest.mark.parametrize("name", ["bomb.mha", "bomb.nrrd"])
def test_compressed_itk_file_declaring_13_gb_is_refused_before_reading(tmp_path, name):
    path = itk_file(tmp_path / name, (2048, 2048, 1600), CHUNK)  # 16 KB
    assert_refused_early(read_in_child(path), path, "2048x2048x1600x1")


@pytest.mark.parametrize("name", ["long.mha", "long.nrrd"])
def test_itk_stream_inflating_past_its_size_costs_only_the_size(tmp_path, name):
    """ITK inflates a MetaImage or NRRD into the buffer of its declared size and stops
    there: 4 GiB of zeros behind a 64^3 image read as the image, at no more memory."""
    path = itk_file(tmp_path / name, (64, 64, 64), 2**32)
    run = read_in_child(path)
    assert run.stdout.strip() == "READ (64, 64, 64)", run.stdout + run.stderr[-2000:]
    assert run.peak_rss < REFUSED_PEAK


# -- TIFF (tifffile) and pictures (Pillow) --------------------------------------------------


def deflate_tiff(path: Path, width: int, height: int, strip: bytes, compression: int = 8
                 ) -> Path:
    """A little-endian, 8-bit grey TIFF of one deflate (or other) strip (tags written by
    hand: writers will not write a header that lies about its data)."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, compression), (262, 3, 1),
            (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(strip))]
    ifd_size = 2 + 12 * len(tags) + 4
    strip_offset = 8 + ifd_size
    entries = b"".join(struct.pack("<HHI", tag, kind, 1)
                       + struct.pack("<I", strip_offset if tag == 273 else value)
                       for tag, kind, value in tags)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags))
                     + entries + struct.pack("<I", 0) + strip)
    return path


def test_21_kb_deflate_tiff_of_100000_squared_is_refused_from_its_tags(tmp_path):
    path = deflate_tiff(tmp_path / "bomb.tif", 100_000, 100_000, zlib.compress(bytes(CHUNK), 9))
    assert path.stat().st_size < 22_000
    assert_refused_early(read_in_child(path), path, "100000x100000 = 10,000,000,000 values")


@pytest.mark.parametrize("compression", ["deflate", "lzma"])
def test_tiff_strip_inflating_past_its_page_is_refused(tmp_path, compression):
    """A 1000x1000 page (1 MB) whose strip holds 4 GiB (deflate) or 64 MiB (LZMA) of
    zeros: tifffile alone inflates all of it (zlib/lzma.decompress ignore the strip size)."""
    if compression == "deflate":
        strip, code = deflate_with_zeros(b"", 2**32, 15), 8
    else:
        strip, code = lzma.compress(bytes(2**26), preset=0), 34925
    path = deflate_tiff(tmp_path / "strip.tif", 1000, 1000, strip, code)
    run = read_in_child(path)
    assert_refused_early(run, path, "inflates past the 1,000,000 bytes", error="ImageReadError")


def png_of_zeros(path: Path, width: int, height: int) -> Path:
    """An RGB PNG of zeros (260 KB at 9459^2, just under Pillow's MAX_IMAGE_PIXELS)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    rows = deflate_with_zeros(b"", height * (1 + 3 * width), 15)  # filter byte 0, zeros
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def test_png_past_max_voxels_is_refused_before_decoding(tmp_path):
    path = png_of_zeros(tmp_path / "big.png", 9459, 9459)  # 268 million values as RGB
    assert_refused_early(read_in_child(path, limit=10**8), path, "9459x9459x3")


def test_png_past_pillows_own_limit_is_a_size_refusal(tmp_path):
    path = png_of_zeros(tmp_path / "huge.png", 20_000, 20_000)  # 400 Mpixels > 2 x 89 M
    run = read_in_child(path, limit=10**12)
    assert_refused_early(run, path, "400000000 pixels")
    assert "too large for Pillow" in run.stdout


# -- DICOM ----------------------------------------------------------------------------


def ct_slice(k: int, size: int = 64, syntax=pydicom.uid.ExplicitVRLittleEndian) -> Dataset:
    """Slice ``k`` (1 mm apart) of a classic CT series of size^2 uint16 pixels of value k."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", "1.2.3.4"
    ds.FrameOfReferenceUID = "1.2.3.5"
    ds.PatientName, ds.PatientID = "Doe^Jane", "123"
    for empty in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                  "AccessionNumber", "ReferringPhysicianName"):  # type 2: highdicom copies them
        setattr(ds, empty, "")
    ds.Modality, ds.Rows, ds.Columns = "CT", size, size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, k]
    ds.PixelSpacing, ds.SliceThickness = [1, 1], 1
    ds.PixelData = np.full((size, size), k, np.uint16).tobytes()
    return ds


def enhanced_ct(path: Path, frames: int, size: int) -> Path:
    """An Enhanced CT of ``frames`` JPEG 2000 frames of size^2, 1 mm apart. Each frame is
    four bytes that are not a J2K codestream: decoding any of them fails."""
    ds = ct_slice(0, size, syntax=JPEG2000Lossless)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    del ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing
    ds.NumberOfFrames = frames
    shared, measures, orientation = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.5], 1.0
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [orientation]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = []
    for k in range(frames):
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [0.0, 0.0, float(k)]
        item.PlanePositionSequence = [position]
        ds.PerFrameFunctionalGroupsSequence.append(item)
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51"] * frames)
    ds["PixelData"].VR = "OB"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_enhanced_ct_of_1100_j2k_frames_of_2048_squared_is_refused_before_decoding(tmp_path):
    path = enhanced_ct(tmp_path / "enhanced.dcm", 1100, 2048)
    assert_refused_early(read_in_child(path), path, "1100x2048x2048x1 = 4,613,734,400 values")


def test_the_same_file_small_enough_reaches_the_decoder(tmp_path):
    """The refusal above comes before decoding: within the limit, the same fake frames
    fail in the J2K decoder."""
    path = enhanced_ct(tmp_path / "enhanced.dcm", 4, 64)
    with pytest.raises(ImageReadError, match="cannot decode pixel data") as caught:
        read_image(path)
    assert not isinstance(caught.value, ImageTooLargeError)


def test_classic_series_counts_every_file(tmp_path):
    """Ten 64x64 slices: 40,960 values; the limit one below refuses the folder."""
    for k in range(10):
        pydicom.dcmwrite(tmp_path / f"{k}.dcm", ct_slice(k), enforce_file_format=True)
    with max_voxels(10 * 64 * 64):
        assert read_image(tmp_path).array.shape == (64, 64, 10)
    with max_voxels(10 * 64 * 64 - 1), pytest.raises(ImageTooLargeError, match="10x64x64x1"):
        read_image(tmp_path)


def deflated_bomb(path: Path) -> Path:
    """An 8x8 CT in the Deflated transfer syntax whose PixelData element holds 4 GiB of
    zeros (4 MB of file)."""
    ds = ct_slice(0, size=8, syntax=pydicom.uid.DeflatedExplicitVRLittleEndian)
    del ds.PixelData
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    meta_end = 144 + pydicom.dcmread(path).file_meta.FileMetaInformationGroupLength
    raw = path.read_bytes()
    dataset = zlib.decompress(raw[meta_end:], -15)
    zeros = 255 * CHUNK  # the largest multiple of 16 MiB an element length can hold
    pixel_element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, zeros)
    path.write_bytes(raw[:meta_end] + deflate_with_zeros(dataset + pixel_element, zeros, -15))
    return path


def test_deflated_dicom_inflating_to_4_gib_is_refused_before_pydicom_inflates_it(tmp_path):
    """pydicom inflates a whole deflated dataset in one zlib.decompress before any tag is
    known, so the stream is counted first."""
    path = deflated_bomb(tmp_path / "deflated.dcm")
    assert path.stat().st_size < 5 * 2**20
    run = read_in_child(path, limit=2**26)  # counted up to 256 MiB (2 GiB by default)
    assert_refused_early(run, path, "inflates past 268,435,456 bytes")


def test_a_deflated_dicom_within_the_limit_reads(tmp_path):
    path = tmp_path / "deflated.dcm"
    pydicom.dcmwrite(path, ct_slice(3, syntax=pydicom.uid.DeflatedExplicitVRLittleEndian),
                     enforce_file_format=True)
    assert (read_image(path).array == 3).all()
    with max_voxels(1000), pytest.raises(ImageTooLargeError, match="inflates past 4,000"):
        read_image(path)


def test_dicom_seg_whose_frames_span_100_m_is_refused_before_its_volume(tmp_path):
    """Three 512^2 frames, the last one 100 m away: highdicom's label volume would hold
    the 100,000 empty slices between them (24 GiB)."""
    hd = pytest.importorskip("highdicom")
    sources = [ct_slice(k, size=512) for k in range(3)]
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="organ",
        segmented_property_category=hd.sr.CodedConcept("123037004", "SCT", "Anatomical Structure"),
        segmented_property_type=hd.sr.CodedConcept("91772007", "SCT", "Organ"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=np.ones((3, 512, 512), np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=generate_uid(),
        series_number=1, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="test", manufacturer_model_name="test", software_versions="1",
        device_serial_number="1")
    far = seg.PerFrameFunctionalGroupsSequence[2].PlanePositionSequence[0]
    far.ImagePositionPatient = [0, 0, 100_000]
    path = tmp_path / "seg.dcm"
    seg.save_as(path)
    assert_refused_early(read_in_child(path), path, "x512x512 = ")


# -- the limit counts exactly: a modest image at the limit reads, one value less refuses --


def _nifti(path: Path) -> tuple[Path, int]:
    nib.save(nib.Nifti1Image(np.zeros((20, 10, 5), np.int16), np.eye(4)), path)
    return path, 1000


def _rgb_png(path: Path) -> tuple[Path, int]:
    Image.fromarray(np.zeros((30, 20, 3), np.uint8)).save(path)
    return path, 30 * 20 * 3


def _palette_png(path: Path) -> tuple[Path, int]:
    Image.fromarray(np.zeros((30, 20), np.uint8)).convert("P").save(path)
    return path, 30 * 20 * 3  # a palette may expand to RGB


def _tiff(path: Path) -> tuple[Path, int]:
    tifffile.imwrite(path, np.zeros((30, 20), np.uint16), compression="zlib")
    return path, 600


def _mha(path: Path) -> tuple[Path, int]:
    image = sitk.Image([7, 6, 5], sitk.sitkVectorFloat32, 2)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path, 7 * 6 * 5 * 2


@pytest.mark.parametrize("make, name", [(_nifti, "a.nii.gz"), (_nifti, "a.nii"),
                                        (_rgb_png, "a.png"), (_palette_png, "p.png"),
                                        (_tiff, "a.tif"), (_mha, "a.mha")])
def test_the_limit_counts_every_value_and_no_more(tmp_path, make, name):
    path, values = make(tmp_path / name)
    with max_voxels(values):
        read_image(path)
    with max_voxels(values - 1), pytest.raises(ImageTooLargeError) as caught:
        read_image(path)
    message = str(caught.value)
    assert str(path) in message and f"{values:,} values" in message
    assert "--max-voxels" in message and "limits.max_voxels" in message


# -- out of memory below the limit ------------------------------------------------------


def _nifti_of_4_gib(path: Path) -> Path:
    path.write_bytes(nifti_header((2048, 1024, 1024)))  # int16: 4 GiB, past the 3 GiB cap
    return path


def _enhanced_ct_of_8_gib(path: Path) -> Path:
    return enhanced_ct(path, 1100, 2048)  # pydicom allocates before decoding a frame


@pytest.mark.parametrize("make, name", [(_nifti_of_4_gib, "large.nii"),
                                        (_enhanced_ct_of_8_gib, "large.dcm")])
def test_memory_error_while_reading_is_one_line_naming_the_file_and_the_limit(
        tmp_path, make, name):
    """With the limit raised past what the worker can hold, the allocation fails: the
    error is one line (not 'unexpected MemoryError:' with no text, nor 'cannot decode')."""
    path = make(tmp_path / name)
    run = read_in_child(path, limit=2**40)
    message = run.stdout.strip()
    assert run.returncode == 0, run.stderr[-2000:]
    assert message.startswith("ImageReadError") and "\n" not in message, message
    assert str(path) in message and "out of memory" in message and "--max-voxels" in message
