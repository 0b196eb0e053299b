"""``pad_collate``: items of different shapes as one batch, padded to the largest.

Whole cases of a volumes store differ in shape, and so do their slices
(``slice_axis="z"``); the DataLoader's default collation stacks them and fails
(``RuntimeError: stack expects each tensor to be equal size``). ``pad_collate`` pads
each item's ``image`` and ``mask`` at the END of every spatial axis to the batch's
largest size, then collates as the default does, and records the padding:

``shape``    (batch, spatial) int64: each item's spatial shape before padding
``padding``  (batch, spatial) int64: the voxels added after its end, per axis

Padding only after the end keeps voxel 0 where it was, so each item's ``affine`` still
places it; ``image[b][..., :shape[b, 0], :shape[b, 1]]`` (one slice per spatial axis)
is item ``b`` as read. The image is padded with ``pad_value`` (0 by default), the mask
with ``mask_value`` (0: background); ``functools.partial(pad_collate, pad_value=-1024)``
gives another collate for the DataLoader. The spatial axes are the image's after its
channel axis; a mask's are its last as many (with or without a channel axis, e.g. after
MONAI's ``EnsureChannelFirstd``). NumPy arrays and tensors (MONAI's ``MetaTensor``,
TorchIO's outputs) alike; an item already of the largest shape is not copied.

As MONAI's ``list_data_collate`` (monai/data/utils.py): a transform that gives a list
of items per case (``RandCropByPosNegLabeld(num_samples=n)``) has its lists joined into
one batch, and ``MetaTensor``s are collated by MONAI's ``collate_meta_tensor_fn``, so
the batch's ``.affine`` is (batch, 4, 4), each item's own. Other keys whose arrays
differ in shape from item to item (boxes, landmarks) stay a list of tensors, one per
item, as torchvision's detection targets. A fill value the arrays' dtype cannot hold
(-1024 in uint8, NaN in int16) is refused rather than wrapped.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np

from .sampling import checked_fill

PADDED = ("image", "mask")


def pad_collate(items: Sequence[Any], *, pad_value: float = 0,
                mask_value: float = 0) -> dict[str, Any]:
    """``collate_fn`` for ``DataLoader(dataset, batch_size=n, collate_fn=pad_collate)``:
    the items padded to one shape and collated (module docstring)."""
    import torch

    items = _checked_items(items)
    _same_keys(items)
    spatial = len(items[0]["image"].shape) - 1  # the image is channel first
    _one_channel_count(items)
    shapes = np.array([tuple(item["image"].shape[-spatial:]) for item in items], np.int64)
    largest = tuple(int(n) for n in shapes.max(axis=0))
    values = {"image": pad_value, "mask": mask_value}
    padded = [{**item, **{key: _pad_end(item[key], largest, _fill(values[key], item[key], key))
                          for key in PADDED if key in item}} for item in items]
    batch = {key: _collated([item[key] for item in padded]) for key in padded[0]}
    batch["shape"] = torch.from_numpy(shapes)
    batch["padding"] = torch.from_numpy(np.asarray(largest) - shapes)
    return batch


def collate_items(items: Sequence[Any]):
    """Transformed items of one shape as one batch (``CaseDataset.batch``): lists joined,
    ``MetaTensor``s and ragged keys as in ``pad_collate``; items that are not dicts (a
    transform returning tensors) by torch's ``default_collate``."""
    flat = _joined(items)
    if not flat or not all(isinstance(item, dict) for item in flat):
        from torch.utils.data import default_collate

        return default_collate(flat)
    _same_keys(flat)
    return {key: _collated([item[key] for item in flat]) for key in flat[0]}


def _joined(items: Sequence[Any]) -> list[Any]:
    """Lists (one per case, from transforms that cut several samples) joined into one,
    as MONAI's ``list_data_collate``."""
    return [item for entry in items
            for item in (entry if isinstance(entry, (list, tuple)) else [entry])]


