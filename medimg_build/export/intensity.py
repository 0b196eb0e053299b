"""A case's stored values back to the intensities they were made from, or a refusal.

``harmonize.normalize`` records every preset's formula; ``denormalize`` inverts it.
What no formula brings back is a value the preset clipped: it is stored as the clip
bound, and the bound is all that is left of it. Those voxels are counted here
("censored": they hold the bound, or anything beyond it), and where they may hide lost
values the export refuses, naming the fix, instead of writing a plausible wrong number:

* ``ct``: values are HU as stored (the preset only clips and rounds to its dtype, so
  nothing is undone and HU stay exact). The preset's own window, [-1024, 3071], is the
  12-bit CT scale (air and the padding outside the field of view at its floor): values
  there are written as they are and counted in the record. A narrower window with voxels
  on its bound lost what lay beyond it: refused.
* ``mr``: a percentile clip moves every voxel past its percentile onto it (with
  percentiles 0 and 100 it moves none): voxels on a bound whose percentile is inside
  (0, 100) are refused.
* ``unit_range``: the nominal range of the pixel format (``bits``) or the image's own
  min..max clips nothing; a ``source_range`` the recipe gave may have: refused when
  voxels sit on 0 or 1.
* ``none``: nothing to undo.

Undone values that were integers (pixels of a known bit depth, an integer MR) come back
as integers, exactly, while on their own grid (``integer_values``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MedimgError
from ..harmonize.normalize import PRESETS, IntensityError, denormalize


class ExportError(MedimgError):
    """A store, case or output folder that cannot be exported as asked."""


KEEP_HINT = "export the stored values with --keep-normalization"
# How to rebuild a store whose preset clips nothing, per method.
REBUILD_HINTS = {
    "ct": "rebuild with the ct preset's window [-1024, 3071]",
    "mr": "rebuild with --set harmonize.intensity.percentiles=[0,100]",
    "unit_range": "rebuild without harmonize.intensity.source_range",
}


def normalization_step(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last recorded ``normalize_*`` step of a case (``{"name", "params"}``)."""
    return next((step for step in reversed(steps)
                 if str(step.get("name", "")).startswith("normalize")), None)


def undo_normalization(stored: np.ndarray, step: dict[str, Any] | None, *, location: str,
                       case_id: str, recipe_intensity: dict[str, Any]
                       ) -> tuple[np.ndarray, dict[str, Any]]:
    """The intensities before ``step`` (a case's ``normalize_*`` step, channel axis
    last as in MedicalImage), and what the record says of them; ExportError where
    clipped values make the answer inexact."""
    if step is None:
        return stored, {"undone": None, "method": "none", "exact": True}
    params = step.get("params") or {}
    method = params.get("method")
    censored = _censored(stored, params)
    lossy = _lossy_bounds(params, censored, recipe_intensity)
    if lossy:
        raise ExportError(location, f"case {case_id!r}: {'; '.join(lossy)} of its "
                          f"{step['name']} clip (a value beyond a bound is stored as "
                          "the bound): undoing the normalization cannot be exact",
                          hint=f"{KEEP_HINT}, or {REBUILD_HINTS[method]}")
    if method in ("ct", "none"):
        # Their formula is the identity (stored values are the intensities): keep the
        # stored dtype, which float32 would not hold exactly for every integer.
        values = stored
    else:
        try:
            values = denormalize(stored, params)
        except IntensityError as error:
            raise ExportError(location, f"case {case_id!r}: {error.detail()}",
                              hint=KEEP_HINT) from None
    precision = "exact" if values is stored else f"float32 from {stored.dtype} values"
    integers = integer_values(values, stored.dtype, params)
    if integers is not None:
        values = integers
        precision = f"exact: the source's integers, as {values.dtype}"
    record = {"undone": step["name"], "method": method, "exact": True,
              "precision": precision, "censored": censored}
    return values, record


