"""Boxes and landmarks: from source coordinates through harmonization onto the grid."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_build.errors import LabelError
from medimg_build.harmonize import resample_to_spacing, resize_with_pad, to_ras
from medimg_build.image import MedicalImage
from medimg_build.labels.boxes_landmarks import Boxes, Landmarks


def oblique_lps_affine(spacing=(0.8, 0.9, 2.5)) -> np.ndarray:
    """Index axes running towards L, P, S (DICOM-like), tilted by 0.2 rad about S."""
    c, s = np.cos(0.2), np.sin(0.2)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ rotation @ np.diag(spacing)
    affine[:3, 3] = [120.0, 95.0, -60.0]
    return affine


def cube_volume():
    """A dark volume with a bright block on voxels i 10..19, j 5..12, k 3..7."""
    array = np.zeros((40, 30, 12), np.float32)
    array[10:20, 5:13, 3:8] = 1.0
    image = MedicalImage(array, oblique_lps_affine())
    boxes = Boxes.from_voxel_ranges(image, ["block"], [[10, 5, 3]], [[19, 12, 7]])
    points = Landmarks.from_voxels(image, ["centre", "corner"], [[15, 9, 5], [10, 5, 3]])
    return image, boxes, points


def harmonized(image: MedicalImage, spacing, shape) -> MedicalImage:
    # Nearest keeps the block's border crisp, so "inside the box" is checkable exactly.
    image = resample_to_spacing(to_ras(image), spacing, "nearest")
    return resize_with_pad(image, shape, "nearest", pad_value=0)


def assert_box_on_structure(image: MedicalImage, boxes: Boxes, b: int = 0) -> None:
    bright = image.array > 0.5
    region = np.zeros_like(bright)
    region[boxes.voxel_slices(b)] = True
    assert bright.any()
    assert not (bright & ~region).any(), "bright voxels outside the box"
    # The box is the structure's exact extent; the pixels show it only to within the
    # nearest-neighbour rounding of each step (< 2 voxels here), never a shift beyond.
    found = np.argwhere(bright)
    box = boxes.voxel_slices(b)
    np.testing.assert_allclose(found.min(axis=0), [s.start for s in box], atol=2)
    np.testing.assert_allclose(found.max(axis=0), [s.stop - 1 for s in box], atol=2)


def test_3d_box_and_landmarks_follow_reorient_resample_resize():
    image, boxes, points = cube_volume()
    new = harmonized(image, (1.0, 1.0, 1.5), (48, 40, 32))
    assert new.orientation == "RAS" and new.spatial_shape == (48, 40, 32)
    moved, moved_points = boxes.onto(new), points.onto(new)
    assert_box_on_structure(new, moved)
    for index in moved_points.voxel_indices():
        assert new.array[tuple(index)] == 1.0
    # The world position is what no step changes.
    np.testing.assert_allclose(moved_points.to_world(), points.to_world(), atol=1e-6)
    for got, want in zip(moved.to_world(), boxes.to_world()):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert moved.source is boxes and moved_points.source is points
    assert moved.onto(new).source is boxes  # the original stays the original


def test_box_edges_scale_exactly():
    # Voxels 10..19 doubled are voxels 20..39: edges map, not first/last centres.
    image = MedicalImage(np.zeros((100, 100), np.float32), np.eye(4), spatial_ndim=2)
    boxes = Boxes.from_voxel_ranges(image, "x", [[10, 0]], [[19, 99]])
    moved = boxes.onto(resize_with_pad(image, (200, 200)))
    np.testing.assert_allclose(moved.lo, [[19.5, -0.5]])
    np.testing.assert_allclose(moved.hi, [[39.5, 199.5]])
    assert moved.voxel_slices(0) == (slice(20, 40), slice(0, 200))


def test_2d_flipped_image_box_and_landmark():
    array = np.zeros((60, 50), np.float32)
    array[20:31, 8:15] = 1.0
    affine = np.diag([-0.5, -0.7, 1.0, 1.0])  # rows and columns run towards L and P
    affine[:2, 3] = [30.0, 40.0]
    image = MedicalImage(array, affine, spatial_ndim=2)
    boxes = Boxes.from_corners(image, ["lesion"], [[20, 8, 30, 14]], convention="index")
    point = Landmarks.from_pixels(image, ["tip"], [[25, 11]])
    new = harmonized(image, (0.35, 0.35), (128, 128))
    assert new.orientation == "RA"
    assert_box_on_structure(new, boxes.onto(new))
    moved = point.onto(new)
    assert new.array[tuple(moved.voxel_indices()[0])] == 1.0
    np.testing.assert_allclose(moved.to_world(), point.to_world(), atol=1e-6)


def test_nih_xywh_box_on_non_square_picture_resized_to_512():
    # A PNG of 300 columns x 200 rows reads as (i = column, j = row) = (300, 200).
    array = np.zeros((300, 200), np.uint8)
    array[50:90, 120:150] = 255  # columns 50..89, rows 120..149
    image = MedicalImage(array, np.eye(4), spatial_ndim=2, meta={"space": "image"})
    boxes = Boxes.from_xywh(image, ["Nodule"], [[50, 120, 40, 30]])  # Bbox [x, y, w, h]
    np.testing.assert_allclose(boxes.lo, [[49.5, 119.5]])
    np.testing.assert_allclose(boxes.hi, [[89.5, 149.5]])
    new = resize_with_pad(to_ras(image), (512, 512), "nearest", pad_value=0)
    moved = boxes.onto(new)
    scale = 512 / 300
    offset_j = (511 - scale * 199) / 2  # rows are padded: 200 rows -> 341.3
    np.testing.assert_allclose(moved.lo, [[49.5 * scale + (511 - scale * 299) / 2,
                                           119.5 * scale + offset_j]])
    assert_box_on_structure(new, moved)
    # (x1, y1, x2, y2) corners in continuous pixel coordinates give the same box.
    same = Boxes.from_corners(image, ["Nodule"], [[50, 120, 90, 150]])
    np.testing.assert_allclose(same.lo, boxes.lo)
    np.testing.assert_allclose(same.hi, boxes.hi)


def test_deeplesion_key_slice_box():
    array = np.zeros((64, 64, 20), np.float32)
    array[20:30, 30:36, 8] = 1.0  # the lesion as seen on its key slice only
    image = MedicalImage(array, np.diag([0.7, 0.7, 5.0, 1.0]))
    boxes = Boxes.from_key_slice(image, ["lung"], [[20, 30, 30, 36]], [8])
    assert boxes.key_slice.tolist() == [True] and boxes.slice_index.tolist() == [8]
    new = resample_to_spacing(to_ras(image), (0.7, 0.7, 2.0), "nearest")
    moved = boxes.onto(new)
    # Slice 8 spans 7.5 .. 8.5 x 5 mm = 37.5 .. 42.5 mm: new slices 18.75 .. 21.25.
    np.testing.assert_allclose(moved.lo[0, 2], 18.75)
    assert moved.slice_index.tolist() == [20] and moved.key_slice.tolist() == [True]
    key = new.array[..., moved.slice_index[0]]
    region = np.zeros_like(key, bool)
    region[moved.voxel_slices(0)[:2]] = True
    assert key[region].min() == 1.0 and key[~region].max() == 0.0


def test_3d_single_slice_onto_2d_image():
    from medimg_build.harmonize.convert import drop_singleton_slice

    image = MedicalImage(np.zeros((30, 20, 1), np.float32), oblique_lps_affine())
    boxes = Boxes.from_voxel_ranges(image, "a", [[3, 4, 0]], [[9, 8, 0]])
    flat = to_ras(drop_singleton_slice(image))
    moved = boxes.onto(flat)
    assert moved.ndim == 2 and moved.key_slice.tolist() == [False]
    assert moved.source.ndim == 3


def test_errors_name_the_case():
    image = MedicalImage(np.zeros((100, 80), np.float32), np.eye(4), spatial_ndim=2)
    with pytest.raises(LabelError, match="case7.*outside the image of shape"):
        Boxes.from_xywh(image, ["Mass"], [[90, 10, 30, 10]], where="case7")
    with pytest.raises(LabelError, match="rows of 4 finite numbers"):
        Boxes.from_xywh(image, ["Mass"], [[1, 2, 3]], where="case7")
    with pytest.raises(LabelError, match="need 2 non-empty label"):
        Landmarks.from_voxels(image, ["a"], [[1, 2], [3, 4]])
    with pytest.raises(LabelError, match="pixel convention"):
        Boxes.from_corners(image, "a", [[1, 2, 3, 4]], convention="centre")
    with pytest.raises(LabelError, match="needs a 3D image"):
        Boxes.from_key_slice(image, "a", [[1, 2, 3, 4]], [0])
    # Up to one voxel of overshoot is annotation-tool rounding: clipped onto the image.
    clipped = Boxes.from_xywh(image, ["Mass"], [[90, 10, 10.8, 10]])
    assert clipped.hi[0, 0] == 99.5
    empty = Boxes.from_xywh(image, [], np.zeros((0, 4)))
    assert len(empty) == 0 and len(empty.onto(resize_with_pad(image, (50, 50)))) == 0
