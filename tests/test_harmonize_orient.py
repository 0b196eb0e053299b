"""to_ras: axes permuted/flipped to RAS+, never interpolated, every voxel stays put."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medimg_build.errors import GeometryError
from medimg_build.harmonize import to_ras
from medimg_build.image import MedicalImage


def rotation(axis: int, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def affine_of(columns: np.ndarray, spacing, origin) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = columns * np.asarray(spacing, dtype=float)
    affine[:3, 3] = origin
    return affine


# Index axes along L, P, S (DICOM/ITK's LPS), then a permuted, oblique one (~P, I, L).
LPS = affine_of(np.diag([-1.0, -1.0, 1.0]), (0.8, 0.9, 2.5), (120.0, 95.0, -40.0))
OBLIQUE = affine_of(
    rotation(2, 17) @ rotation(0, -11) @ np.array([[0, 0, -1], [-1, 0, 0], [0, -1, 0.0]]),
    (1.2, 0.7, 3.0), (10.0, -20.0, 30.0),
)


def assert_same_world_voxels(before: MedicalImage, after: MedicalImage) -> None:
    """Every voxel of ``after`` is a voxel of ``before`` at the same world point."""
    n = before.spatial_ndim
    grid = np.indices(after.spatial_shape).reshape(n, -1).T
    homogeneous = np.zeros((len(grid), 4))
    homogeneous[:, :n] = grid
    homogeneous[:, 3] = 1
    old = (np.linalg.inv(before.affine) @ after.affine @ homogeneous.T).T[:, :n]
    assert np.allclose(old, np.rint(old), atol=1e-6)
    old = np.rint(old).astype(int)
    assert np.all((old >= 0) & (old < before.spatial_shape))
    np.testing.assert_array_equal(
        before.array[tuple(old.T)], after.array[tuple(grid.T)]
    )


@pytest.mark.parametrize("affine, code", [(LPS, "LPS"), (OBLIQUE, "PIL")])
def test_3d_reaches_ras_and_keeps_every_voxel_in_place(affine, code):
    rng = np.random.default_rng(0)
    image = MedicalImage(rng.integers(0, 1000, (7, 6, 5)).astype(np.int16), affine, 3)
    assert image.orientation == code
    result = to_ras(image)
    assert result.orientation == "RAS"
    assert result.array.dtype == np.int16
    assert np.shares_memory(result.array, image.array)  # a view: no copy of a CT
    assert_same_world_voxels(image, result)
    step = result.history[-1]
    assert step.name == "to_ras"
    assert step.params["from"] == code and step.params["to"] == "RAS"
    json.dumps(step.to_dict())
    # The recorded transform is nibabel's: applying it reproduces the result.
    transform = np.array(step.params["transform"])
    np.testing.assert_array_equal(nib.orientations.apply_orientation(image.array, transform),
                                  result.array)


def test_channel_axis_stays_last():
    rng = np.random.default_rng(1)
    image = MedicalImage(rng.random((5, 4, 3, 2)), OBLIQUE, 3)
    result = to_ras(image)
    assert result.array.shape[-1] == 2
    assert result.spatial_shape == (3, 5, 4)  # old axes ran along P, I, L
    for channel in range(2):
        assert_same_world_voxels(
            image.replace(array=image.array[..., channel]),
            result.replace(array=result.array[..., channel]),
        )


def test_ras_image_is_a_recorded_no_op():
    image = MedicalImage(np.zeros((3, 4, 5)), np.diag([2.0, 2.0, 2.0, 1.0]), 3)
    result = to_ras(image)
    assert result.array is image.array
    assert np.array_equal(result.affine, image.affine)
    assert result.history[-1].params == {"from": "RAS", "to": "RAS",
                                         "transform": [[0, 1], [1, 1], [2, 1]]}


def test_2d_rgb_picture_in_image_space_is_a_no_op():
    rgb = np.random.default_rng(2).integers(0, 256, (32, 24, 3), dtype=np.uint8)
    image = MedicalImage(rgb, np.diag([0.2, 0.2, 1.0, 1.0]), 2, {"space": "image"})
    result = to_ras(image)
    assert result.array is rgb
    assert result.history[-1].params["transform"] == [[0, 1], [1, 1]]
    # A picture is named by its columns and rows, not by R and A (issue 19).
    assert result.history[-1].params["from"] == result.history[-1].params["to"] == "column,row"


def test_2d_only_spatial_axes_are_flipped_and_swapped():
    # i runs along -y (P) and j along +x (R): swap and flip, keep the 3 channels.
    affine = np.array([[0, 0.5, 0, 0], [-0.5, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    image = MedicalImage(np.random.default_rng(3).random((6, 8, 3)), affine, 2)
    assert image.orientation == "PR"
    result = to_ras(image)
    assert result.orientation == "RA"
    assert result.array.shape == (8, 6, 3)
    assert_same_world_voxels(image, result)


def test_2d_slice_outside_the_axial_plane():
    # A sagittal slice: i along A, j along I (rows going down), k (the normal) along R.
    affine = np.array([[0, 0, 1, 7], [0.5, 0, 0, 0], [0, -0.5, 0, 0], [0, 0, 0, 1.0]])
    image = MedicalImage(np.arange(20.0).reshape(4, 5), affine, 2)
    result = to_ras(image)
    assert result.orientation == "AS"
    assert_same_world_voxels(image, result)


def test_degenerate_affine_is_a_geometry_error():
    affine = np.eye(4)
    affine[:, 1] = 0
    image = MedicalImage(np.zeros((3, 3, 3)), affine, 3, {"path": "broken.nii"})
    with pytest.raises(GeometryError, match="broken.nii: .*degenerate"):
        to_ras(image)


def test_real_lps_mr_keeps_world_extent(shared_data):
    nifti = nib.load(shared_data / "totalsegmentator" / "example_mr_sm.nii.gz")
    image = MedicalImage(np.asarray(nifti.dataobj), nifti.affine, 3, {"modality": "MR"})
    assert image.orientation == "LPS"
    result = to_ras(image)
    assert result.orientation == "RAS"
    assert np.array_equal(nib.as_closest_canonical(nifti).affine, result.affine)
    assert_same_world_voxels(image, result)
