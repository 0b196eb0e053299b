"""The unit-range normalization works in float32 where that gives the float64
computation's very bits (it halves the cost on a 2D case); the stored values do not move."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_build.harmonize import normalize
from medimg_build.harmonize.normalize import _working_float
from medimg_build.image import MedicalImage


def _float64_reference(array: np.ndarray, low: float, high: float, dtype) -> np.ndarray:
    out = array.astype(np.float64)
    out -= low
    out /= high - low
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(dtype)


def _picture(array: np.ndarray) -> MedicalImage:
    return MedicalImage(np.asfortranarray(array), np.diag([0.143, 0.143, 1.0, 1.0]),
                        spatial_ndim=2)


@pytest.mark.parametrize("source, bits, dtype", [
    (np.uint8, 8, np.float16),  # an 8-bit X-ray
    (np.uint16, 12, np.float32),  # a 12-bit one
    (np.float32, 8, np.float16),  # an 8-bit X-ray after linear resizing
])
def test_same_bits_as_float64(source, bits, dtype):
    high = 2 ** bits - 1
    rng = np.random.default_rng(0)
    values = rng.random((512, 512)) * high
    array = values.astype(source)
    # The reader's bits_stored: a resized image (float32) keeps its source's range by it.
    image = _picture(array).replace(meta={"intensity": {"bits_stored": bits}})
    out = normalize(image, "xray", dtype=np.dtype(dtype).name)
    np.testing.assert_array_equal(out.array, _float64_reference(array, 0, high, dtype))


def test_float32_only_where_exact():
    f16, f32, f64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
    assert _working_float(np.dtype(np.uint8), 0.0, f16) == f32
    assert _working_float(np.dtype(np.int16), -32768.0, f32) == f32  # integers: exact
    assert _working_float(np.dtype(np.float32), -1024.0, f32) == f64  # x - low rounds
    assert _working_float(np.dtype(np.uint8), 0.0, f64) == f64
    assert _working_float(np.dtype(np.int32), 0.0, f32) == f64  # not exact in float32
