"""Reading an uncompressed series reads each file's pixels once, straight into the
volume (issue 15, Speed), with the values pydicom's ``pixel_array`` gives.

The header parse leaves uncompressed pixel data in the file (pydicom's deferred read)
and the decode reads it into its slice of the stack, where pydicom's decoder checks and
corrects it in place. The speed itself is measured by ``make bench`` (benchmarks/
dicom_read.py), never asserted here; what is asserted is the memory that the levers
remove, and that every encoding keeps its exact values and errors.
"""

from __future__ import annotations

import copy
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medimg_build.errors import DicomSeriesError, ImageReadError
from medimg_build.io import read_image
from medimg_build.io.dicom import resolved_paths
from test_io_dicom import one_line

# A real uncompressed series: 256 x 256 MR slices, 12 of 16 bits stored, unsigned.
SOURCE = "dicom2nifti/generic/anatomical/001"


def _series(shared_data: Path, folder: Path, planes: np.ndarray, **attributes) -> list[Path]:
    """One file per plane of ``planes`` (slices, rows, columns), 2 mm apart, built from a
    real file of SOURCE with ``attributes`` set; pixels stored as given."""
    template = pydicom.dcmread(sorted((shared_data / SOURCE).glob("*.dcm"))[0])
    folder.mkdir(parents=True)
    paths = []
    for k, plane in enumerate(planes):
        ds = copy.deepcopy(template)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.Rows, ds.Columns = plane.shape
        for name, value in attributes.items():
            setattr(ds, name, value)
        ds.PixelData = plane.tobytes()
        paths.append(folder / f"slice{k:03d}.dcm")
        ds.save_as(paths[-1])
    return paths


def _pydicom_volume(paths: list[Path]) -> np.ndarray:
    """What pydicom decodes, file by file, in our index order (i along a row, k up)."""
    return np.stack([pydicom.dcmread(p).pixel_array for p in paths]).transpose(2, 1, 0)


def test_a_series_holds_its_pixels_once(shared_data, tmp_path):
    """Before, every dataset kept its pixel bytes, and pydicom a decoded copy of them,
    beside the volume: three copies of the series at the peak. Now the bytes go from each
    file into the volume."""
    planes = np.random.default_rng(0).integers(0, 4096, (24, 256, 256), dtype=np.uint16)
    _series(shared_data, tmp_path / "s", planes)
    read_image(tmp_path / "s")  # modules imported on first use are no part of a read
    tracemalloc.start()
    try:
        image = read_image(tmp_path / "s")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(image.array, planes.transpose(2, 1, 0))
    assert peak < 1.5 * planes.nbytes, f"peak {peak / planes.nbytes:.2f}x the volume"


@pytest.mark.parametrize("encoding", [
    # Bits above Bits Stored hold garbage: pydicom masks them (unsigned) ...
    dict(dtype=np.uint16, low=0, high=2**16, BitsStored=12, HighBit=11, PixelRepresentation=0),
    # ... or sign-extends from bit 11 (signed).
    dict(dtype=np.int16, low=-2**15, high=2**15, BitsStored=12, HighBit=11,
         PixelRepresentation=1),
    dict(dtype=np.int16, low=-2**15, high=2**15, BitsStored=16, HighBit=15,
         PixelRepresentation=1),
    # 8 bits in an odd number of bytes: the element carries a padding byte.
    dict(dtype=np.uint8, low=0, high=256, BitsAllocated=8, BitsStored=8, HighBit=7,
         PixelRepresentation=0, shape=(257, 259)),
], ids=["unsigned-12-of-16", "signed-12-of-16", "signed-16", "8-bit-odd"])
def test_values_are_pydicoms(shared_data, tmp_path, encoding):
    encoding = dict(encoding)
    dtype, low, high = encoding.pop("dtype"), encoding.pop("low"), encoding.pop("high")
    shape = encoding.pop("shape", (256, 256))
    planes = np.random.default_rng(1).integers(low, high, (3,) + shape).astype(dtype)
    assert planes[0].nbytes > 2**16  # pixel data the header parse leaves in the file
    paths = _series(shared_data, tmp_path / "s", planes, **encoding)
    np.testing.assert_array_equal(read_image(tmp_path / "s").array, _pydicom_volume(paths))


