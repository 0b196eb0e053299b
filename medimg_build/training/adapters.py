"""Items for MONAI's and TorchIO's transforms, with their geometry.

``CaseDataset(..., transform=f)`` calls ``f(item)`` on each item; any callable will do.
MONAI's and TorchIO's transforms take such dicts, but each expects its own layout,
and neither reads our ``affine`` key:

**MONAI** dictionary transforms (``monai.transforms.*d``, MONAI 1.x) take a dict and
transform the keys they are given: every array channel first, ``(C, spatial...)``
(``EnsureChannelFirst``'s docstring, monai/transforms/utility/array.py), the geometry
in the ``MetaTensor``'s ``affine``, which maps the array's OWN index order (what
``LoadImage`` with nibabel gives: ``(C, x, y, z)``); a plain array is read as
identity geometry (``Orientation.__call__``: "original affine is assumed to be
identity"). Keys are free: ``keys=["image", "mask"]``. Our items are ``(C, [z,] y, x)``
with an affine in nibabel's (x, y[, z]) order and a mask without a channel axis, so:

* intensity transforms and flips/crops that ignore geometry apply to the item as is,
  the mask given its channel first (``EnsureChannelFirstd(keys="mask",
  channel_dim="no_channel")``, MONAI's way for arrays without one);
* ``as_monai`` makes ``image`` and ``mask`` ``MetaTensor``s whose affine is ours with
  its columns in the array's (z, y, x) order, the mask with a channel axis, and the
  meta ``LoadImage`` would give (``_monai_meta``: a pipeline's ``EnsureChannelFirstd``
  passes, ``SaveImaged`` finds its shape and name): then the
  transforms that read the geometry (``Orientationd``, ``Spacingd``) place the voxels
  right -- ``Orientationd(axcodes="RAS")`` turns them into nibabel's (C, x, y, z)
  (tests/test_training_transforms.py). MONAI keeps the geometry it changes in the
  ``MetaTensor``s' ``.affine``; the item's ``affine``, ``spacing`` and ``origin``
  keys stay those of the item as read.

**TorchIO** (``torchio.transforms.Transform``) transforms a ``tio.Subject`` of
``ScalarImage``/``LabelMap``, each a 4D tensor ``(C, W, H, D)`` -- nibabel's
(C, x, y, z) -- with its 4x4 RAS affine (torchio/data/image.py). Given a plain dict,
it needs ``include=`` and wraps those keys with an identity affine
(``DataParser._get_subject_from_dict``, torchio/transforms/data_parser.py), and it
would read our (C, z, y, x) as (C, x, y, z). ``TorchioTransform(t)`` is the adapter:
it makes the subject (image and mask in TorchIO's order, our affine; a 2D item as
depth 1; a float16 image as float32, for SimpleITK), applies ``t``, and gives the
item back in our order, with the affine,
spacing and origin of the transformed image (a crop or resampling moves them);
labels, case id and the rest pass through. TorchIO is imported when it is used.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

IMAGE, MASK = "image", "mask"


def as_monai(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` with ``image`` and ``mask`` as MONAI ``MetaTensor``s carrying the item's
    geometry in their own axis order, the mask channel first (module docstring). Put
    it first in a ``monai.transforms.Compose``."""
    from monai.data import MetaTensor

    spatial = len(item[IMAGE].shape) - 1
    affine = np.asarray(item["affine"])[:, _array_order(spatial)]
    out = dict(item)
    out[IMAGE] = MetaTensor(item[IMAGE], affine=affine, meta=_monai_meta(item, affine))
    if MASK in item:
        out[MASK] = MetaTensor(item[MASK][np.newaxis], affine=affine,
                               meta=_monai_meta(item, affine))
    return out


def _monai_meta(item: dict[str, Any], affine: np.ndarray) -> dict[str, Any]:
    """What MONAI's ``LoadImage`` records and its transforms read, for an array already
    channel first: ``original_channel_dim`` 0 (``EnsureChannelFirst`` raises without
    it; 0 makes it a no-op, monai/transforms/utility/array.py and
    data/image_reader.py ``_copy_compatible_dict``), ``spatial_shape`` and
    ``original_affine`` (``SaveImage`` reads them to resample back, transforms/io/
    array.py) and ``filename_or_obj`` (the case id: ``SaveImage`` names its file so)."""
    return {"original_channel_dim": 0, "original_affine": affine.copy(),
            "spatial_shape": np.asarray(item[IMAGE].shape[1:], dtype=np.int64),
            "filename_or_obj": str(item.get("case_id", ""))}


def _array_order(spatial: int) -> list[int]:
    """The affine's columns for an array indexed ([z,] y, x): reversed, then the rest."""
    return list(range(spatial - 1, -1, -1)) + list(range(spatial, 4))


class TorchioTransform:
    """A TorchIO transform as a ``CaseDataset`` transform (module docstring)."""

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        spatial = len(item[IMAGE].shape) - 1
        transformed = self.transform(to_subject(item))
        return {**item, **from_subject(transformed, spatial)}

    def __repr__(self) -> str:
        return f"TorchioTransform({self.transform!r})"


def to_subject(item: dict[str, Any]):
    """A ``tio.Subject`` of the item's ``image`` (``ScalarImage``) and ``mask``
    (``LabelMap``), in TorchIO's (C, x, y, z) order with the item's affine."""
    import torch
    import torchio as tio

    spatial = len(item[IMAGE].shape) - 1
    image = torch.as_tensor(item[IMAGE])
    if image.dtype == torch.float16:  # SimpleITK has no float16 (SimpleITK/extra.py
        image = image.float()  # _np_sitk): TorchIO's resampling transforms would raise
    images = {IMAGE: tio.ScalarImage(tensor=_to_torchio(image, spatial),
                                     affine=np.asarray(item["affine"]))}
    if MASK in item:
        mask = torch.as_tensor(item[MASK])[None]
        images[MASK] = tio.LabelMap(tensor=_to_torchio(mask, spatial),
                                    affine=np.asarray(item["affine"]))
    return tio.Subject(**images)


def from_subject(subject, spatial: int) -> dict[str, Any]:
    """``image``, ``mask``, ``affine``, ``spacing`` and ``origin`` of a subject made by
    ``to_subject`` (then transformed), in our order for ``spatial`` axes."""
    image = subject[IMAGE]
    affine = np.asarray(image.affine, dtype=np.float64)
    out = {IMAGE: _from_torchio(image.data, spatial), "affine": affine,
           "spacing": np.asarray(image.spacing[:spatial][::-1], dtype=np.float64),
           "origin": affine[:3, 3][::-1].copy()}
    if MASK in subject:
        out[MASK] = _from_torchio(subject[MASK].data, spatial)[0]
    return out


def _to_torchio(tensor, spatial: int):
    """(C, [z,] y, x) -> (C, x, y, z), a 2D item (C, y, x) -> (C, x, y, 1)."""
    reordered = tensor.permute(0, *range(spatial, 0, -1))
    return reordered if spatial == 3 else reordered[..., None]


def _from_torchio(tensor, spatial: int):
    """The inverse of ``_to_torchio``."""
    if spatial == 2:
        if tensor.shape[-1] != 1:
            raise ValueError(f"a TorchIO transform gave a 2D item depth {tensor.shape[-1]}; "
                             "it must stay 1 (the item is one slice)")
        tensor = tensor[..., 0]
    return tensor.permute(0, *range(spatial, 0, -1))
