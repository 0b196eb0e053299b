"""PNG/JPEG/GIF/BMP (Pillow) and TIFF (tifffile): pictures in the (W, H[, C]) convention."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from medimg_build.errors import ImageReadError, MedimgError
from medimg_build.io import read_image
from medimg_build.limits import ImageTooLargeError, max_voxels

RNG = np.random.default_rng(7)


def one_line(error: MedimgError, path) -> str:
    message = str(error)
    assert "\n" not in message and str(path) in message
    return message


def assert_picture(image, fmt: str) -> None:
    assert image.spatial_ndim == 2
    assert image.meta["format"] == fmt
    assert image.meta["space"] == "image"
    assert image.meta["pixel_spacing_known"] is False
    np.testing.assert_array_equal(image.affine, np.eye(4))  # diag(1, 1, 1, 1)
    assert image.meta["modality"] is None
    assert image.array.dtype.isnative
    assert image.array.flags.c_contiguous or image.array.flags.f_contiguous
    [source] = image.meta["source_files"]
    assert Path(source).is_absolute()
    json.dumps(image.meta)
    [step] = image.history
    assert step.name == "read"
    json.loads(step.to_json())


# -- real X-rays -----------------------------------------------------------------------------


def test_nih_png_is_8bit_2d_in_w_h_order(shared_data):
    path = shared_data / "torchxrayvision/tests/00000001_000.png"
    image = read_image(path)
    pil = Image.open(path)
    assert pil.mode == "L"
    assert image.array.shape == (pil.width, pil.height)
    assert image.array.dtype == np.uint8
    np.testing.assert_array_equal(image.array, np.asarray(pil).T)
    assert image.meta["intensity"] == {"bits_stored": 8, "signed": False,
                                       "photometric": "MONOCHROME2", "inverted": False}
    assert_picture(image, "png")


@pytest.mark.parametrize("name", ["16747_3_1.jpg", "covid-19-pneumonia-58-prior.jpg"])
def test_jpeg_x_ray_stored_as_rgb_has_a_channel_axis(shared_data, name):
    path = shared_data / "torchxrayvision/tests" / name
    image = read_image(path)
    pil = Image.open(path)
    assert image.array.shape == (pil.width, pil.height, 3)
    np.testing.assert_array_equal(image.array, np.asarray(pil).transpose(1, 0, 2))
    assert image.meta["intensity"]["photometric"] == "RGB"
    assert_picture(image, "jpeg")


def test_tbx11k_rgb_png(shared_data):
    path = shared_data / "torchxrayvision/tests/tbx11k_test_data/imgs/tb/tb0005.png"
    image = read_image(path)
    assert image.array.shape == (512, 512, 3) and image.has_channels


# -- generated PNG / GIF / BMP / JPEG ----------------------------------------------------------


def test_16bit_png_keeps_uint16_values(tmp_path):
    pixels = RNG.integers(0, 65536, size=(30, 50), dtype=np.uint16)  # 30 rows x 50 cols
    pixels[0, 0], pixels[-1, -1] = 0, 65535
    path = tmp_path / "x16.png"
    Image.fromarray(pixels).save(path)
    image = read_image(path)
    assert image.array.shape == (50, 30)
    assert image.array.dtype == np.uint16
    np.testing.assert_array_equal(image.array, pixels.T)
    assert image.meta["intensity"]["bits_stored"] == 16
    assert_picture(image, "png")


def test_rgb_png(tmp_path):
    pixels = RNG.integers(0, 256, size=(20, 40, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(pixels, "RGB").save(path)
    image = read_image(path)
    assert image.array.shape == (40, 20, 3)
    np.testing.assert_array_equal(image.array, pixels.transpose(1, 0, 2))
    assert image.meta["intensity"]["photometric"] == "RGB"


def test_rgba_png_drops_alpha_and_says_so(tmp_path):
    pixels = RNG.integers(0, 256, size=(10, 12, 4), dtype=np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(pixels, "RGBA").save(path)
    image = read_image(path)
    np.testing.assert_array_equal(image.array, pixels[..., :3].transpose(1, 0, 2))
    assert image.meta["intensity"]["alpha_dropped"] is True


def test_grey_palette_png_becomes_one_channel(tmp_path):
    grey = RNG.integers(0, 256, size=(16, 9), dtype=np.uint8)
    path = tmp_path / "pal.png"
    Image.fromarray(grey, "L").convert("P").save(path)
    assert Image.open(path).mode == "P"
    image = read_image(path)
    assert image.array.shape == (9, 16)
    np.testing.assert_array_equal(image.array, grey.T)
    assert image.meta["raster"]["palette"] == "grey"


def test_colour_palette_png_becomes_rgb(tmp_path):
    pil = Image.new("P", (7, 5))
    pil.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    pil.putpixel((3, 2), 1)
    path = tmp_path / "palc.png"
    pil.save(path)
    image = read_image(path)
    assert image.array.shape == (7, 5, 3)
    assert list(image.array[3, 2]) == [0, 255, 0]
    assert list(image.array[0, 0]) == [255, 0, 0]


def test_gif_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((6, 8), v, np.uint8), "L") for v in (50, 200)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    image = read_image(path)
    assert image.array.shape == (8, 6)
    assert (image.array == 50).all()
    assert image.meta["raster"]["frames"] == 2
    assert_picture(image, "gif")


def test_bmp_and_bilevel(tmp_path):
    pixels = RNG.integers(0, 256, size=(11, 13), dtype=np.uint8)
    path = tmp_path / "a.bmp"
    Image.fromarray(pixels).save(path)
    np.testing.assert_array_equal(read_image(path).array, pixels.T)
    bilevel = tmp_path / "b.png"
    Image.fromarray(pixels > 128).save(bilevel)
    image = read_image(bilevel)
    np.testing.assert_array_equal(image.array, np.where(pixels > 128, 255, 0).T)


def test_grey_jpeg(tmp_path):
    pixels = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1))
    path = tmp_path / "g.jpeg"
    Image.fromarray(pixels).save(path, quality=95)
    image = read_image(path)
    assert image.array.shape == (32, 16) and not image.has_channels
    np.testing.assert_array_equal(image.array, np.asarray(Image.open(path)).T)
    assert_picture(image, "jpeg")


# -- TIFF ----------------------------------------------------------------------------------------


def test_tiff_grey_uint16(tmp_path):
    pixels = RNG.integers(0, 65536, size=(25, 35), dtype=np.uint16)
    path = tmp_path / "g.tif"
    tifffile.imwrite(path, pixels)
    image = read_image(path)
    assert image.array.shape == (35, 25) and image.array.dtype == np.uint16
    np.testing.assert_array_equal(image.array, pixels.T)
    assert_picture(image, "tiff")


@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_tiff_rgb(tmp_path, planar):
    pixels = RNG.integers(0, 256, size=(12, 14, 3), dtype=np.uint8)
    path = tmp_path / f"rgb_{planar}.tiff"
    data = pixels if planar == "contig" else np.moveaxis(pixels, -1, 0)
    tifffile.imwrite(path, data, photometric="rgb", planarconfig=planar)
    image = read_image(path)
    np.testing.assert_array_equal(image.array, pixels.transpose(1, 0, 2))
    assert image.meta["intensity"]["photometric"] == "RGB"


def test_tiff_rgba_drops_alpha_and_says_so(tmp_path):
    pixels = RNG.integers(0, 256, size=(6, 7, 4), dtype=np.uint8)
    path = tmp_path / "rgba.tif"
    tifffile.imwrite(path, pixels, photometric="rgb", extrasamples=["unassalpha"])
    image = read_image(path)
    np.testing.assert_array_equal(image.array, pixels[..., :3].transpose(1, 0, 2))
    assert image.meta["intensity"]["alpha_dropped"] is True


def test_tiff_compressed_and_float(tmp_path):
    pixels = RNG.random((9, 10), dtype=np.float32)
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, pixels, compression="zlib")
    np.testing.assert_array_equal(read_image(path).array, pixels.T)


def test_tiff_miniswhite_is_inverted(tmp_path):
    pixels = RNG.integers(0, 256, size=(8, 9), dtype=np.uint8)
    path = tmp_path / "mw.tif"
    tifffile.imwrite(path, pixels, photometric="miniswhite")
    image = read_image(path)
    np.testing.assert_array_equal(image.array, (255 - pixels).T)
    assert image.meta["intensity"]["inverted"] is True


def test_multipage_tiff_is_refused(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((5, 8, 9), np.uint8))
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    assert "not one 2D image" in one_line(caught.value, path)


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["empty.png", "empty.jpg", "empty.tif", "empty.gif"])
def test_zero_byte_files(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    one_line(caught.value, path)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_truncated_files(tmp_path, suffix):
    pixels = RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    whole = tmp_path / f"whole{suffix}"
    Image.fromarray(pixels).save(whole)
    data = whole.read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    one_line(caught.value, path)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "note.png"
    path.write_text("hello\nworld\n")
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    one_line(caught.value, path)


def test_decompression_bomb_past_pillows_hard_limit_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # past 2x the limit Pillow raises
    with pytest.raises(ImageTooLargeError) as caught:
        read_image(path)
    assert "too large for Pillow" in one_line(caught.value, path)


def test_pillows_warning_band_is_decided_by_max_voxels(tmp_path, monkeypatch):
    """Between MAX_IMAGE_PIXELS and twice that Pillow only warns: our limit decides."""
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)
    assert read_image(path).array.shape == (100, 100)
    with max_voxels(9999), pytest.raises(ImageTooLargeError) as caught:
        read_image(path)
    assert "100x100x1" in one_line(caught.value, path)


# -- dispatch (medimg_build.io.read_image) ---------------------------------------------------------


def test_missing_path(tmp_path):
    path = tmp_path / "nowhere" / "x.png"
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    assert "no such file" in one_line(caught.value, path)


def test_unknown_suffix_lists_the_supported_ones(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    message = one_line(caught.value, path)
    assert "unsupported file type .csv" in message and ".nii.gz" in message


def test_supported_suffixes_and_case(tmp_path):
    from medimg_build.io import READERS, SUPPORTED_SUFFIXES

    for suffix in (".dcm", ".nii", ".nii.gz", ".mgz", ".png", ".jpg", ".jpeg", ".gif", ".bmp",
                   ".tif", ".tiff", ".mha", ".mhd", ".nrrd", ".nhdr", ".hdr", ".img"):
        assert suffix in SUPPORTED_SUFFIXES and suffix in READERS
    path = tmp_path / "UPPER.PNG"
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(path, format="PNG")
    assert read_image(str(path)).array.shape == (4, 3)  # str paths and any case