def _checked_items(items: Sequence[Any]) -> list[dict[str, Any]]:
    """The items as a flat list of dicts with an ``image`` (``_joined``); anything else
    refused in one line."""
    flat = _joined(items)
    if not flat:
        raise ValueError("pad_collate was given no items: a batch needs at least one")
    for item in flat:
        if not isinstance(item, dict) or "image" not in item:
            raise TypeError(f"pad_collate takes items as dicts with an 'image' (CaseDataset "
                            f"items), not {type(item).__name__}: make the transform return "
                            "the item dict (or a list of them), or use torch's default_collate")
    return flat


def _same_keys(items: list[dict[str, Any]]) -> None:
    """ValueError unless every item has the same keys: a store whose cases have a mask
    only in part would give a batch with its masks dropped (collated by the first item's
    keys) or a KeyError."""
    keys = [set(item) for item in items]
    differing = sorted(set.union(*keys) - set.intersection(*keys))
    if differing:
        key = differing[0]
        without = sorted({str(item.get("case_id", "?")) for item in items if key not in item})
        with_ = sorted({str(item.get("case_id", "?")) for item in items if key in item})
        raise ValueError(f"cases {', '.join(with_)} have {key!r}, cases "
                         f"{', '.join(without)} have not: a batch needs it in every item or "
                         "none (e.g. CaseDataset(case_ids=...) of the cases with masks)")


def _one_channel_count(items: list[dict[str, Any]]) -> None:
    """ValueError unless the images have one channel count: only spatial axes are padded."""
    counts = {int(item["image"].shape[0]) for item in items}
    if len(counts) > 1:
        cases = sorted({str(item.get("case_id", "?")) for item in items})
        raise ValueError(f"pad_collate pads spatial axes only, but the images of cases "
                         f"{', '.join(cases)} have {sorted(counts)} channels: give every "
                         "case the same channels (e.g. in the transform)")


def _fill(value: float, array, key: str) -> float:
    """``value``, if ``array``'s dtype holds it (np.pad and torch would wrap or cast
    NaN silently); ValueError naming the argument otherwise."""
    try:  # a tensor's dtype by name: torch.int16 -> int16
        dtype = np.dtype(str(array.dtype).removeprefix("torch."))
    except TypeError:  # bfloat16 and other floats NumPy lacks: any value fits
        return value
    return checked_fill(value, dtype, "pad_value" if key == "image" else "mask_value")


def _collated(values: list[Any]):
    """One key of the batch: torch's default collation (MONAI's for ``MetaTensor``s),
    or a list of tensors where arrays differ in shape (module docstring)."""
    from torch.utils.data._utils.collate import collate, default_collate_fn_map

    collate_fn_map = dict(default_collate_fn_map)
    if "monai.data.meta_tensor" in sys.modules:  # a MetaTensor exists only if MONAI is in
        from monai.data.meta_tensor import MetaTensor
        from monai.data.utils import collate_meta_tensor_fn

        collate_fn_map[MetaTensor] = collate_meta_tensor_fn
    shapes = {tuple(v.shape) for v in values if hasattr(v, "shape")}
    if len(shapes) > 1:
        import torch

        return [torch.as_tensor(v) for v in values]
    return collate(values, collate_fn_map=collate_fn_map)


def _pad_end(array, shape: tuple[int, ...], value: float):
    """``array`` with its last ``len(shape)`` axes padded after their end to ``shape``."""
    lead = len(array.shape) - len(shape)
    extra = [target - size for size, target in zip(array.shape[lead:], shape)]
    if not any(extra):
        return array
    if isinstance(array, np.ndarray):
        return np.pad(array, [(0, 0)] * lead + [(0, e) for e in extra], constant_values=value)
    import torch.nn.functional as F

    # torch's pad lists (before, after) pairs from the LAST axis backwards.
    pairs = [n for e in reversed(extra) for n in (0, e)]
    return F.pad(array, pairs, mode="constant", value=value)
