"""resize_with_pad: exact shape, aspect kept, content centred, world positions kept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medimg_build.errors import GeometryError
from medimg_build.harmonize import resize_with_pad
from medimg_build.image import MedicalImage


def oblique_lps_affine(spacing=(0.8, 1.1, 2.0), origin=(-40.0, 25.0, 60.0)) -> np.ndarray:
    a = np.deg2rad(25)
    rotation = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-1.0, -1.0, 1.0]) * np.asarray(spacing)
    affine[:3, 3] = origin
    return affine


def world(image: MedicalImage, index) -> np.ndarray:
    point = np.zeros(4)
    point[: image.spatial_ndim] = index
    point[3] = 1
    return (image.affine @ point)[:3]


def dot_image(shape, centre, affine, spatial_ndim=3) -> MedicalImage:
    """A small bright Gaussian blob (sigma 1 voxel) on a dark background."""
    grid = np.indices(shape).astype(float)
    distance2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
    array = (100.0 * np.exp(-distance2 / 2) - 50.0).astype(np.float32)
    return MedicalImage(array, affine, spatial_ndim)


@pytest.mark.parametrize("target", [(24, 24, 24), (64, 40, 32), (13, 50, 50)])
def test_bright_dot_keeps_its_world_position(target):
    image = dot_image((40, 30, 16), (12.0, 19.0, 6.0), oblique_lps_affine())
    result = resize_with_pad(image, target)
    assert result.spatial_shape == target
    step = result.history[-1].params
    p_new = np.array([12.0, 19.0, 6.0]) * step["scale"] + step["offset"]
    # The brightest new voxel is the one nearest to where the formula puts the dot...
    peak = np.unravel_index(np.argmax(result.array), result.spatial_shape)
    assert np.all(np.abs(np.array(peak) - p_new) <= 0.5 + 1e-6)
    # ...and the dot's centroid is where it was in the world, to well within half a voxel.
    weight = result.array - result.array.min()
    weight[weight < weight.max() / 4] = 0
    centroid = (np.indices(target).reshape(3, -1) @ weight.ravel()) / weight.sum()
    assert np.allclose(centroid, p_new, atol=0.15)
    half_voxel = min(result.spacing) / 2
    assert np.linalg.norm(world(result, centroid) - world(image, (12, 19, 6))) <= half_voxel


def test_recorded_scale_and_offset_map_indices_exactly():
    image = MedicalImage(np.zeros((40, 30, 16), np.float32), oblique_lps_affine(), 3)
    result = resize_with_pad(image, (32, 32, 32))
    params = result.history[-1].params
    scale, offset = np.array(params["scale"]), np.array(params["offset"])
    s = 32 / 40
    assert np.allclose(scale, [s, s, s])
    # offset = ((new - 1) - s * (old - 1)) / 2: content centred, half-voxel convention
    assert np.allclose(offset, [(31 - s * 39) / 2, (31 - s * 29) / 2, (31 - s * 15) / 2])
    rng = np.random.default_rng(0)
    for p_old in rng.uniform(-0.5, 15.5, (20, 3)):
        assert np.allclose(world(result, p_old * scale + offset), world(image, p_old))
    # The image's outer edge maps to a band centred in the new grid.
    low, high = -0.5 * scale + offset, (np.array([40, 30, 16]) - 0.5) * scale + offset
    assert np.allclose((low + high) / 2, 15.5)
    assert np.isclose(low[0], -0.5) and np.isclose(high[0], 31.5)


def test_aspect_ratio_and_spacing():
    image = MedicalImage(np.zeros((100, 50), np.float32), np.diag([0.3, 0.6, 1, 1]), 2)
    result = resize_with_pad(image, (64, 64))
    assert result.spatial_shape == (64, 64)
    assert np.allclose(result.spacing, [0.3 / 0.64, 0.6 / 0.64])
    assert np.allclose(result.history[-1].params["offset"], [(63 - 0.64 * 99) / 2,
                                                             (63 - 0.64 * 49) / 2])


def test_padding_uses_the_image_minimum_by_default():
    array = np.full((20, 10), 5.0, np.float32)
    array[0, 0] = -3.0
    image = MedicalImage(array, np.eye(4), 2)
    result = resize_with_pad(image, (20, 20))
    assert result.history[-1].params["pad_value"] == -3.0
    assert np.all(result.array[:, :4] == -3.0) and np.all(result.array[:, -4:] == -3.0)
    assert np.allclose(result.array[5:15, 6:14], 5.0)  # content untouched (scale 1)
    padded = resize_with_pad(image, (20, 20), pad_value=0)
    assert np.all(padded.array[:, :4] == 0) and padded.history[-1].params["pad_value"] == 0


def test_downsampling_antialiases_and_upsampling_does_not():
    stripes = np.zeros((64, 64), np.float32)
    stripes[::2] = 1.0  # the finest pattern there is: aliases without smoothing
    image = MedicalImage(stripes, np.eye(4), 2)
    small = resize_with_pad(image, (16, 16))
    assert small.history[-1].params["antialias_sigma"] == [1.5, 1.5]
    assert np.ptp(small.array[2:-2, 2:-2]) < 0.1 and np.isclose(small.array.mean(), 0.5, atol=0.05)
    large = resize_with_pad(image, (128, 128))
    assert large.history[-1].params["antialias_sigma"] is None


def test_nearest_keeps_labels_and_dtype_without_smoothing():
    labels = np.zeros((40, 30, 10), np.uint8)
    labels[5:25, 5:20, 2:8] = 4
    labels[20:35, 10:28, 4:9] = 9
    image = MedicalImage(labels, oblique_lps_affine(), 3)
    for target in [(16, 16, 16), (80, 80, 20)]:
        for interpolation in ("nearest", "label"):
            result = resize_with_pad(image, target, interpolation)
            assert result.array.dtype == np.uint8
            assert set(np.unique(result.array)) == {0, 4, 9}
            assert result.history[-1].params["antialias_sigma"] is None


def test_2d_rgb_picture():
    rgb = np.random.default_rng(1).integers(0, 256, (120, 80, 3), dtype=np.uint8)
    image = MedicalImage(rgb, np.diag([0.2, 0.2, 1.0, 1.0]), 2, {"space": "image"})
    result = resize_with_pad(image, (60, 60))
    assert result.array.shape == (60, 60, 3)
    assert result.array.dtype == np.float32
    assert result.meta == {"space": "image"}
    pad = result.history[-1].params["pad_value"]
    assert pad == rgb.min()
    # s = 0.5: the 40 content columns sit in new columns 10..49, padding either side.
    assert np.all(result.array[:, :10] == pad) and np.all(result.array[:, 50:] == pad)
    nearest = resize_with_pad(image, (240, 240), "nearest", pad_value=0)
    assert nearest.array.dtype == np.uint8
    np.testing.assert_array_equal(nearest.array[0:2, 40:42], np.broadcast_to(rgb[0, 0],
                                                                              (2, 2, 3)))


@pytest.mark.parametrize("shape", [(40, 40, 3), (40, 40, 3, 2), (3, 40, 3)])
def test_thin_images_are_smoothed_too(shape):
    # Fewer than 4 voxels on an axis (ITK's recursive Gaussian needs 4): the same filter.
    spatial_ndim = 2 if shape == (3, 40, 3) else 3
    array = np.ones(shape, np.float32)
    image = MedicalImage(array, np.eye(4), spatial_ndim)
    # s = 1/4: the 3 thin voxels become 3/4 of a new voxel, centred on new voxel 2 of 5.
    target = (10, 10, 5) if spatial_ndim == 3 else (5, 10)
    result = resize_with_pad(image, target, pad_value=0)
    assert result.array.shape == target + shape[spatial_ndim:]
    assert result.history[-1].params["antialias_sigma"] == [1.5] * spatial_ndim
    assert np.isclose(result.array.max(), 1.0, atol=0.02)  # smoothing keeps a constant


def test_records_are_json():
    image = MedicalImage(np.zeros((10, 8), np.int16), np.eye(4), 2)
    step = resize_with_pad(image, (5, 5)).history[-1]
    assert step.name == "resize_with_pad"
    assert set(step.params) == {"old_shape", "new_shape", "old_spacing", "new_spacing",
                                "scale", "offset", "pad_value", "interpolation",
                                "antialias", "antialias_sigma"}
    json.dumps(step.to_dict())


@pytest.mark.parametrize("shape, problem", [
    ((32, 32), "does not fit an image with 3 spatial axes"),
    ((32, 0, 32), "does not fit"),
    ((32, 32.5, 32), "does not fit"),
])
def test_bad_shape_is_a_one_line_geometry_error(shape, problem):
    image = MedicalImage(np.zeros((4, 4, 4)), np.eye(4), 3, {"path": "x.nii"})
    with pytest.raises(GeometryError, match=problem) as info:
        resize_with_pad(image, shape)
    assert str(info.value).startswith("x.nii: ") and "positive integers" in str(info.value)


def test_pad_value_must_fit_the_pixels_for_nearest():
    image = MedicalImage(np.zeros((4, 4), np.uint8), np.eye(4), 2)
    with pytest.raises(GeometryError, match="pad value -1.0 does not fit"):
        resize_with_pad(image, (8, 4), "nearest", pad_value=-1)