def test_each_slice_is_decoded_with_its_own_header(shared_data, tmp_path):
    """Slices are decoded together only while their pixel descriptions agree: a slice
    with 12 bits stored among 16-bit ones keeps its own masking."""
    planes = np.random.default_rng(5).integers(-2**15, 2**15, (5, 256, 256)).astype(np.int16)
    paths = _series(shared_data, tmp_path / "s", planes, PixelRepresentation=1)
    ds = pydicom.dcmread(paths[2])
    ds.BitsStored, ds.HighBit = 12, 11
    ds.save_as(paths[2])
    volume = _pydicom_volume(paths)
    assert not np.array_equal(volume[..., 2], planes[2].T)  # pydicom did mask slice 2
    np.testing.assert_array_equal(read_image(tmp_path / "s").array, volume)


def test_a_slice_of_another_matrix_is_named(shared_data, tmp_path):
    """Same number of bytes, another Rows x Columns: still "slices of different sizes"."""
    planes = np.random.default_rng(6).integers(0, 4096, (4, 256, 256), dtype=np.uint16)
    paths = _series(shared_data, tmp_path / "s", planes)
    ds = pydicom.dcmread(paths[2])
    ds.Rows, ds.Columns = 128, 512
    ds.save_as(paths[2])
    with pytest.raises(DicomSeriesError, match="slices of different sizes: slice002.dcm"):
        read_image(tmp_path / "s")


def test_excess_pixel_bytes_read_as_pydicom_reads_them(shared_data, tmp_path):
    """A PixelData longer than Rows x Columns says: pydicom's own rule decides."""
    planes = np.random.default_rng(2).integers(0, 4096, (3, 256, 256), dtype=np.uint16)
    paths = _series(shared_data, tmp_path / "s", planes)
    ds = pydicom.dcmread(paths[1])
    ds.PixelData = ds.PixelData + bytes(1024)
    ds.save_as(paths[1])
    with pytest.warns(UserWarning, match="excess padding"):
        image = read_image(tmp_path / "s")
    np.testing.assert_array_equal(image.array, planes.transpose(2, 1, 0))


def test_a_truncated_slice_is_named(shared_data, tmp_path):
    planes = np.random.default_rng(3).integers(0, 4096, (4, 256, 256), dtype=np.uint16)
    paths = _series(shared_data, tmp_path / "s", planes)
    paths[2].write_bytes(paths[2].read_bytes()[:-1000])
    with pytest.raises(ImageReadError) as caught:
        read_image(tmp_path / "s")
    message = one_line(caught.value, paths[2])
    assert "cannot decode pixel data" in message and "less than expected" in message


def test_a_series_is_read_again_after_it_was_read(shared_data, tmp_path):
    """The pixel data goes back to "in the file" after decoding: reading the same
    files again (a retry, a second series object) gives the same image."""
    planes = np.random.default_rng(4).integers(0, 4096, (3, 256, 256), dtype=np.uint16)
    _series(shared_data, tmp_path / "s", planes)
    first, second = read_image(tmp_path / "s"), read_image(tmp_path / "s")
    np.testing.assert_array_equal(first.array, second.array)
    assert first.meta == second.meta


def test_resolved_paths_are_path_resolve(tmp_path):
    (tmp_path / "real").mkdir()
    for name in ("a.dcm", "b.dcm", "target.dcm"):
        (tmp_path / "real" / name).write_bytes(b"")
    (tmp_path / "linked").symlink_to(tmp_path / "real")  # a linked folder
    (tmp_path / "real" / "link.dcm").symlink_to(tmp_path / "real" / "target.dcm")  # a file
    paths = [tmp_path / "linked" / "a.dcm", tmp_path / "real" / "b.dcm",
             tmp_path / "real" / "link.dcm", tmp_path / "linked" / ".." / "real" / "a.dcm"]
    assert resolved_paths(paths) == sorted({str(p.resolve()) for p in paths})


def test_a_parsed_header_equals_pydicoms_own_parse(shared_data):
    """The header parse reads on after the file meta it checked for deflate bombs instead
    of parsing it twice: every shared DICOM file (implicit and explicit VR, big endian,
    enhanced, compressed) gives the very dataset, file meta and encoding dcmread gives."""
    from medimg_build.io.dicom_files import DEFERRED_BYTES, _parse, is_dicom_file

    paths = [p for p in sorted(shared_data.rglob("*")) if p.is_file() and is_dicom_file(p)]
    assert len(paths) > 500
    for path in paths[::3]:  # every third file: all kinds, a third of the time
        ours = _parse(path)
        theirs = pydicom.dcmread(path, defer_size=DEFERRED_BYTES)
        assert ours == theirs, path
        assert ours.file_meta == theirs.file_meta, path
        assert ours.original_encoding == theirs.original_encoding, path
        assert ours.preamble == theirs.preamble, path
