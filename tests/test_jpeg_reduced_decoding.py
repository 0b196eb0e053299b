"""A JPEG that the build shrinks is decoded at a reduced DCT scale (read_options
``picture_fit``): the pixels keep their world position exactly, the harmonized picture
stays within a stated tolerance of the one decoded whole, and nothing else is reduced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medimg_build import read_image
from medimg_build.harmonize import resize_with_pad
from medimg_build.harmonize.orient import to_ras
from medimg_build.io.read_options import picture_fit

BLOB = (1234.0, 777.0)  # (column, row) of the blob's centre in the original pixels


def _photo(path: Path, size=(2400, 1600), mode="RGB") -> Path:
    """A smooth Gaussian blob on a flat background, saved as a baseline JPEG (4:2:0)."""
    columns, rows = size
    j, i = np.mgrid[0:rows, 0:columns].astype(np.float64)
    blob = np.exp(-(((i - BLOB[0]) / 60) ** 2 + ((j - BLOB[1]) / 60) ** 2) / 2)
    grey = 40 + 180 * blob
    pixels = np.stack([grey, 0.8 * grey, 0.6 * grey], axis=-1) if mode == "RGB" else grey
    Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)).save(path, quality=95)
    return path


def _blob_centre_world(image) -> np.ndarray:
    """Intensity-weighted centre of the blob, in the picture's world (original pixels)."""
    array = image.array[..., 0] if image.has_channels else image.array  # red or grey
    values = array.astype(np.float64)
    values = np.clip(values - 45, 0, None)  # the background is 40 (x0.6 in blue)
    i, j = np.nonzero(values >= 0)
    weights = values[i, j]
    index = np.array([np.sum(i * weights), np.sum(j * weights)]) / weights.sum()
    return (image.affine @ np.array([index[0], index[1], 0.0, 1.0]))[:2]


def test_reduced_decoding_keeps_world_positions(tmp_path):
    path = _photo(tmp_path / "photo.jpeg")
    whole = read_image(path)
    with picture_fit((256, 256)):
        reduced = read_image(path)
    # 2400 x 1600 shrunk to fit 256: the resize keeps 0.107 of it, so 1/4 keeps >= 2x.
    assert reduced.spatial_shape == (600, 400)
    assert reduced.history[-1].params["reduced"] == 4
    assert "reduced" not in whole.history[-1].params
    assert np.allclose(reduced.spacing, (4.0, 4.0))
    # Pixel i is original pixels 4i .. 4i+3: centred at 4i + 1.5 (an error of 1.5 px
    # or more would show here; the blob's centre is found to a few hundredths).
    assert np.allclose(reduced.affine[:2, 3], (1.5, 1.5))
    np.testing.assert_allclose(_blob_centre_world(reduced), BLOB, atol=0.1)
    np.testing.assert_allclose(_blob_centre_world(whole), BLOB, atol=0.1)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_harmonized_within_tolerance_of_whole_decoding(tmp_path, mode):
    path = _photo(tmp_path / "photo.jpeg", mode=mode)
    whole = resize_with_pad(to_ras(read_image(path)), [256, 256])
    with picture_fit((256, 256)):
        reduced = resize_with_pad(to_ras(read_image(path)), [256, 256])
    np.testing.assert_allclose(reduced.affine, whole.affine, atol=1e-9)
    difference = np.abs(reduced.array.astype(np.float64) - whole.array)
    # On 0..255 values: the block averages of the DCT and the resize's Gaussian differ
    # by a fraction of a grey level on average, by a few levels at most.
    assert difference.mean() < 0.5
    assert difference.max() < 6


def test_only_jpegs_shrunk_enough_are_reduced(tmp_path):
    jpeg = _photo(tmp_path / "photo.jpeg")
    png = tmp_path / "photo.png"
    Image.open(jpeg).save(png)
    with picture_fit((256, 256)):
        assert read_image(png).spatial_shape == (2400, 1600)  # PNG has no DCT scales
    with picture_fit((1024, 1024)):  # keeps 0.43: 1/2 would keep less than twice that
        assert read_image(jpeg).spatial_shape == (2400, 1600)
    with picture_fit((600, 600)):  # keeps 0.25: 1/2 keeps exactly twice
        assert read_image(jpeg).spatial_shape == (1200, 800)
    with picture_fit((64, 64, 64)):  # a volume's shape: not a picture's
        assert read_image(jpeg).spatial_shape == (2400, 1600)
    assert read_image(jpeg).spatial_shape == (2400, 1600)  # outside any build
