"""MetaImage, NRRD and Analyze/NIfTI-pair files through SimpleITK.

The expected RAS affine is checked two independent ways: by the textbook formula
(LPS -> RAS sign flip of ITK's direction x spacing and origin) and by letting ITK write
the same image as NIfTI and reading that with nibabel.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medimg_build.errors import ImageReadError, MedimgError
from medimg_build.io import read_image

SPACING = (0.7, 1.3, 2.5)
ORIGIN = (-12.5, 30.25, 101.0)


def one_line(error: MedimgError, path) -> str:
    message = str(error)
    assert "\n" not in message and str(path) in message
    return message


def rotation() -> np.ndarray:
    """A proper rotation that mixes all three axes (oblique acquisition)."""
    a, b = np.radians(20.0), np.radians(-35.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def oblique_volume(shape_kji=(6, 7, 8), dtype=np.int16) -> tuple[sitk.Image, np.ndarray]:
    pixels = np.arange(np.prod(shape_kji)).reshape(shape_kji).astype(dtype)
    image = sitk.GetImageFromArray(pixels)  # numpy (k, j, i) -> ITK (i, j, k)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(rotation().ravel().tolist())
    return image, pixels


def expected_ras_affine() -> np.ndarray:
    lps = np.eye(4)
    lps[:3, :3] = rotation() * np.array(SPACING)[np.newaxis, :]
    lps[:3, 3] = ORIGIN
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


@pytest.mark.parametrize("suffix", [".mha", ".mhd", ".nrrd", ".nhdr", ".hdr"])
def test_oblique_volume_geometry_and_voxels(tmp_path, suffix):
    image, pixels = oblique_volume()
    path = tmp_path / f"vol{suffix}"
    sitk.WriteImage(image, str(path))
    ours = read_image(path)

    np.testing.assert_allclose(ours.affine, expected_ras_affine(), atol=1e-5)
    assert ours.array.shape == (8, 7, 6)  # (i, j, k)
    np.testing.assert_array_equal(ours.array, pixels.transpose(2, 1, 0))
    assert ours.spatial_ndim == 3 and ours.meta["space"] == "patient"
    assert ours.array.dtype.isnative

    # The same image through ITK's NIfTI writer and nibabel: the field's own answer.
    nifti = tmp_path / "same.nii.gz"
    sitk.WriteImage(image, str(nifti))
    reference = nib.load(nifti)
    np.testing.assert_allclose(ours.affine, reference.affine, atol=1e-4)
    np.testing.assert_array_equal(ours.array, np.asanyarray(reference.dataobj))

    files = ours.meta["source_files"]
    assert files == sorted(files) and str(path.resolve()) in files
    if suffix in (".mhd", ".nhdr", ".hdr"):
        assert len(files) == 2  # header + detached data file
    json.dumps(ours.meta)
    assert ours.history[0].params["reader"] == "simpleitk"


def test_formats_are_named(tmp_path):
    image, _ = oblique_volume()
    for suffix, fmt in ((".mha", "metaimage"), (".nrrd", "nrrd")):
        path = tmp_path / f"v{suffix}"
        sitk.WriteImage(image, str(path))
        assert read_image(path).meta["format"] == fmt


def test_2d_picture_is_image_space_with_its_spacing(tmp_path):
    pixels = np.arange(20, dtype=np.uint8).reshape(4, 5)  # 4 rows, 5 columns
    image = sitk.GetImageFromArray(pixels)
    image.SetSpacing((0.2, 0.3))
    path = tmp_path / "flat.mha"
    sitk.WriteImage(image, str(path))
    ours = read_image(path)
    assert ours.spatial_ndim == 2 and ours.array.shape == (5, 4)
    np.testing.assert_array_equal(ours.array, pixels.T)  # same (W, H) rule as PNG
    assert ours.meta["space"] == "image"
    np.testing.assert_allclose(ours.affine, np.diag([0.2, 0.3, 1, 1]))
    assert ours.meta["pixel_spacing_known"] is True


def test_2d_with_patient_geometry_stays_patient(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((4, 5), np.int16))
    image.SetOrigin((10.0, -5.0))
    path = tmp_path / "plane.nrrd"
    sitk.WriteImage(image, str(path))
    ours = read_image(path)
    assert ours.meta["space"] == "patient"
    np.testing.assert_allclose(ours.affine[:2, 3], [-10.0, 5.0])  # LPS -> RAS


def test_rgb_volume_has_a_channel_axis(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, size=(3, 4, 5, 3), dtype=np.uint8)
    image = sitk.GetImageFromArray(pixels, isVector=True)
    path = tmp_path / "rgb.mha"
    sitk.WriteImage(image, str(path))
    ours = read_image(path)
    assert ours.array.shape == (5, 4, 3, 3) and ours.has_channels
    np.testing.assert_array_equal(ours.array, pixels.transpose(2, 1, 0, 3))


def test_4d_time_series_becomes_channels(tmp_path):
    volumes = [oblique_volume()[0] + t for t in range(3)]
    image = sitk.JoinSeries(volumes)
    path = tmp_path / "t.nrrd"
    sitk.WriteImage(image, str(path))
    ours = read_image(path)
    assert ours.array.shape == (8, 7, 6, 3)
    np.testing.assert_allclose(ours.affine, expected_ras_affine(), atol=1e-5)
    np.testing.assert_array_equal(ours.array[..., 2] - ours.array[..., 0], 2)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_truncated_and_empty_files(tmp_path, suffix):
    image, _ = oblique_volume((20, 20, 20))
    whole = tmp_path / f"whole{suffix}"
    sitk.WriteImage(image, str(whole))
    data = whole.read_bytes()
    for name, content in (("cut", data[: len(data) // 2]), ("empty", b""),
                          ("text", b"just text\nnot an image\n")):
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(content)
        with pytest.raises(ImageReadError) as caught:
            read_image(path)
        one_line(caught.value, path)


def test_mhd_with_missing_data_file(tmp_path):
    image, _ = oblique_volume()
    path = tmp_path / "v.mhd"
    sitk.WriteImage(image, str(path))
    for data_file in tmp_path.glob("v.*raw"):
        data_file.unlink()
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    one_line(caught.value, path)
