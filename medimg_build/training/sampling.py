"""What part of a case an item is: all of it, one random slice, or one random patch --
padded where the patch is larger than the case, and centred on foreground for a share
of the items (nnU-Net's foreground oversampling).

Both follow nnU-Net v2's data loader (``nnunetv2/training/dataloading/data_loader.py``,
``nnUNetDataLoader.get_bbox``, MIC-DKFZ/nnUNet at 056ab72b):

* a patch larger than the case along an axis is placed as nnU-Net places it: its
  start drawn from ``[-ceil(need/2), -floor(need/2)]`` (``need`` = patch - case), so
  the case sits in its middle, give or take a voxel; along the other axes from
  ``[0, case - patch]``. What lies outside the case is padding: the image takes
  ``pad_value`` (0 by default, as nnU-Net's ``crop_and_pad_nd(data, bbox, 0)``, MONAI's
  ``SpatialPad`` and TorchIO's ``CropOrPad``), the mask 0 (background: nnU-Net pads its
  segmentation with -1, then its training and validation transforms turn -1 into 0,
  ``RemoveLabelTansform(-1, 0)`` in ``nnUNetTrainer.get_training_transforms``). The
  item's affine places the padded patch too (voxel 0 may lie outside the case).
* ``oversample_foreground``: the share of items centred on a voxel drawn from the
  case's mask (nnU-Net's ``oversample_foreground_percent``, 0.33 in its trainer). By
  default nnU-Net forces the last third of each batch; an item of a map-style dataset
  knows no batch, so each is drawn with that probability, as nnU-Net's
  ``probabilistic_oversampling`` does. The voxel: a class drawn uniformly from the classes present
  (nonzero values but the store's "ignore" class, as nnU-Net), then a voxel uniformly
  from that class's voxels. nnU-Net clamps
  the patch start at the lower bound only; here at both, so a patch around a voxel
  at the far edge is not padded needlessly (the voxel stays inside it). A case
  without foreground gives a random patch, as in nnU-Net.

Finding a voxel reads no more than the item reads (tests/test_training_patches.py):
nnU-Net's preprocessing keeps a sample of each class's coordinates per case
(``DefaultPreprocessor._sample_foreground_locations``: 10^4, or 1% of the class's
voxels if more; ``properties['class_locations']``, a blosc2 store in
``foreground_locations.py`` since) and draws from that sample; here each
case keeps, per class, the number of its voxels in each 2D slice (a chunk of the
store: ``ForegroundSlices``), counted from one read of the whole mask the first time
the case is asked for foreground, in each process. A draw then picks a slice in
proportion to those counts and reads that one mask chunk -- a chunk the patch, or
the slice, reads anyway -- to find the voxel: uniform over all of the class's voxels,
not over a subsample, in a few bytes per slice and class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import StoreError


@dataclass(frozen=True)
class Window:
    """Where an item lies in its case: ``starts`` (stored spatial order, may be < 0),
    the part of the case to read (``read``), and where it goes in the item
    (``placed``; None when the item is the read itself, unpadded)."""

    starts: tuple[int, ...]
    read: tuple[slice, ...]
    placed: tuple[slice, ...] | None
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Sampling:
    """How an item is cut from a case; see the module docstring."""

    slice_axis: str | None = None
    patch_size: tuple[int, ...] | None = None
    oversample_foreground: float = 0.0
    pad_value: float = 0

    @classmethod
    def checked(cls, slice_axis: str | None, patch_size: Sequence[int] | None,
                oversample_foreground: float, pad_value: float) -> Sampling:
        """The sampling of ``CaseDataset``'s arguments, ValueError if they disagree."""
        if slice_axis is not None and patch_size is not None:
            raise ValueError("give slice_axis or patch_size, not both")
        if patch_size is not None and not all(int(p) >= 1 for p in patch_size):
            raise ValueError(f"patch_size {list(patch_size)}: every size must be at least 1")
        if not 0 <= oversample_foreground <= 1:
            raise ValueError(f"oversample_foreground is a share of the items, from 0 to 1, "
                             f"not {oversample_foreground}")
        if oversample_foreground and slice_axis is None and patch_size is None:
            raise ValueError("oversample_foreground centres slices or patches: give "
                             "slice_axis or patch_size too")
        return cls(slice_axis, tuple(int(p) for p in patch_size) if patch_size else None,
                   float(oversample_foreground), pad_value)

    def window(self, shape: tuple[int, ...], dims: tuple[str, ...], rng: np.random.Generator,
               foreground, location: str, case_id: str) -> Window:
        """The window of an item of a case of stored spatial ``shape``; ``foreground()``
        gives a voxel of a random present class (None: the case has none), asked only
        for the share of items that are to be centred on one."""
        centre = None
        if self.oversample_foreground and self.sampling_part and \
                rng.random() < self.oversample_foreground:
            centre = foreground()
        if self.slice_axis is not None:
            axis = dims.index(self.slice_axis)
            start = int(rng.integers(shape[axis])) if centre is None else centre[axis]
            starts = tuple(start if a == axis else 0 for a in range(len(shape)))
            size = tuple(1 if a == axis else s for a, s in enumerate(shape))
            return _window(starts, size, shape)
        if self.patch_size is not None:
            if len(self.patch_size) != len(shape):
                raise StoreError(location, f"patch_size {list(self.patch_size)} has "
                                 f"{len(self.patch_size)} axes, case {case_id!r} of shape "
                                 f"{list(shape)} {len(shape)}",
                                 hint="give one size per stored spatial axis ([z,] y, x)")
            starts = tuple(_patch_start(s, p, rng, None if centre is None else centre[a])
                           for a, (s, p) in enumerate(zip(shape, self.patch_size)))
            return _window(starts, self.patch_size, shape)
        return _window((0,) * len(shape), shape, shape)

    @property
    def sampling_part(self) -> bool:
        return self.slice_axis is not None or self.patch_size is not None


