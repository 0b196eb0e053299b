"""resample_to_spacing's linear path (one two-tap interpolation per axis, harmonize.
separable) against what it replaced: SimpleITK's linear resampling with its nearest-edge
extrapolation (``resample_onto(..., extrapolate=True)``, still the package's code for
bspline, nearest and label).

Both are the same trilinear interpolation at the same points, so the tolerance is float32
rounding: ``ROUNDING`` of the value range (ITK weighs in double and rounds once; the
separable path rounds once per axis)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medimg_build.harmonize import resample_to_spacing, to_ras
from medimg_build.harmonize.resample import resample_onto
from medimg_build.image import MedicalImage

from test_harmonize_resample import oblique_lps_affine

ROUNDING = 1e-6


def itk_resample_to_spacing(image: MedicalImage, spacing) -> MedicalImage:
    """The grid resample_to_spacing chose, sampled by ITK as before issue 18."""
    grid = resample_to_spacing(image, spacing, "nearest")
    return resample_onto(image, grid.affine, grid.spatial_shape, "linear", extrapolate=True)


def rounding_ties(image: MedicalImage, result: MedicalImage) -> np.ndarray:
    """Samples beyond the old buffer (ITK's nearest-neighbour extrapolation) with an old
    index exactly half-way between two voxels on some axis: ITK's own rounding of its
    index arithmetic picks the side there (1.5 may reach it as 1.4999999999999998)."""
    step = result.history[-1].params
    ratio = np.divide(step["new_spacing"], step["old_spacing"])
    positions = [np.arange(m) * r for m, r in zip(result.spatial_shape, ratio)]
    beyond = np.zeros(result.spatial_shape, bool)
    half = np.zeros(result.spatial_shape, bool)
    for axis, (p, n) in enumerate(zip(positions, image.spatial_shape)):
        shape = [-1 if a == axis else 1 for a in range(len(positions))]
        beyond |= ((p < -0.5) | (p >= n - 0.5)).reshape(shape)
        half |= np.isclose(p % 1, 0.5, rtol=0, atol=1e-9).reshape(shape)
    return beyond & half


def check_against_itk(image: MedicalImage, spacing) -> None:
    new = resample_to_spacing(image, spacing, "linear")
    old = itk_resample_to_spacing(image, spacing)
    assert np.array_equal(new.affine, old.affine)
    assert new.array.dtype == old.array.dtype == np.float32
    assert new.array.shape == old.array.shape and new.array.strides == old.array.strides
    compared = ~rounding_ties(image, new)
    assert compared.mean() > 0.7  # the ties are a few faces
    value_range = float(np.ptp(image.array.astype(np.float64)))
    np.testing.assert_allclose(new.array[compared], old.array[compared], rtol=0,
                               atol=ROUNDING * value_range)


def noise(shape, dtype=np.float32, order="F"):
    values = np.random.default_rng(len(shape) * 1000 + shape[0]).normal(0, 300, shape)
    return np.asarray(values.astype(dtype), order=order)


@pytest.mark.parametrize("shape, dtype, spacing", [
    ((40, 36, 22), np.int16, (1.5, 1.5, 1.5)),  # down in-plane, up through the slices
    ((33, 17, 9), np.float32, (0.37, 2.9, 1.0)),  # odd sizes, non-integer factors
    ((20, 24, 6), np.uint16, (3.0, 0.5, 7.0)),  # one axis to a single voxel
])
def test_oblique_volumes_are_what_itk_made(shape, dtype, spacing):
    values = noise(shape) - (0 if np.issubdtype(dtype, np.signedinteger) else -1000)
    image = MedicalImage(np.asfortranarray(values.astype(dtype)), oblique_lps_affine(), 3)
    check_against_itk(image, spacing)


def test_c_ordered_and_2d_and_channels_are_what_itk_made():
    check_against_itk(MedicalImage(noise((30, 21, 12), order="C"), oblique_lps_affine(), 3),
                      (0.8, 1.7, 3.3))
    picture = np.random.default_rng(1).integers(0, 256, (61, 40, 3), dtype=np.uint8)
    check_against_itk(MedicalImage(picture, np.diag([0.2, 0.3, 1.0, 1.0]), 2), (0.5, 0.25))
    check_against_itk(MedicalImage(noise((1, 50)), np.diag([2.0, 0.5, 1.0, 1.0]), 2),
                      (0.5, 0.7))  # a one-voxel axis upsampled: its value repeated


def test_the_real_ct_is_what_itk_made(shared_data):
    path = shared_data / "totalsegmentator" / "example_ct.nii.gz"
    image = to_ras(MedicalImage(np.asarray(nib.load(path).dataobj), nib.load(path).affine, 3))
    check_against_itk(image, 1.5)
    check_against_itk(image, (0.9, 2.2, 1.1))
