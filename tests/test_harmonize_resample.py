"""resample_to_spacing / resample_to_grid: geometry kept, values interpolated correctly."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medimg_build.errors import GeometryError
from medimg_build.harmonize import resample_to_grid, resample_to_spacing, to_ras
from medimg_build.image import MedicalImage


def oblique_lps_affine(spacing=(1.0, 1.5, 2.5), origin=(30.0, -12.0, 7.0)) -> np.ndarray:
    """Index axes near L, P, S, rotated by 20 and 10 degrees: a tilted LPS scan."""
    a, b = np.deg2rad(20), np.deg2rad(10)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([-1.0, -1.0, 1.0]) * np.asarray(spacing)
    affine[:3, 3] = origin
    return affine


def ramp(shape, coefficients=(2.0, -3.0, 0.5), constant=10.0) -> np.ndarray:
    """A function linear in the voxel index, which linear interpolation reproduces."""
    grid = np.indices(shape).astype(np.float64)
    return constant + sum(c * g for c, g in zip(coefficients, grid))


def index_map(old: MedicalImage, new: MedicalImage) -> np.ndarray:
    """Old fractional index of every new voxel, shape (*new_shape, n)."""
    n = new.spatial_ndim
    grid = np.indices(new.spatial_shape).reshape(n, -1).T
    homogeneous = np.c_[grid, np.zeros((len(grid), 3 - n)), np.ones(len(grid))]
    old_index = (np.linalg.solve(old.affine, new.affine) @ homogeneous.T).T[:, :n]
    return old_index.reshape(*new.spatial_shape, n)


def test_affine_has_requested_spacing_same_origin_and_direction():
    image = MedicalImage(ramp((20, 16, 10)), oblique_lps_affine(), 3)
    result = resample_to_spacing(image, [0.7, 2.0, 1.25])
    assert np.allclose(result.spacing, [0.7, 2.0, 1.25])
    assert np.allclose(result.origin, image.origin)
    assert np.allclose(result.direction, image.direction)
    assert result.spatial_shape == (29, 12, 20)  # round(20/0.7), round(24/2), round(25/1.25)
    assert result.array.dtype == np.float32


@pytest.mark.parametrize("spacing", [(0.6, 0.6, 0.6), (3.0, 3.0, 3.0), (1.3, 0.4, 5.1)])
def test_physical_extent_is_kept_within_half_a_new_voxel(spacing):
    image = MedicalImage(ramp((21, 17, 9)), oblique_lps_affine(), 3)
    result = resample_to_spacing(image, spacing)
    old_extent = np.multiply(image.spatial_shape, image.spacing)
    new_extent = np.multiply(result.spatial_shape, result.spacing)
    assert np.all(np.abs(new_extent - old_extent) <= np.asarray(spacing) / 2 + 1e-9)


def test_linear_ramp_is_exact_in_the_interior():
    image = MedicalImage(ramp((20, 16, 10)), oblique_lps_affine(), 3)
    result = resample_to_spacing(image, [0.7, 2.0, 1.25], "linear")
    old_index = index_map(image, result)
    inside = np.all((old_index >= 0) & (old_index <= np.subtract(image.spatial_shape, 1)),
                    axis=-1)
    assert inside.mean() > 0.8
    expected = 10.0 + old_index @ np.array([2.0, -3.0, 0.5])
    np.testing.assert_allclose(result.array[inside], expected[inside], atol=1e-3)


def test_upsampled_edge_voxels_take_edge_values_not_zero():
    image = MedicalImage(np.full((2, 3, 4), 7.0), np.eye(4), 3)
    result = resample_to_spacing(image, 0.4)
    assert result.spatial_shape == (5, 8, 10)
    np.testing.assert_allclose(result.array, 7.0)


@pytest.mark.parametrize("interpolation", ["nearest", "label"])
def test_label_maps_keep_their_labels_and_dtype(interpolation):
    labels = np.zeros((24, 20, 12), dtype=np.uint8)
    labels[4:15, 5:17, 2:9] = 3
    labels[10:20, 8:12, 4:11] = 7
    image = MedicalImage(labels, oblique_lps_affine(), 3)
    for spacing in ([0.45, 0.8, 1.1], [2.2, 3.1, 4.0]):
        result = resample_to_spacing(image, spacing, interpolation)
        assert result.array.dtype == np.uint8
        assert set(np.unique(result.array)) <= {0, 3, 7}
        assert {3, 7} <= set(np.unique(result.array))


def test_unusual_dtypes_survive_nearest():
    for array in (np.eye(6, dtype=bool)[:, :, None].repeat(3, 2),
                  np.arange(27, dtype=np.float16).reshape(3, 3, 3)):
        result = resample_to_spacing(MedicalImage(array, np.eye(4), 3), 0.5, "nearest")
        assert result.array.dtype == array.dtype


def test_round_trip_with_oblique_affine():
    image = MedicalImage(ramp((16, 14, 8)).astype(np.float32), oblique_lps_affine(), 3)
    fine = resample_to_spacing(image, [0.5, 0.5, 0.5], "bspline")
    back = resample_to_grid(fine, image, "linear")
    assert back.spatial_shape == image.spatial_shape
    assert np.array_equal(back.affine, image.affine)
    interior = (slice(1, -2),) * 3  # the fine grid ends within half a voxel of the edge
    np.testing.assert_allclose(back.array[interior], image.array[interior], atol=1e-2)


def test_2d_rgb_picture():
    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    image = MedicalImage(rgb, np.diag([0.5, 0.5, 1.0, 1.0]), 2, {"space": "image"})
    result = resample_to_spacing(image, (1.0, 1.0))
    assert result.array.shape == (20, 15, 3)
    assert result.array.dtype == np.float32
    assert np.allclose(result.spacing, (1.0, 1.0))
    # Same origin, double spacing: new pixel u is centred on old pixel 2u.
    np.testing.assert_allclose(result.array[3, 4], rgb[6, 8], atol=1e-3)
    nearest = resample_to_spacing(image, (0.25, 0.25), "nearest")
    assert nearest.array.dtype == np.uint8 and nearest.array.shape == (80, 60, 3)


def test_resample_to_grid_puts_a_world_box_where_it_belongs():
    # A mask on a coarse LPS grid, resampled onto a finer oblique RAS image grid.
    mask = np.zeros((20, 20, 10), dtype=np.uint8)
    mask[5:15, 5:15, 3:7] = 2
    coarse = MedicalImage(mask, oblique_lps_affine((2.0, 2.0, 4.0), (20, 20, -20)), 3)
    reference = to_ras(MedicalImage(np.zeros((50, 50, 30)), oblique_lps_affine(
        (0.9, 0.9, 1.5), (35, 35, -25)), 3))
    result = resample_to_grid(coarse, reference, "nearest")
    assert result.spatial_shape == reference.spatial_shape
    assert np.array_equal(result.affine, reference.affine)
    assert result.array.dtype == np.uint8
    old_index = np.rint(index_map(coarse, result)).astype(int)
    inside = np.all((old_index >= 0) & (old_index < coarse.spatial_shape), axis=-1)
    expected = np.zeros(result.spatial_shape, np.uint8)
    expected[inside] = mask[tuple(old_index[inside].T)]
    # Nearest neighbour agrees except where rounding ties land on the box surface.
    assert (result.array != expected).mean() < 0.01
    assert np.all(result.array[~inside] == 0)  # outside the mask's grid: fill value
    step = result.history[-1]
    assert step.name == "resample_to_grid"
    json.dumps(step.to_dict())


def test_resample_to_grid_same_grid_is_exact():
    image = MedicalImage(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4), 3)
    result = resample_to_grid(image, image, "label")
    assert np.array_equal(result.array, image.array)


def test_records_what_was_done():
    image = MedicalImage(np.zeros((10, 10, 4)), np.diag([1.0, 1.0, 3.0, 1.0]), 3)
    step = resample_to_spacing(image, 1.5, "bspline").history[-1]
    assert step.name == "resample_to_spacing"
    assert step.params == {"old_spacing": [1.0, 1.0, 3.0], "new_spacing": [1.5, 1.5, 1.5],
                           "old_shape": [10, 10, 4], "new_shape": [7, 7, 8],
                           "interpolation": "bspline"}


@pytest.mark.parametrize("spacing, problem", [
    ([1.0, 1.0], "has 2 values for an image with 3 spatial axes"),
    ([1.0, 0.0, 1.0], "must be positive"),
    ([1.0, -2.0, 1.0], "must be positive"),
    ([1.0, float("nan"), 1.0], "must be positive"),
])
def test_bad_spacing_is_a_one_line_geometry_error(spacing, problem):
    image = MedicalImage(np.zeros((4, 4, 4)), np.eye(4), 3, {"path": "case7.nii.gz"})
    with pytest.raises(GeometryError, match=problem) as info:
        resample_to_spacing(image, spacing)
    message = str(info.value)
    assert message.startswith("case7.nii.gz: ") and "\n" not in message and "(" in message


def test_bad_interpolation_and_dimension_mismatch():
    image = MedicalImage(np.zeros((4, 4, 4)), np.eye(4), 3)
    with pytest.raises(GeometryError, match="unknown interpolation 'cubic'.*linear, bspline"):
        resample_to_spacing(image, 1.0, "cubic")
    flat = MedicalImage(np.zeros((4, 4)), np.eye(4), 2)
    with pytest.raises(GeometryError, match="2D image onto the grid of a 3D"):
        resample_to_grid(flat, image, "nearest")


def test_real_ct_reoriented_and_resampled_keeps_world_extent(shared_data):
    nifti = nib.load(shared_data / "totalsegmentator" / "example_ct.nii.gz")
    image = MedicalImage(np.asarray(nifti.dataobj), nifti.affine, 3, {"modality": "CT"})
    result = resample_to_spacing(to_ras(image), 1.5, "linear")
    assert result.orientation == "RAS"
    assert np.allclose(result.spacing, 1.5)

    def world_box(img: MedicalImage) -> np.ndarray:  # outer corners of the voxel grid, mm
        corners = np.array([[-0.5, -0.5, -0.5, 1], [*np.subtract(img.spatial_shape, 0.5), 1]])
        return (img.affine @ corners.T).T[:, :3]

    assert np.all(np.abs(world_box(result) - world_box(image)) <= 0.75 + 1e-6)
    # Voxels at the same world point carry the same HU (every 2nd new voxel is an old one).
    np.testing.assert_allclose(result.array[::2, ::2, ::2][:60, :50, :55],
                               image.array[:60, :50, :55], atol=1e-3)
