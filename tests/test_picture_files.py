"""Picture files as real tools write them (issue 19 red team): 16-bit colour PNG, which
Pillow (and so imageio and MONAI's PILReader) silently cuts to 8 bits; EXIF/TIFF
orientation tags, recorded but not applied, as MONAI, torchvision, imageio and ITK
leave them; TIFF resolution tags, recorded but not taken as a pixel size."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from PIL import Image

from medimg_build.errors import ImageReadError
from medimg_build.io import read_image


def stored(image) -> np.ndarray:
    """(rows, columns[, channels]): the picture as its file stores it."""
    return np.swapaxes(image.array, 0, 1)


def sixteen_bit_colour(path, pixels: np.ndarray) -> None:
    """A 16-bit RGB(A) PNG as libpng writes it (ITK's PNG writer)."""
    sitk.WriteImage(sitk.GetImageFromArray(pixels, isVector=True), str(path))


@pytest.mark.parametrize("channels", [3, 4])
def test_a_16_bit_colour_png_keeps_its_16_bits(tmp_path, channels):
    rng = np.random.default_rng(16)
    pixels = rng.integers(0, 65536, size=(30, 40, channels), dtype=np.uint16)
    sixteen_bit_colour(tmp_path / "deep.png", pixels)
    assert Image.open(tmp_path / "deep.png").mode in ("RGB", "RGBA")  # Pillow: 8 bits
    image = read_image(tmp_path / "deep.png")
    assert image.array.dtype == np.uint16
    np.testing.assert_array_equal(stored(image), pixels[..., :3])
    assert image.meta["intensity"]["bits_stored"] == 16
    assert image.meta["intensity"].get("alpha_dropped", False) == (channels == 4)
    assert image.is_picture


def png_grey_alpha_16(path, pixels: np.ndarray) -> None:
    """A 16-bit grey + alpha PNG (colour type 4), chunk by chunk (PNG spec 11.2):
    neither Pillow nor ITK writes one."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows, columns = pixels.shape[:2]
    scanlines = b"".join(b"\x00" + pixels[r].astype(">u2").tobytes() for r in range(rows))
    header = struct.pack(">IIBBBBB", columns, rows, 16, 4, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(scanlines)) + chunk(b"IEND", b""))


def test_a_16_bit_grey_alpha_png_is_refused_not_cut_to_8_bits(tmp_path):
    pixels = np.stack([np.full((6, 5), 4097, np.uint16), np.full((6, 5), 65535, np.uint16)], -1)
    png_grey_alpha_16(tmp_path / "xray.png", pixels)
    assert np.asarray(Image.open(tmp_path / "xray.png")).dtype == np.uint8  # Pillow's answer
    with pytest.raises(ImageReadError, match="16-bit grey \\+ alpha PNG"):
        read_image(tmp_path / "xray.png")


def test_an_exif_orientation_is_recorded_and_the_pixels_stay_as_stored(tmp_path,
                                                                        shared_data):
    """A real JPEG X-ray saved with EXIF Orientation 6 (turn 90 degrees to display):
    read as stored, as MONAI's PILReader reads it, the tag in the read step."""
    film = Image.open(shared_data / "torchxrayvision" / "tests" / "16747_3_1.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    film.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "turned.jpg")
    np.testing.assert_array_equal(stored(image), np.asarray(Image.open(tmp_path / "turned.jpg")))
    from monai.data import PILReader

    reader = PILReader()
    monai_pixels, _ = reader.get_data(reader.read(str(tmp_path / "turned.jpg")))
    np.testing.assert_array_equal(image.array, monai_pixels)  # MONAI's (W, H, C) too
    assert image.history[-1].params["orientation_tag"] == 6
    assert "orientation_tag" not in read_image(
        shared_data / "torchxrayvision" / "tests" / "16747_3_1.jpg").history[-1].params


def test_tiff_resolution_is_recorded_not_taken_as_pixel_size(tmp_path):
    """100 pixels per cm would be 0.1 mm (ITK's TIFF reader says so); 72 dpi would be
    0.353 mm, which is a printer's default, not the imaged object: neither is used."""
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    tifffile.imwrite(tmp_path / "cm.tif", pixels, resolution=(100.0, 50.0), resolutionunit=3)
    tifffile.imwrite(tmp_path / "dpi.tif", pixels, resolution=(72.0, 72.0), resolutionunit=2)
    assert sitk.ReadImage(str(tmp_path / "dpi.tif")).GetSpacing() == pytest.approx(
        (25.4 / 72, 25.4 / 72))
    for name, resolution, unit in (("cm.tif", [100.0, 50.0], "centimeter"),
                                   ("dpi.tif", [72.0, 72.0], "inch")):
        image = read_image(tmp_path / name)
        assert image.meta["pixel_spacing_known"] is False and image.spacing == (1.0, 1.0)
        assert image.meta["raster"]["resolution"] == resolution
        assert image.meta["raster"]["resolution_unit"] == unit
