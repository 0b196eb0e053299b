"""Colour DICOM: palette colour and YBR come out as RGB channels (pydicom's shipped files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom import dcmwrite
from pydicom.pixels import apply_color_lut, convert_color_space, pixel_array
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

from medimg_build.io import read_image

from dcm2niix_reference import assert_same_volume, run_dcm2niix

# pydicom's shipped files, located without ever calling its downloader.
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def test_palette_colour_becomes_rgb_through_the_lut():
    path = PYDICOM_FILES / "examples_palette.dcm"
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    image = read_image(path)
    rgb = apply_color_lut(ds.pixel_array, ds)  # 8-bit indices into 16-bit LUT entries
    assert image.array.shape == (ds.Columns, ds.Rows, 3)
    np.testing.assert_array_equal(image.array, rgb.transpose(1, 0, 2))
    assert image.array.dtype == np.uint16
    intensity = image.meta["intensity"]
    assert intensity["photometric"] == "PALETTE COLOR" and intensity["converted_to"] == "RGB"
    assert intensity["bits_stored"] == 16  # the range of the values now in the array
    # Not a grey picture in disguise: the LUT maps indices to distinct colours.
    assert (image.array[..., 0] != image.array[..., 2]).any()


def test_ybr_full_422_is_rgb_like_the_rgb_original():
    # The same 100x100 picture stored as RGB (RLE) and as YBR_FULL_422 (chroma halved
    # horizontally, so a few levels off, never a colour swap or a grey image).
    rgb = read_image(PYDICOM_FILES / "SC_rgb_rle.dcm")
    path = PYDICOM_FILES / "SC_ybr_full_422_uncompressed.dcm"
    image = read_image(path)
    assert image.meta["intensity"]["converted_to"] == "RGB"
    assert image.array.shape == rgb.array.shape and image.array.dtype == np.uint8
    difference = np.abs(image.array.astype(int) - rgb.array.astype(int))
    assert difference.max() <= 8 and difference.mean() < 1
    # Exactly pydicom's YBR_FULL -> RGB conversion of the stored values.
    ybr = pixel_array(path, as_rgb=False)
    np.testing.assert_array_equal(
        image.array, convert_color_space(ybr, "YBR_FULL", "RGB").transpose(1, 0, 2))


def test_ybr_full_round_trip(tmp_path):
    # RGB -> YBR_FULL (uncompressed, no subsampling) -> read: back within rounding.
    ds = pydicom.dcmread(PYDICOM_FILES / "SC_rgb_rle.dcm")
    original = ds.pixel_array
    ds.PixelData = convert_color_space(original, "RGB", "YBR_FULL").tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"
    ds.PlanarConfiguration = 0
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "ybr.dcm"
    ds.save_as(path, enforce_file_format=True)
    image = read_image(path)
    difference = np.abs(image.array.astype(int) - original.transpose(1, 0, 2).astype(int))
    assert difference.max() <= 2
    assert image.meta["intensity"]["photometric"] == "YBR_FULL"


def test_rgb_capture_of_a_ct_slice_keeps_its_colours_as_dcm2niix(tmp_path):
    # A secondary capture of a CT slice, as scanners write screen shots: RGB pixels with
    # the CT's geometry, Modality and RescaleIntercept -1024 (deid-data's ctbrain1.dcm is
    # one). The rescale maps grayscale values only; added to colour channels it made an
    # int16 "HU" picture of -1024..-769. dcm2niix keeps the RGB values.
    ds = pydicom.dcmread(PYDICOM_FILES / "SC_rgb_rle.dcm")
    ds.Modality = "CT"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.ImagePositionPatient = [-106.8, -250.5, 148.7]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.98796, -0.151524]
    ds.PixelSpacing = [0.4258, 0.4258]
    folder = tmp_path / "capture"
    folder.mkdir()
    ds.save_as(folder / "capture.dcm", enforce_file_format=True)
    image = read_image(folder / "capture.dcm")
    assert image.array.dtype == np.uint8
    np.testing.assert_array_equal(image.array[..., 0, :], ds.pixel_array.transpose(1, 0, 2))
    intensity = image.meta["intensity"]
    assert "unit" not in intensity and intensity["rescale_ignored"] == "colour pixels"
    [nifti] = run_dcm2niix(folder, tmp_path / "dcm2niix")
    assert_same_volume(image, nifti)


def test_palette_of_a_big_endian_file_gives_the_colours_of_the_little_endian_one(tmp_path):
    # Explicit VR Big Endian stores each 16-bit LUT entry high byte first; pydicom's
    # apply_color_lut reads plain LUT data little-endian whatever the encoding, so every
    # colour came out byte-swapped (pydicom-data's OBXXXX1A_expb.dcm: 0..255 where its
    # little-endian twin has 0..65280).
    source = PYDICOM_FILES / "examples_palette.dcm"
    ds = pydicom.dcmread(source)
    assert ds.BitsAllocated == 8  # pixel bytes (as OB) need no swapping; the LUT's do
    ds["PixelData"].VR = "OB"
    for colour in ("Red", "Green", "Blue"):
        name = f"{colour}PaletteColorLookupTableData"
        little = ds[name].value
        ds[name].value = np.frombuffer(little, "<u2").astype(">u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    path = tmp_path / "palette_big_endian.dcm"
    # pydicom converts the encoding only when forced (it then leaves OW values as they
    # are, hence the swap above)
    dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    written = pydicom.dcmread(path)
    assert written.original_encoding == (False, False)
    np.testing.assert_array_equal(written.pixel_array, pydicom.dcmread(source).pixel_array)
    image = read_image(path)
    np.testing.assert_array_equal(image.array, read_image(source).array)