def _patch_start(size: int, patch: int, rng: np.random.Generator, centre: int | None) -> int:
    """nnU-Net's bounds for the start of a patch along one axis (module docstring)."""
    need = max(patch - size, 0)
    low, high = -((need + 1) // 2), size - patch + (need + 1) // 2
    if centre is None:
        return int(rng.integers(low, high + 1))
    return int(min(max(centre - patch // 2, low), high))


def _window(starts: tuple[int, ...], size: tuple[int, ...], shape: tuple[int, ...]) -> Window:
    read = tuple(slice(max(b, 0), min(b + n, s)) for b, n, s in zip(starts, size, shape))
    if all(b >= 0 and b + n <= s for b, n, s in zip(starts, size, shape)):
        return Window(starts, read, None, tuple(size))
    placed = tuple(slice(r.start - b, r.stop - b) for r, b in zip(read, starts))
    return Window(starts, read, placed, tuple(size))


def padded(read: np.ndarray, window: Window, value: float) -> np.ndarray:
    """The item's array: ``read`` itself, or (a patch over the case's edge) ``read``
    placed in an array of ``value`` (leading axes, e.g. the channel, kept whole);
    ValueError if ``read``'s dtype cannot hold ``value``."""
    if window.placed is None:
        return read
    lead = read.ndim - len(window.shape)
    checked_fill(value, read.dtype, "pad_value")
    out = np.full(read.shape[:lead] + window.shape, value, dtype=read.dtype)
    out[(slice(None),) * lead + window.placed] = read
    return out


def checked_fill(value: float, dtype: np.dtype, name: str) -> float:
    """``value`` if an array of ``dtype`` can hold it exactly, else ValueError."""
    if dtype.kind in "iub":
        info = np.iinfo(dtype) if dtype.kind != "b" else np.iinfo(np.uint8)
        high = 1 if dtype.kind == "b" else info.max
        if not (np.isfinite(value) and float(value).is_integer() and info.min <= value <= high):
            raise ValueError(f"{name} {value} does not fit the {dtype} arrays it pads "
                             f"(integers {info.min}..{high}): give a value in that range")
    elif dtype.kind == "f" and np.isfinite(value) and abs(value) > np.finfo(dtype).max:
        raise ValueError(f"{name} {value} does not fit the {dtype} arrays it pads (it "
                         f"would be inf): give a value within +-{np.finfo(dtype).max}")
    return value


class ForegroundSlices:
    """Per class present in a mask, how many of its voxels lie in each 2D slice (the
    store's chunks: along z for a volume; one slice for a 2D case); see the module
    docstring. ``classes``: the nonzero values present but ``ignored`` ones (nnU-Net's
    ignore label is no class to centre on: ``LabelManager._get_all_labels`` leaves it
    out of ``foreground_labels``, nnunetv2/utilities/label_handling); per class, the
    slices that hold it and the running count of its voxels up to each."""

    def __init__(self, mask: np.ndarray, ignored: Sequence[int] = ()) -> None:
        layers = mask if mask.ndim == 3 else mask[np.newaxis]
        found: dict[int, list[tuple[int, int]]] = {}  # class -> [(slice, voxels)]
        for k, layer in enumerate(layers):
            values = layer.ravel()
            if values.dtype.kind == "i":  # bincount counts from 0: no negative label
                values = values[values > 0]
            counts = np.bincount(values)
            for value in np.flatnonzero(counts[1:]) + 1:
                if value in ignored:
                    continue
                found.setdefault(int(value), []).append((k, int(counts[value])))
        self.classes: list[int] = sorted(found)
        self._slices = {c: np.array([k for k, _ in found[c]]) for c in self.classes}
        self._running = {c: np.cumsum([n for _, n in found[c]]) for c in self.classes}
        self.three_d = mask.ndim == 3

    def voxel(self, rng: np.random.Generator, read_layer) -> tuple[int, ...] | None:
        """A voxel (stored spatial order) of a class drawn from those present, uniform
        over that class's voxels; ``read_layer(k)`` reads the mask's slice ``k`` (one
        chunk). None when the mask has no foreground."""
        if not self.classes:
            return None
        value = self.classes[int(rng.integers(len(self.classes)))]
        running = self._running[value]
        draw = int(rng.integers(running[-1]))
        k = int(np.searchsorted(running, draw, side="right"))
        before = int(running[k - 1]) if k else 0
        layer = int(self._slices[value][k])
        values = np.asarray(read_layer(layer))
        spot = np.flatnonzero(values.ravel() == value)[draw - before]
        in_layer = tuple(int(i) for i in np.unravel_index(spot, values.shape))
        return ((layer,) if self.three_d else ()) + in_layer
