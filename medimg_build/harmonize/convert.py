"""Shape conversions that change no geometry: colour to gray, a lone slice to 2D."""

from __future__ import annotations

import numpy as np
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

from ..errors import GeometryError
from ..geometry import grid_offset_mm
from ..image import MedicalImage
from ..limits import check_size
from .orient import image_source, to_ras

# ITU-R BT.601 luma, the weights Pillow's "L" conversion and most X-ray tools use.
_LUMA = np.array([0.299, 0.587, 0.114])
_SLAB_VALUES = 2**22  # pixels converted at a time by to_grayscale (tens of MB)


def to_grayscale(image: MedicalImage) -> MedicalImage:
    """One luminance channel from RGB(A); images without 3+ channels pass unchanged.

    Computed a slab of rows at a time where that gives the same numbers: a whole
    9450x9450 RGB radiograph as float32 is 1 GB on top of its pixels."""
    if not image.has_channels or image.n_channels < 3:
        return image
    array = image.array
    rows, order = _slabs(array)
    if rows is None:
        gray = _luma(array, "K")
    else:
        gray = np.empty(array.shape[:-1], array.dtype if np.issubdtype(array.dtype, np.integer)
                        else np.float32)
        for start in range(0, len(gray), rows):
            gray[start:start + rows] = _luma(array[start:start + rows], order)
    intensity = dict(image.meta.get("intensity", {}), photometric="MONOCHROME2")
    return image.replace(array=gray, meta={**image.meta, "intensity": intensity}).recorded(
        "to_grayscale", weights=_LUMA.tolist(), channels_in=image.n_channels)


def _slabs(array: np.ndarray) -> tuple[int | None, str]:
    """Rows per slab for ``to_grayscale``, and the memory order of each slab's float
    copy, or None: convert the whole image at once.

    numpy's matmul takes BLAS or its own loop depending on the strides of its operand,
    and the two may differ in the last bit. Each slab's float copy gets the layout the
    whole image's would have (a C image's rows stay C, an F image's stay F), and no slab
    is one row thick (whose strides would be both), so every pixel takes the same path
    as before. Other layouts, and images with an axis of length 1, are not cut."""
    order = "F" if array.flags.f_contiguous else "C" if array.flags.c_contiguous else None
    if order is None or 1 in array.shape[:-1]:
        return None, "K"
    rows = max(2, _SLAB_VALUES // int(np.prod(array.shape[1:-1])))
    while 0 < len(array) % rows < 2:
        rows += 1
    return (rows, order) if rows < len(array) else (None, "K")


def _luma(pixels: np.ndarray, order: str) -> np.ndarray:
    """Luminance of RGB(A) ``pixels`` (channels last), rounded and clipped back to their
    integer type, else float32."""
    gray = pixels[..., :3].astype(np.float32, order=order) @ _LUMA.astype(np.float32)
    if np.issubdtype(pixels.dtype, np.integer):
        info = np.iinfo(pixels.dtype)
        gray = np.clip(np.rint(gray), info.min, info.max).astype(pixels.dtype)
    return gray


def drop_singleton_slice(image: MedicalImage) -> MedicalImage:
    """A 3D image one slice thick as a 2D image (single DICOM slices, 2D NIfTI).

    The affine is unchanged: its third column still says where the slice lies."""
    if image.spatial_ndim != 3 or image.spatial_shape[2] != 1:
        return image
    array = image.array[:, :, 0, ...]
    return image.replace(array=array, spatial_ndim=2).recorded("drop_singleton_slice")


def stack_channels(images: list[MedicalImage], names: list[str] | None = None,
                   tolerance_mm: float = 0.01) -> MedicalImage:
    """Single-channel images of one grid (BraTS' t1, t1ce, t2, flair) as the channels of
    one image. The grids are compared in RAS+ order, like masks, so sequences saved with
    different axis orders still stack; the result keeps the first image's orientation
    and metadata."""
    first = images[0]
    # Each file passed the size limit alone; their stack may not.
    check_size(image_source(first), [*first.spatial_shape, len(images)],
               f"stacked as {len(images)} channels, the image")
    arrays = []
    for index, image in enumerate(images):
        where = (image.meta.get("source_files") or ["channel"])[0]
        if image.has_channels:
            raise GeometryError(where, f"channel {index} has {image.n_channels} channels "
                                "itself", hint="stack single-channel files only")
        offset = grid_offset_mm(image, first)
        if offset is None or offset > tolerance_mm:
            raise GeometryError(where, f"channel {index} is not on the grid of the first "
                                f"channel {(first.meta.get('source_files') or ['?'])[0]}",
                                hint="channels of one case must share one grid")
        arrays.append(_in_order_of(image, first))
    stacked = np.stack(arrays, axis=-1)
    files = [f for image in images for f in image.meta.get("source_files", [])]
    meta = {**first.meta, "source_files": files, "channel_names": list(names or [])}
    return first.replace(array=np.asfortranarray(stacked), meta=meta).recorded(
        "stack_channels", n_channels=len(images), names=list(names or []))


def _in_order_of(image: MedicalImage, reference: MedicalImage) -> np.ndarray:
    """``image``'s pixels in ``reference``'s axis order (same grid, maybe permuted)."""
    if np.allclose(image.affine, reference.affine, atol=1e-3):
        return image.array
    # Through RAS+: reorient the image there, then apply the reference's RAS -> own
    # orientation (a permutation and flips: no interpolation).
    ornt = ornt_transform(io_orientation(np.eye(4)), io_orientation(reference.affine))
    return apply_orientation(to_ras(image).array, ornt)
