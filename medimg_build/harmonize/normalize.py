"""Intensity presets per modality; each records what undoes it (``denormalize``).

Every step records ``method`` (``"ct"``, ``"mr"``, ``"unit_range"`` or ``"none"``) plus
the numbers of its formula, so ``denormalize(array, params)`` needs nothing else:

* ``ct``: ``out = clip(x, *window)`` rounded to ``dtype`` (HU stay HU)
* ``mr``: ``out = (clip(x, *clip) - mean) / std``
* ``unit_range``: ``out = clip((x - offset) / scale, 0, 1)``
* ``none``: ``out = x``

Values removed by the clip cannot come back; everything else does, to float precision.
The image's ``meta`` is left as it is: its ``history`` says what the values now mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MedimgError
from ..image import MedicalImage
from .orient import image_source


class IntensityError(MedimgError):
    """An intensity normalization that does not fit the image or its parameters."""


# Default keyword arguments of each preset, as a recipe would write them.
# ``dtype: None`` for xray/photo = float16 for sources of <= 8 bits, else float32.
PRESETS: dict[str, dict[str, Any]] = {
    "ct": {"window": [-1024, 3071], "dtype": "int16"},
    "mr": {"percentiles": [0.5, 99.5], "mask": "all", "dtype": "float32"},
    "xray": {"source_range": None, "dtype": None},
    "photo": {"source_range": None, "dtype": None},
    "none": {},
}


def _dtype(image: MedicalImage, dtype, allowed: str) -> np.dtype:
    try:
        result = np.dtype(dtype)
    except TypeError:
        result = None
    if result is None or result.kind not in allowed:
        raise IntensityError(image_source(image), f"unsupported output dtype {dtype!r}",
                             "use e.g. int16, float16 or float32")
    return result


def _pair(image: MedicalImage, values, what: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in values)
    except (TypeError, ValueError):
        low = high = np.nan
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise IntensityError(image_source(image), f"{what} {values!r} is not a pair low < high",
                             "give two finite numbers, low first")
    return low, high


def normalize_ct(image: MedicalImage, window=(-1024, 3071), dtype="int16") -> MedicalImage:
    """Clip a CT in Hounsfield units to ``window`` and store it as ``dtype`` (rounded).

    The image must already be in HU: ``meta["intensity"]["unit"] == "HU"``, or modality
    ``"CT"`` with no other unit given (readers apply rescale slope/intercept). No scaling:
    stored values are HU. Recorded as ``normalize_ct`` with ``method="ct"``, ``window``
    and ``dtype``.
    """
    unit = (image.meta.get("intensity") or {}).get("unit")
    modality = str(image.meta.get("modality", "")).upper()
    if not (unit == "HU" or (unit is None and modality == "CT")):
        raise IntensityError(
            image_source(image),
            f"CT normalization needs Hounsfield units, but the image has "
            f"modality={image.meta.get('modality')!r}, unit={unit!r}",
            "read it with the rescale slope/intercept applied, or pick another preset",
        )
    low, high = _pair(image, window, "CT window")
    out_dtype = _dtype(image, dtype, "iuf")
    if out_dtype.kind in "iu":
        info = np.iinfo(out_dtype)
        if low < info.min or high > info.max:
            raise IntensityError(image_source(image),
                                 f"CT window {[low, high]} does not fit {out_dtype}",
                                 f"keep the window within [{info.min}, {info.max}]")
    array = np.clip(image.array, low, high)  # the one full-size temporary
    if out_dtype.kind in "iu" and array.dtype.kind == "f":
        np.rint(array, out=array)
    return image.replace(array=array.astype(out_dtype, copy=False)).recorded(
        "normalize_ct", method="ct", window=[low, high], dtype=out_dtype.name
    )


def _zscore_stats(channel: np.ndarray, percentiles, mask: str):
    """Clip bounds, mean and std of one channel's values, in float64 and in C order
    (the order fixes the bits of the mean and std). One float64 copy, clipped in place:
    the image is then 8 bytes per voxel, not 40."""
    values = channel.astype(np.float64, order="C").reshape(-1)
    if mask == "nonzero" and np.any(values != 0):
        values = values[values != 0]
    low, high = np.percentile(values, percentiles)
    clipped = np.clip(values, low, high, out=values)
    del values
    mean, std = float(clipped.mean()), float(clipped.std())
    # A constant image has no spread: keep it as is (shifted) instead of dividing by 0.
    return float(low), float(high), mean, std if std > 0 else 1.0


def normalize_mr(
    image: MedicalImage, percentiles=(0.5, 99.5), dtype="float32", *, mask: str = "all"
) -> MedicalImage:
    """Per-case percentile clip, then z-score with the clipped image's mean and std.

    ``mask="all"`` (default, as nnU-Net's MR z-score) takes percentiles and statistics
    over every voxel; ``mask="nonzero"`` over non-zero voxels only (skull-stripped data
    such as BraTS, where the zero background would otherwise dominate). Either way the
    same formula is applied to every voxel, so it stays invertible. A channel axis
    (several sequences) is normalized channel by channel, and the recorded numbers are
    then lists, one per channel. Recorded as ``normalize_mr`` with ``method="mr"``,
    ``percentiles``, ``mask``, ``clip`` ([low, high]), ``mean``, ``std``, ``dtype``.
    """
    p_low, p_high = _pair(image, percentiles, "MR percentiles")
    if p_low < 0 or p_high > 100:
        raise IntensityError(image_source(image), f"MR percentiles {[p_low, p_high]} "
                             "are outside 0..100", "use e.g. [0.5, 99.5]")
    if mask not in ("all", "nonzero"):
        raise IntensityError(image_source(image), f"unknown MR mask {mask!r}",
                             "use 'all' or 'nonzero'")
    out_dtype = _dtype(image, dtype, "f")
    array = image.array
    channels = [array[..., c] for c in range(image.n_channels)] if image.has_channels else [array]
    stats = [_zscore_stats(channel, [p_low, p_high], mask) for channel in channels]
    low, high, mean, std = (np.array(column) for column in zip(*stats))
    # (clip(x) - mean) / std, in place in one float64 copy (broadcast over channels).
    out = array.astype(np.float64)
    np.clip(out, low, high, out=out)
    out -= mean
    out /= std

    def per_channel(values: np.ndarray):
        return values.tolist() if image.has_channels else float(values[0])

    return image.replace(array=out.astype(out_dtype)).recorded(
        "normalize_mr",
        method="mr",
        percentiles=[p_low, p_high],
        mask=mask,
        clip=[per_channel(low), per_channel(high)],
        mean=per_channel(mean),
        std=per_channel(std),
        dtype=out_dtype.name,
    )


def _nominal_range(image: MedicalImage) -> tuple[float, float, int | None]:
    """The range the pixel format can hold: 0..2**bits-1 (signed: symmetric around 0)."""
    array = image.array
    if array.dtype == np.bool_:
        return 0.0, 1.0, 1
    intensity = image.meta.get("intensity") or {}
    if np.issubdtype(array.dtype, np.integer) or intensity.get("bits_stored"):
        # Float pixels that were integers before resampling keep their source's range:
        # the reader's bits_stored says what the pixel format could hold.
        info = np.iinfo(array.dtype) if np.issubdtype(array.dtype, np.integer) else None
        bits = int(intensity.get("bits_stored") or info.bits)
        if info is not None:
            bits = min(bits, info.bits)
        # Readers say whether the stored pixels are signed (DICOM PixelRepresentation);
        # unsigned 12-bit X-rays often arrive in an int16 array.
        signed = intensity.get("signed")
        if signed is None:
            signed = info is not None and info.min < 0
        if signed:
            return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1, bits
        return 0.0, 2.0**bits - 1, bits
    # Float pixels have no nominal range: use the image's own (recorded, so invertible).
    return float(np.min(array)), float(np.max(array)), None


def normalize_unit_range(image: MedicalImage, source_range=None, dtype=None) -> MedicalImage:
    """Scale to [0, 1] by the nominal range of the data (X-rays and photographs).

    The source range is ``source_range`` when given; else 0..255 for 8-bit pixels,
    0..2**bits_stored - 1 for wider integers (``meta["intensity"]["bits_stored"]``, or
    the dtype's width; signed per ``meta["intensity"]["signed"]``, else per the dtype),
    and the image's min..max for floats. Values outside it are
    clipped. ``dtype`` defaults to float16 for sources of <= 8 bits (k/255 comes back
    exactly after rounding) and float32 otherwise. Recorded as ``normalize_unit_range``
    with ``method="unit_range"``, ``offset`` and ``scale`` (``out = (x - offset) /
    scale``), ``source_range``, ``bits`` (None for floats) and ``dtype``.
    """
    if source_range is None:
        low, high, bits = _nominal_range(image)
    else:
        low, high = _pair(image, source_range, "source range")
        bits = None
    if dtype is None:
        small = bits is not None and bits <= 8
        dtype = "float16" if small else "float32"
    out_dtype = _dtype(image, dtype, "f")
    scale = high - low if high > low else 1.0  # a constant float image maps to 0
    out = image.array.astype(_working_float(image.array.dtype, low, out_dtype, scale))
    out -= low  # (x - offset) / scale, clipped, in place
    out /= scale
    np.clip(out, 0.0, 1.0, out=out)
    return image.replace(array=out.astype(out_dtype)).recorded(
        "normalize_unit_range",
        method="unit_range",
        offset=low,
        scale=scale,
        source_range=[low, high],
        bits=bits,
        dtype=out_dtype.name,
    )


def _working_float(source: np.dtype, low: float, result: np.dtype,
                   scale: float = 1.0) -> np.dtype:
    """float32 where it gives the float64 result's very bits: a result no wider than
    float32, ``low`` and ``scale`` float32 numbers (a given source range such as
    [0, 200.7] is not: 1 ulp off in a fifth of the pixels), and ``x - low`` exact in
    float32 (integer pixels, or ``low`` 0, as for every 8-bit X-ray or photo); else
    float64. The float64 copy of a resized 2D case cost as much as the arithmetic."""
    representable = all(float(np.float32(v)) == v for v in (low, scale))
    exact = representable and (np.issubdtype(source, np.integer) or low == 0)
    if result.itemsize <= 4 and exact and np.can_cast(source, np.float32, "safe"):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _normalize_none(image: MedicalImage) -> MedicalImage:
    return image.recorded("normalize_none", method="none", dtype=image.array.dtype.name)


_FUNCTIONS = {
    "ct": normalize_ct,
    "mr": normalize_mr,
    "xray": normalize_unit_range,
    "photo": normalize_unit_range,
    "none": _normalize_none,
}


def normalize(image: MedicalImage, preset: str, **params: Any) -> MedicalImage:
    """Apply the intensity ``preset`` ("ct", "mr", "xray", "photo", "none") with its
    ``PRESETS`` defaults overridden by ``params``; a parameter given as None means
    "not given" (the default applies), as in a recipe that leaves it empty."""
    params = {name: value for name, value in params.items() if value is not None}
    if preset not in _FUNCTIONS:
        raise IntensityError(image_source(image), f"unknown intensity preset {preset!r}",
                             f"use one of {', '.join(PRESETS)}")
    unknown = sorted(set(params) - set(PRESETS[preset]))
    if unknown:
        allowed = ", ".join(PRESETS[preset]) or "no parameters"
        raise IntensityError(image_source(image),
                             f"intensity preset {preset!r} has no parameter {', '.join(unknown)}",
                             f"it takes {allowed}")
    return _FUNCTIONS[preset](image, **{**PRESETS[preset], **params})


def denormalize(array: np.ndarray, step_params: dict[str, Any]) -> np.ndarray:
    """The original intensities (float32) of a normalized ``array``, up to the clip.

    ``step_params`` is the ``params`` of a recorded normalization step, or the whole
    step as ``AppliedStep.to_dict()`` gives it (``{"name": ..., "params": ...}``).
    """
    if "params" in step_params and "method" not in step_params:
        step_params = step_params["params"]
    method = step_params.get("method")
    data = np.asarray(array, dtype=np.float64)
    if method in ("ct", "none"):
        result = data
    elif method == "mr":
        std = np.asarray(step_params["std"], dtype=np.float64)
        mean = np.asarray(step_params["mean"], dtype=np.float64)
        result = data * std + mean  # per-channel lists broadcast over the last axis
    elif method == "unit_range":
        result = data * float(step_params["scale"]) + float(step_params["offset"])
    else:
        raise IntensityError(None, f"cannot undo intensity step with method {method!r}",
                             "pass the params of a normalize_* step from an image's history")
    return result.astype(np.float32)