def integer_values(values: np.ndarray, stored: np.dtype, params: dict[str, Any]
                   ) -> np.ndarray | None:
    """``values`` (undone, float32) as the integers they were, when every one lies
    within what the stored float's precision can have moved it from an integer (under
    half a step), so rounding gives each back exactly; else None (they stay float32).

    * ``unit_range`` of a known bit depth (``bits``): the error is at most ``scale``
      times the stored float's epsilon (a float16 k/255 comes back as k +- 0.06); the
      dtype is the smallest holding the source range (uint8 for 8-bit pixels).
    * ``mr``: a z-score stored as float32 and undone is off by about epsilon times the
      magnitudes, so an integer DICOM or NIfTI source (dcm2niix writes int16) comes back
      exactly, as int16 where it fits; a float source has fractions far beyond that.

    Values resampled onto another grid lie between the source's and stay float32."""
    method = params.get("method")
    if not np.issubdtype(stored, np.floating) or not np.isfinite(values).all():
        return None  # "ct" and "none" keep their stored integers; NaN is no integer
    eps = float(np.finfo(stored).eps)
    if method == "unit_range" and params.get("bits") is not None:
        tolerance = float(params["scale"]) * eps
        low, high = (int(bound) for bound in params["source_range"])
        dtype = np.result_type(np.min_scalar_type(low), np.min_scalar_type(high))
    elif method == "mr" and values.size:
        mean = float(np.max(np.abs(np.asarray(params["mean"], dtype=np.float64))))
        tolerance = 2 * eps * (float(np.abs(values).max()) + mean)
        low, high = int(np.floor(values.min())), int(np.ceil(values.max()))
        dtype = next((np.dtype(t) for t in (np.int16, np.int32)
                      if np.iinfo(t).min <= low and high <= np.iinfo(t).max), None)
    else:
        return None
    if dtype is None or tolerance >= 0.5:
        return None
    rounded = np.rint(values)
    if np.abs(values - rounded).max(initial=0.0) > tolerance:
        return None
    return rounded.astype(dtype)


def kept_normalization(step: dict[str, Any] | None) -> dict[str, Any]:
    """The record of a case exported with its stored values (``--keep-normalization``)."""
    if step is None:
        return {"undone": None, "method": "none", "exact": True}
    return {"undone": None, "kept": step["name"], "params": step.get("params") or {},
            "note": "stored values; medimg_build.harmonize.normalize.denormalize with "
                    "these params gives the intensities"}


def _censored(stored: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    """Voxels on each clip bound, per bound (per channel for a multi-channel MR)."""
    method = params.get("method")
    if method == "ct":
        low, high = params["window"]
        return {"low": low, "high": high, "at_low": int(np.count_nonzero(stored == low)),
                "at_high": int(np.count_nonzero(stored == high))}
    if method == "unit_range":
        return {"low": 0.0, "high": 1.0, "at_low": int(np.count_nonzero(stored == 0)),
                "at_high": int(np.count_nonzero(stored == 1))}
    if method == "mr":
        return _censored_mr(stored, params)
    return {}


def _censored_mr(stored: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    """The clip bounds as normalize_mr stored them: ``(bound - mean) / std`` in float64
    (its very operations), cast to the stored dtype, so a comparison finds them."""
    low, high = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in params["clip"])
    mean = np.atleast_1d(np.asarray(params["mean"], dtype=np.float64))
    std = np.atleast_1d(np.asarray(params["std"], dtype=np.float64))
    channels = [stored[..., c] for c in range(low.size)] if _per_channel(params) \
        else [stored]
    at_low, at_high = [], []
    for c, values in enumerate(channels):
        stored_low = np.asarray((low[c] - mean[c]) / std[c]).astype(stored.dtype)
        stored_high = np.asarray((high[c] - mean[c]) / std[c]).astype(stored.dtype)
        at_low.append(int(np.count_nonzero(values == stored_low)))
        at_high.append(int(np.count_nonzero(values == stored_high)))
    return {"low": params["clip"][0], "high": params["clip"][1],
            "at_low": at_low if _per_channel(params) else at_low[0],
            "at_high": at_high if _per_channel(params) else at_high[0]}


def _per_channel(params: dict[str, Any]) -> bool:
    return isinstance(params.get("mean"), list)


def _lossy_bounds(params: dict[str, Any], censored: dict[str, Any],
                  recipe_intensity: dict[str, Any]) -> list[str]:
    """Each bound that may hide lost values, in words ("12 voxel(s) on the high bound
    240")."""
    method = params.get("method")
    if not censored:
        return []
    clipped_low, clipped_high = _bounds_that_clip(method, params, recipe_intensity)
    found = []
    for side, clips in (("low", clipped_low), ("high", clipped_high)):
        count = censored[f"at_{side}"]
        count = sum(count) if isinstance(count, list) else count
        if clips and count:
            found.append(f"{count} voxel(s) on the {side} bound {_shown(censored[side])}")
    return found


def _bounds_that_clip(method: str, params: dict[str, Any],
                      recipe_intensity: dict[str, Any]) -> tuple[bool, bool]:
    """(low, high): whether each bound of the preset can have moved a value onto it."""
    if method == "ct":
        default_low, default_high = PRESETS["ct"]["window"]
        low, high = params["window"]
        return low > default_low, high < default_high
    if method == "mr":
        p_low, p_high = params["percentiles"]
        return p_low > 0, p_high < 100
    if method == "unit_range":
        given = recipe_intensity.get("source_range") is not None
        return given, given
    return False, False


def _shown(bound: Any) -> str:
    """A bound (one per channel for a multi-channel MR) to 6 significant digits."""
    if isinstance(bound, list):
        return "[" + ", ".join(f"{float(b):.6g}" for b in bound) + "]"
    return f"{float(bound):.6g}"
