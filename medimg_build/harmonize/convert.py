"""Shape conversions that change no geometry: colour to gray, a lone slice to 2D."""

from __future__ import annotations

import numpy as np

from ..image import MedicalImage

# ITU-R BT.601 luma, the weights Pillow's "L" conversion and most X-ray tools use.
_LUMA = np.array([0.299, 0.587, 0.114])


def to_grayscale(image: MedicalImage) -> MedicalImage:
    """One luminance channel from RGB(A); images without 3+ channels pass unchanged."""
    if not image.has_channels or image.n_channels < 3:
        return image
    rgb = image.array[..., :3].astype(np.float32)
    gray = rgb @ _LUMA.astype(np.float32)
    if np.issubdtype(image.array.dtype, np.integer):
        info = np.iinfo(image.array.dtype)
        gray = np.clip(np.rint(gray), info.min, info.max).astype(image.array.dtype)
    intensity = dict(image.meta.get("intensity", {}), photometric="MONOCHROME2")
    return image.replace(array=gray, meta={**image.meta, "intensity": intensity}).recorded(
        "to_grayscale", weights=_LUMA.tolist(), channels_in=image.n_channels)


def drop_singleton_slice(image: MedicalImage) -> MedicalImage:
    """A 3D image one slice thick as a 2D image (single DICOM slices, 2D NIfTI).

    The affine is unchanged: its third column still says where the slice lies."""
    if image.spatial_ndim != 3 or image.spatial_shape[2] != 1:
        return image
    array = image.array[:, :, 0, ...]
    return image.replace(array=array, spatial_ndim=2).recorded("drop_singleton_slice")
