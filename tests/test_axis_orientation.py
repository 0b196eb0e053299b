"""``axis_orientation`` gives exactly nibabel's ``io_orientation`` for every affine: read
off the matrix for axis-aligned grids, through nibabel for the rest."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from nibabel.orientations import io_orientation

from medimg_build.image import axis_orientation


def _axis_aligned(permutation, signs, zooms) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = 0
    for index_axis, world_axis in enumerate(permutation):
        affine[world_axis, index_axis] = signs[index_axis] * zooms[index_axis]
    affine[:3, 3] = [-12.5, 3.0, 40.25]
    return affine


@pytest.mark.parametrize("permutation", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("signs", list(itertools.product((1, -1), repeat=3)))
def test_axis_aligned_3d_equals_nibabel(permutation, signs):
    affine = _axis_aligned(permutation, signs, (0.7, 1.3, 2.5))
    assert np.array_equal(axis_orientation(affine), io_orientation(affine))


@pytest.mark.parametrize("columns", [[0, 1, 3], [0, 2, 3], [1, 2, 3]])
@pytest.mark.parametrize("signs", list(itertools.product((1, -1), repeat=3)))
def test_2d_columns_equal_nibabel(columns, signs):
    # A 2D image's two index axes with the translation: a (4, 3) affine.
    for permutation in itertools.permutations(range(3)):
        affine = _axis_aligned(permutation, signs, (0.143, 0.143, 1.0))[:, columns]
        assert np.array_equal(axis_orientation(affine), io_orientation(affine))


@pytest.mark.parametrize("affine", [
    # Oblique: 20 degrees about S.
    np.array([[np.cos(0.35), -np.sin(0.35), 0, 0], [np.sin(0.35), np.cos(0.35), 0, 0],
              [0, 0, 1, 0], [0, 0, 0, 1]]),
    # A sliver of obliqueness (the fast path needs exact zeros).
    np.array([[1, 1e-9, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
    # Two index axes on one world axis, and a zero (degenerate) axis.
    np.array([[1, 2, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
    np.diag([1.0, 0.0, 1.0, 1.0]),
])
def test_other_affines_go_to_nibabel(affine):
    np.testing.assert_array_equal(axis_orientation(affine), io_orientation(affine))
