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
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

PADDED = ("image", "mask")


def pad_collate(items: Sequence[dict[str, Any]], *, pad_value: float = 0,
                mask_value: float = 0) -> dict[str, Any]:
    """``collate_fn`` for ``DataLoader(dataset, batch_size=n, collate_fn=pad_collate)``:
    the items padded to one shape and collated (module docstring)."""
    import torch
    from torch.utils.data import default_collate

    spatial = len(items[0]["image"].shape) - 1  # the image is channel first
    shapes = np.array([tuple(item["image"].shape[-spatial:]) for item in items], np.int64)
    largest = tuple(int(n) for n in shapes.max(axis=0))
    values = {"image": pad_value, "mask": mask_value}
    padded = [{**item, **{key: _pad_end(item[key], largest, values[key])
                          for key in PADDED if key in item}} for item in items]
    batch = default_collate(padded)
    batch["shape"] = torch.from_numpy(shapes)
    batch["padding"] = torch.from_numpy(np.asarray(largest) - shapes)
    return batch


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
