"""Intensity presets: what they store, that they record enough to be undone."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medimg_build.errors import MedimgError
from medimg_build.harmonize import (
    PRESETS,
    IntensityError,
    denormalize,
    normalize,
    normalize_ct,
    normalize_mr,
    normalize_unit_range,
)
from medimg_build.image import MedicalImage

AFFINE = np.diag([0.7, 0.7, 2.0, 1.0])


def image_of(array, spatial_ndim=3, **meta) -> MedicalImage:
    return MedicalImage(np.asarray(array), AFFINE, spatial_ndim, meta)


def synthetic_ct() -> MedicalImage:
    rng = np.random.default_rng(0)
    hu = rng.normal(40, 300, (30, 30, 8)).round()
    hu[:3] = -2048  # outside the scanner's field of view
    hu[-1, -1] = 4000  # metal
    return image_of(hu.astype(np.int16), modality="CT")


# -- CT -------------------------------------------------------------------------------
def test_ct_clips_to_the_window_and_keeps_hu():
    image = synthetic_ct()
    result = normalize_ct(image)
    assert result.array.dtype == np.int16
    assert result.array.min() == -1024 and result.array.max() == 3071
    inside = (image.array >= -1024) & (image.array <= 3071)
    np.testing.assert_array_equal(result.array[inside], image.array[inside])
    step = result.history[-1]
    assert step.name == "normalize_ct"
    assert step.params == {"method": "ct", "window": [-1024.0, 3071.0], "dtype": "int16"}
    json.dumps(step.to_dict())


def test_ct_rounds_float_hu():
    image = image_of(np.array([[[-1.6, 0.4, 0.6, 12.5]]]), intensity={"unit": "HU"})
    assert normalize_ct(image).array.ravel().tolist() == [-2, 0, 1, 12]
    as_float = normalize_ct(image, window=(-1, 10), dtype="float32").array.ravel()
    np.testing.assert_allclose(as_float, [-1, 0.4, 0.6, 10])


@pytest.mark.parametrize("meta", [{"modality": "MR"}, {},
                                  {"modality": "CT", "intensity": {"unit": "raw"}}])
def test_ct_refuses_images_not_in_hu(meta):
    image = MedicalImage(np.zeros((2, 2, 2), np.int16), AFFINE, 3, {**meta, "path": "s/1.dcm"})
    with pytest.raises(IntensityError, match=r"^s/1.dcm: CT normalization needs Hounsfield"):
        normalize_ct(image)
    assert issubclass(IntensityError, MedimgError)


def test_ct_window_must_fit_the_dtype():
    with pytest.raises(IntensityError, match="does not fit int16"):
        normalize_ct(synthetic_ct(), window=(-1024, 40000))
    with pytest.raises(IntensityError, match="not a pair low < high"):
        normalize_ct(synthetic_ct(), window=(100, -100))


# -- MR -------------------------------------------------------------------------------
def test_mr_zscore_of_the_clipped_image():
    rng = np.random.default_rng(1)
    signal = rng.gamma(4.0, 100.0, (40, 40, 10))
    image = image_of(signal.astype(np.int16), modality="MR")
    result = normalize_mr(image)
    assert result.array.dtype == np.float32
    params = result.history[-1].params
    low, high = np.percentile(image.array, [0.5, 99.5])
    assert params["clip"] == [pytest.approx(low), pytest.approx(high)]
    assert abs(result.array.mean()) < 1e-5 and result.array.std() == pytest.approx(1, abs=1e-5)
    assert params["mask"] == "all" and params["percentiles"] == [0.5, 99.5]
    json.dumps(result.history[-1].to_dict())


def test_mr_nonzero_mask_ignores_the_background():
    brain = np.zeros((40, 40, 10))
    brain[10:30, 10:30] = np.random.default_rng(2).normal(500, 50, (20, 20, 10))
    image = image_of(brain, modality="MR")
    everything = normalize_mr(image).history[-1].params
    foreground = normalize_mr(image, mask="nonzero")
    params = foreground.history[-1].params
    assert everything["clip"][0] == 0  # most voxels are background
    assert params["mean"] == pytest.approx(500, abs=5) and params["std"] == pytest.approx(50, abs=3)
    inside = foreground.array[10:30, 10:30]
    assert abs(inside.mean()) < 0.01 and inside.std() == pytest.approx(1, abs=0.02)


def test_mr_channels_are_normalized_separately():
    rng = np.random.default_rng(3)
    stack = np.stack([rng.normal(100, 10, (20, 20, 5)), rng.normal(2000, 400, (20, 20, 5))],
                     axis=-1)
    result = normalize_mr(image_of(stack, modality="MR"))
    params = result.history[-1].params
    assert len(params["mean"]) == 2 and len(params["clip"][0]) == 2
    for channel in range(2):
        assert abs(result.array[..., channel].mean()) < 1e-5
    restored = denormalize(result.array, params)
    clipped = np.clip(stack, params["clip"][0], params["clip"][1])
    np.testing.assert_allclose(restored, clipped, rtol=1e-5)


def test_mr_constant_image_does_not_divide_by_zero():
    result = normalize_mr(image_of(np.full((4, 4, 4), 7.0)))
    assert np.all(result.array == 0) and result.history[-1].params["std"] == 1.0


# -- unit range -------------------------------------------------------------------------
def test_8bit_to_float16_is_exactly_invertible():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    result = normalize_unit_range(image_of(pixels, 2))
    assert result.array.dtype == np.float16
    assert result.array.min() == 0 and result.array.max() == 1
    params = result.history[-1].params
    assert params["offset"] == 0 and params["scale"] == 255 and params["bits"] == 8
    np.testing.assert_array_equal(np.rint(denormalize(result.array, params)), pixels)


def test_16bit_uses_bits_stored():
    pixels = np.array([[0, 1000, 4095]], dtype=np.uint16)
    stored12 = normalize_unit_range(image_of(pixels, 2, intensity={"bits_stored": 12}))
    assert stored12.array.dtype == np.float32
    np.testing.assert_allclose(stored12.array, pixels / 4095)
    assert stored12.history[-1].params["source_range"] == [0, 4095]
    full = normalize_unit_range(image_of(pixels, 2))
    np.testing.assert_allclose(full.array, pixels / 65535)


def test_unsigned_pixels_in_a_signed_array_follow_the_reader():
    pixels = np.array([[0, 2048, 4095]], dtype=np.int16)
    unsigned = normalize_unit_range(image_of(pixels, 2, intensity={"bits_stored": 12,
                                                                     "signed": False}))
    np.testing.assert_allclose(unsigned.array, pixels / 4095)
    signed = normalize_unit_range(image_of(pixels - 2048, 2, intensity={"bits_stored": 12}))
    np.testing.assert_allclose(signed.array, pixels / 4095)
    assert signed.history[-1].params["source_range"] == [-2048, 2047]


def test_float_input_uses_its_own_range_and_explicit_range_clips():
    values = np.array([[-2.0, 0.0, 6.0]])
    result = normalize_unit_range(image_of(values, 2))
    np.testing.assert_allclose(result.array, [[0, 0.25, 1]])
    assert result.history[-1].params["source_range"] == [-2.0, 6.0]
    np.testing.assert_allclose(denormalize(result.array, result.history[-1].params), values)
    explicit = normalize_unit_range(image_of(values, 2), source_range=(0, 4), dtype="float64")
    np.testing.assert_allclose(explicit.array, [[0, 0, 1]])


# -- dispatch and undo ------------------------------------------------------------------
def test_presets_and_dispatch():
    assert set(PRESETS) == {"ct", "mr", "xray", "photo", "none"}
    assert PRESETS["ct"]["dtype"] == "int16" and PRESETS["mr"]["dtype"] == "float32"
    ct = normalize(synthetic_ct(), "ct", window=[-200, 300])
    assert ct.history[-1].params["window"] == [-200, 300]
    photo = normalize(image_of(np.zeros((4, 4, 3), np.uint8), 2), "photo")
    assert photo.array.dtype == np.float16
    none = normalize(synthetic_ct(), "none")
    assert none.history[-1].params == {"method": "none", "dtype": "int16"}
    np.testing.assert_array_equal(denormalize(none.array, none.history[-1].params),
                                  synthetic_ct().array)


def test_none_parameters_mean_defaults():
    result = normalize(image_of(np.arange(8.0).reshape(2, 2, 2), modality="MR"), "mr",
                       percentiles=None, window=None)
    assert result.history[-1].params["percentiles"] == [0.5, 99.5]


def test_errors_name_the_file_the_image_was_read_from():
    image = image_of(np.zeros((2, 2, 2)), modality="MR").recorded("read", path="/data/s1")
    with pytest.raises(IntensityError, match="^/data/s1: CT normalization"):
        normalize(image, "ct")


def test_unknown_preset_and_parameter_name_the_valid_ones():
    with pytest.raises(IntensityError, match="unknown intensity preset 'pet'.*ct, mr, xray"):
        normalize(synthetic_ct(), "pet")
    with pytest.raises(IntensityError, match="no parameter percentiles.*window, dtype"):
        normalize(synthetic_ct(), "ct", percentiles=[1, 99])


def test_denormalize_accepts_a_whole_step_and_refuses_unknown_methods():
    result = normalize_unit_range(image_of(np.array([[0, 51, 255]], np.uint8), 2))
    whole = json.loads(result.history[-1].to_json())
    np.testing.assert_allclose(denormalize(result.array, whole), [[0, 51, 255]], atol=0.1)
    with pytest.raises(IntensityError, match="cannot undo"):
        denormalize(result.array, {"method": "histogram"})


# -- real data --------------------------------------------------------------------------
def test_round_trip_real_ct(shared_data):
    nifti = nib.load(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz")
    image = MedicalImage(np.asarray(nifti.dataobj), nifti.affine, 3, {"modality": "CT"})
    result = normalize(image, "ct")
    restored = denormalize(result.array, json.loads(result.history[-1].to_json()))
    np.testing.assert_array_equal(restored, np.clip(image.array, -1024, 3071))


def test_round_trip_real_mr(shared_data):
    nifti = nib.load(shared_data / "totalsegmentator" / "example_mr_sm.nii.gz")
    image = MedicalImage(np.asarray(nifti.dataobj), nifti.affine, 3, {"modality": "MR"})
    result = normalize(image, "mr")
    params = json.loads(result.history[-1].to_json())["params"]
    restored = denormalize(result.array, params)
    clipped = np.clip(image.array, *params["clip"])
    np.testing.assert_allclose(restored, clipped, atol=1e-3 * np.ptp(clipped))
    assert 0.004 < (image.array != clipped).mean() <= 0.01  # at most 0.5 % each side


@pytest.mark.parametrize("name, preset", [("00000001_000.png", "xray"),
                                          ("16747_3_1.jpg", "photo")])
def test_round_trip_real_8bit_pictures(shared_data, name, preset):
    pixels = np.asarray(Image.open(shared_data / "torchxrayvision" / "tests" / name))
    pixels = np.ascontiguousarray(np.swapaxes(pixels, 0, 1))  # (row, col) -> (i, j)
    image = MedicalImage(pixels, np.eye(4), 2, {"space": "image"})
    result = normalize(image, preset)
    assert result.array.dtype == np.float16
    assert 0 <= result.array.min() and result.array.max() <= 1
    restored = denormalize(result.array, result.history[-1].params)
    np.testing.assert_array_equal(np.rint(restored).astype(np.uint8), pixels)
