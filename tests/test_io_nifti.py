"""NIfTI/MGH reading: the same array and affine as nibabel, on nibabel's own files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medimg_build.errors import ImageReadError, MedimgError
from medimg_build.io import read_image

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
NIBABEL_FILES = ["anatomical.nii", "example4d.nii.gz", "example_nifti2.nii.gz",
                 "standard.nii.gz", "functional.nii", "reoriented_anat_moved.nii",
                 "resampled_anat_moved.nii", "test.mgz"]


def one_line(error: MedimgError, path) -> str:
    message = str(error)
    assert "\n" not in message and str(path) in message
    return message


def not_a_memmap(array: np.ndarray) -> bool:
    while array is not None:
        if isinstance(array, np.memmap):
            return False
        array = array.base if isinstance(array.base, np.ndarray) else None
    return True


@pytest.mark.parametrize("name", NIBABEL_FILES)
def test_nibabel_test_files_read_as_nibabel_reads_them(name):
    path = NIBABEL_DATA / name
    img = nib.load(path)
    expected = np.asanyarray(img.dataobj)
    image = read_image(path)

    np.testing.assert_array_equal(image.affine, img.affine)
    trivial = img.dataobj.slope == 1 and img.dataobj.inter == 0
    if trivial:
        assert image.array.dtype == expected.dtype.newbyteorder("=")  # raw dtype kept
        np.testing.assert_array_equal(image.array, expected)
    else:
        assert image.array.dtype == np.float32  # scaled: float64 maths, float32 storage
        np.testing.assert_array_equal(image.array, expected.astype(np.float32))
        assert image.meta["intensity"]["rescale_slope"] == pytest.approx(img.dataobj.slope)
    assert image.array.dtype.isnative
    assert not_a_memmap(image.array)
    assert image.spatial_ndim == 3
    assert image.has_channels == (len(img.shape) == 4)
    assert image.meta["format"] == ("mgh" if name.endswith(".mgz") else "nifti")
    assert image.meta["space"] == "patient"
    assert image.meta["source_files"] == [str(path.resolve())]
    json.dumps(image.meta)
    assert image.history[0].name == "read"


def test_nifti_header_facts_are_recorded():
    image = read_image(NIBABEL_DATA / "example_nifti2.nii.gz")
    facts = image.meta["nifti"]
    assert facts["version"] == 2
    assert {"sform_code", "qform_code", "spatial_unit"} <= set(facts)


def test_real_ct_and_segmentation_niftis(shared_data):
    for name in ("example_ct.nii.gz", "example_seg.nii.gz", "example_mr_sm.nii.gz"):
        path = shared_data / "totalsegmentator" / name
        img = nib.load(path)
        image = read_image(path)
        np.testing.assert_array_equal(image.affine, img.affine)
        np.testing.assert_array_equal(image.array, np.asanyarray(img.dataobj))


def test_4d_with_one_volume_is_3d(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4, 1)
    path = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2, 3, 4, 1])), path)
    image = read_image(path)
    assert image.array.shape == (2, 3, 4) and not image.has_channels


def test_2d_nifti_is_2d(tmp_path):
    data = np.arange(6, dtype=np.uint8).reshape(2, 3)
    path = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.7, 1, 1])), path)
    image = read_image(path)
    assert image.spatial_ndim == 2
    assert image.spacing == pytest.approx((0.5, 0.7))
    np.testing.assert_array_equal(image.array, data)


def test_rgb_nifti_gets_a_channel_axis(tmp_path):
    rgb = np.zeros((4, 5, 6), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"], rgb["G"], rgb["B"] = 10, 20, 30
    path = tmp_path / "rgb.nii.gz"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), path)
    image = read_image(path)
    assert image.array.shape == (4, 5, 6, 3)
    assert list(image.array[0, 0, 0]) == [10, 20, 30]
    assert image.meta["intensity"]["photometric"] == "RGB"


def test_big_endian_values_come_out_native(tmp_path):
    data = np.arange(60, dtype=">i2").reshape(3, 4, 5)
    path = tmp_path / "be.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    image = read_image(path)
    assert image.array.dtype == np.dtype("int16") and image.array.dtype.isnative
    np.testing.assert_array_equal(image.array, data)


def test_more_than_one_non_spatial_axis_is_refused(tmp_path):
    path = tmp_path / "five.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 3, 2), np.float32), np.eye(4)), path)
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    assert "non-spatial" in one_line(caught.value, path)


def test_truncated_nifti_gz(tmp_path):
    source = NIBABEL_DATA / "example4d.nii.gz"
    path = tmp_path / "cut.nii.gz"
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    one_line(caught.value, path)


def test_uncompressed_nifti_cut_short(tmp_path):
    data = (NIBABEL_DATA / "anatomical.nii").read_bytes()
    path = tmp_path / "short.nii"
    path.write_bytes(data[:1000])
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    one_line(caught.value, path)


@pytest.mark.parametrize("content", [b"", b"plain text, not a volume\n",
                                     gzip.compress(b"gzip of text")])
def test_empty_and_foreign_files_named_nifti(tmp_path, content):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    one_line(caught.value, path)


@pytest.mark.parametrize("gzipped", [False, True])
def test_cifti_is_refused_clearly(gzipped, tmp_path):
    path = NIBABEL_DATA / "row_major.dconn.nii"
    if gzipped:  # a .nii.gz takes the ISA-L inflate path, not nib.load
        path = tmp_path / "row_major.dconn.nii.gz"
        path.write_bytes(gzip.compress((NIBABEL_DATA / "row_major.dconn.nii").read_bytes()))
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    assert "Cifti2Image is not a voxel image" in one_line(caught.value, path)
