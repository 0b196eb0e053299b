"""A map-style dataset over a store, for PyTorch's DataLoader (or any loop).

``CaseDataset(store_url)`` has ``len()`` and ``[i]`` -- all a DataLoader needs -- and
imports nothing from torch: items are NumPy arrays and Python values, which the
DataLoader's default collate turns into tensors and lists. Each item is a dict:

``image``   (channel, [z,] y, x) as stored (dtype kept; normalized stores hold floats)
``mask``    ([z,] y, x), where the store has masks
``labels``  {name: int (-1 = unknown) or a 0/1 array per class for multi-label}
``case_id``, ``split``, ``index`` (into the dataset)
``spacing`` (mm, stored order), ``origin`` (RAS+ mm of voxel 0, stored order),
``affine``  the 4x4 of the returned array (nibabel index order: last array axis
            first), so that a sampled slice or patch keeps its place in the patient;
            a slice along y or x has the columns of its own two axes first

``transform``: any callable, given each item and returning what the DataLoader gets
(MONAI and TorchIO dictionary transforms: ``adapters.py``).

Sampling (optional, ``sampling.py``): ``slice_axis="z"`` returns one random 2D slice of
the case along that axis (channel, y, x); ``patch_size=(z, y, x)`` (or (y, x) for 2D) a
random patch of that size, padded where it is larger than the case;
``oversample_foreground`` centres that share of them on a voxel of a random class
present in the mask. Only the chunks under the slice or patch are read. The draws are
a pure function of (seed, epoch, index): the same on any number of workers, and new
with ``set_epoch``. So an index read twice in an epoch (a sampler with replacement,
more draws than cases) is the same draw twice, in any worker: ``samples_per_case=k``
(MONAI's ``samples_per_image``, TorchIO's ``samples_per_volume``) gives k different
draws of each case instead: ``len`` is k times the cases, index i a draw from case
i % cases.

Batches: the DataLoader asks for a batch with ``__getitems__``; whole cases of a stack
store are then read together, a run of consecutive cases in one call. The default
collation then copies every item into one tensor; ``batches(n)`` instead hands
the dataset whole batches (``DataLoader(data, batch_size=None,
sampler=data.batches(64))``): ``data[[i, j, ...]]`` is the batch as collation
would give it, the images decoded straight into its one array, copied by no one.
Items of different shapes (the cases of a volumes store) are one batch through
``collate.pad_collate``.

Worker processes: the open store is never shared. Pickling (spawn, forkserver) carries
only the location and options, and a forked worker sees a different pid and opens its
own handle on first use.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import StoreError, shown_items
from ..store import open_store
from ..store.axes import spatial_dims
from ..store.classification import segmentation_classes
from ..store.layouts import layout_named
from ..store.schema import AFFINE, CASE, IMAGE, MASK, SPACING
from .collate import collate_items
from .sampling import ForegroundSlices, Sampling, padded

SPLIT = "split"
OPEN_CASES = 1024  # cases kept open per process (~10 kB each: lazy arrays, shard indexes)


class CaseDataset:
    """The complete cases of a store (optionally one split or a list of case ids) as a
    map-style dataset; see the module docstring for items, sampling and workers."""

    def __init__(self, location: str | os.PathLike, *, storage_options: dict | None = None,
                 split: str | None = None, case_ids: Sequence[str] | None = None,
                 labels: Sequence[str] | None = None, slice_axis: str | None = None,
                 patch_size: Sequence[int] | None = None, seed: int = 0,
                 oversample_foreground: float = 0.0, pad_value: float = 0,
                 samples_per_case: int = 1,
                 transform: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.sampling = Sampling.checked(slice_axis, patch_size, oversample_foreground,
                                         pad_value)
        if int(samples_per_case) != samples_per_case or samples_per_case < 1 or (
                samples_per_case > 1 and not self.sampling.sampling_part):
            raise ValueError(f"samples_per_case {samples_per_case}: a whole number >= 1 of "
                             "random slices or patches per case and epoch (with slice_axis "
                             "or patch_size; a whole case is the same each time)")
        self.samples_per_case = int(samples_per_case)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable (given each item), not "
                            f"{type(transform).__name__}")
        self.transform = transform
        self.location = os.fspath(location)
        self.storage_options = storage_options
        self.seed, self.epoch = seed, 0
        self._handle: tuple[int, Any] | None = None  # (pid, open store)
        self._geometry: tuple[np.ndarray, np.ndarray] | None = None  # _stack_geometry
        self._cases: dict[str, tuple] = {}  # _opened_case, least recently used first
        self._foreground: dict[str, ForegroundSlices] = {}  # _foreground_voxel, per process
        store = self._store
        table = store.cases
        if SPLIT not in table:  # a store written without splits
            table = table.assign(**{SPLIT: ""})
        if split is not None:
            if split not in set(table[SPLIT]):
                raise StoreError(self.location, f"no case in split {split!r}", hint="splits: "
                                 f"{', '.join(sorted(set(table[SPLIT]) - {''})) or 'none'}")
            table = table[table[SPLIT] == split]
        if case_ids is not None:
            missing = sorted(set(case_ids) - set(table["case_id"]))
            if missing:
                raise StoreError(self.location, f"cases not in the store (or split): "
                                 f"{shown_items(missing, 5)}", hint="see store.cases")
            table = table.set_index("case_id").loc[list(case_ids)].reset_index()
        self.case_ids: list[str] = table["case_id"].tolist()
        self._splits: list[str] = table[SPLIT].tolist()
        row = {case_id: i for i, case_id in enumerate(store.cases["case_id"])}
        self._rows = [row[case_id] for case_id in self.case_ids]  # in store.cases
        stored = sorted(store.label_names)
        self._ignored = tuple(value for value, name in segmentation_classes(
            store.attrs.get("labels") or {}).items() if name == "ignore")  # sampling.py
        self.label_names = list(stored if labels is None else labels)
        self._labels = {name: _label_values(store.labels(name), self.case_ids)
                        for name in self.label_names}
        if slice_axis is not None and slice_axis not in spatial_dims(
                store.attrs["image"]["spatial_ndim"]):
            raise StoreError(self.location, f"slice_axis {slice_axis!r} is not a spatial "
                             "axis of the store", hint="use 'z', 'y' or 'x'")

    # -- the store handle, one per process ---------------------------------------------
    @property
    def _store(self):
        if self._handle is None or self._handle[0] != os.getpid():
            self._handle = (os.getpid(), open_store(self.location, self.storage_options))
            self._cases = {}  # opened through the handle of another process
            self._foreground = {}  # counted by another process: counted again
        return self._handle[1]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None, "_geometry": None, "_cases": {},
                "_foreground": {}}

    # -- the dataset -------------------------------------------------------------------
    def __len__(self) -> int:
        """Cases times ``samples_per_case``: index i is a draw from case i % cases."""
        return len(self.case_ids) * self.samples_per_case

    def _case(self, index: int) -> int:
        """The position in ``case_ids`` of the case item ``index`` is drawn from."""
        return index % len(self.case_ids)

    def set_epoch(self, epoch: int) -> None:
        """New random slices/patches for every item (call once per epoch)."""
        self.epoch = epoch

    def __getitem__(self, index: int | Sequence[int]) -> dict[str, Any]:
        """Item ``index``; for a list of indices (``batches``) the batch itself."""
        if isinstance(index, (list, tuple, np.ndarray)):
            return self.batch(index)
        index = self._checked(index)
        item = self._read_item(index)
        return item if self.transform is None else self.transform(item)

    def _read_item(self, index: int) -> dict[str, Any]:
        case_id = self.case_ids[self._case(index)]
        image_of, mask_of, affine, spacing = self._opened_case(case_id)
        spatial = image_of.shape[1:]
        dims = spatial_dims(len(spatial))
        rng = np.random.default_rng((self.seed, self.epoch, index))
        window = self.sampling.window(
            spatial, dims, rng, lambda: self._foreground_voxel(case_id, mask_of, rng),
            self.location, case_id)
        try:
            image = padded(image_of[(slice(None),) + window.read].values, window,
                           self.sampling.pad_value)
        except ValueError as error:  # a pad_value the stored dtype cannot hold
            raise StoreError(self.location, str(error), hint="the store's images are "
                             f"{image_of.dtype}; CaseDataset(pad_value=...)") from None
        mask = None if mask_of is None else padded(mask_of[window.read].values, window, 0)
        affine = _window_affine(affine, window.starts)
        if self.sampling.slice_axis is not None:  # one slice: a 2D item (a view, no copy)
            axis = dims.index(self.sampling.slice_axis)
            image = image[(slice(None),) * (1 + axis) + (0,)]
            mask = None if mask is None else mask[(slice(None),) * axis + (0,)]
            affine = _slice_affine(affine, axis, len(dims))
        # spacing.copy(): the case's cached array is not the caller's to write into.
        return self._item(index, image, mask, affine, spacing.copy())

    def _foreground_voxel(self, case_id: str, mask_of, rng: np.random.Generator):
        """A voxel of a random class present in the case's mask (sampling.py), or None
        (no foreground). A 2D mask is one chunk: read, counted and drawn from at once.
        For a volume, the first call in a process reads its whole mask to count the
        voxels of each class per slice (kept for the last ``OPEN_CASES`` volumes);
        each later call reads the one mask slice (chunk) holding the voxel drawn."""
        if mask_of is None:
            raise StoreError(self.location, f"case {case_id!r} has no mask to find "
                             "foreground in", hint="oversample_foreground needs a store with "
                             "masks; leave it at 0 for this one")
        if mask_of.ndim == 2:
            values = mask_of.values
            return ForegroundSlices(values, self._ignored).voxel(rng, lambda k: values)
        counted = self._foreground.pop(case_id, None)  # put back last: the most recent
        if counted is None:
            counted = ForegroundSlices(mask_of.values, self._ignored)
        self._foreground[case_id] = counted
        if len(self._foreground) > OPEN_CASES:
            del self._foreground[next(iter(self._foreground))]
        return counted.voxel(rng, lambda k: mask_of[k].values)

    def _opened_case(self, case_id: str) -> tuple:
        """(image, mask or None, affine, spacing) of a case: lazy xarray Variables (no
        coordinates to index at each read) and arrays. Opening a case costs ~7 ms
        (zarr-python's metadata calls, xarray's open, the coordinates), a random slice of
        it ~0.5 ms: the last ``OPEN_CASES`` opened stay open, in each process."""
        store = self._store  # first: a new process drops what another opened
        if case_id in self._cases:
            self._cases[case_id] = self._cases.pop(case_id)  # the most recent last
            return self._cases[case_id]
        ds = store.case(case_id)
        opened = (ds[IMAGE].variable, ds[MASK].variable if MASK in ds else None,
                  np.asarray(ds.attrs["affine"]), np.asarray(ds.attrs["spacing"]))
        self._cases[case_id] = opened
        if len(self._cases) > OPEN_CASES:
            del self._cases[next(iter(self._cases))]
        return opened

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A batch (the DataLoader asks for one with this call where it exists), as its
        items. Whole cases of a stack store are read together (``_read_together``)."""
        together = self._read_together(indices)
        if together is None:
            return [self[i] for i in indices]
        indices, images, masks, affines, spacings = together
        items = [self._item(i, image, None if masks is None else masks[k], affine, spacing)
                 for k, (i, image, affine, spacing)
                 in enumerate(zip(indices, images, affines, spacings))]
        return items if self.transform is None else [self.transform(item) for item in items]

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        """The items ``indices`` as one batch, as the DataLoader's default collation
        would make it (arrays stacked along a new first axis, labels and ``index`` as
        int64 arrays, ``case_id`` and ``split`` as lists), without its copy: whole cases
        of a stack store are decoded straight into the batch's array. With a
        ``transform``, the transformed items collated by ``collate.collate_items``
        (MONAI's way: lists of samples joined, MetaTensors with a (batch, 4, 4) affine)."""
        if self.transform is not None:  # transforms' outputs: tensors, MetaTensors, lists
            return collate_items(self.__getitems__(indices))
        together = self._read_together(indices)
        if together is None:
            items = [self[i] for i in indices]
            _one_shape(self.location, items)
            indices = [item["index"] for item in items]
            images = np.stack([item["image"] for item in items])
            masks = np.stack([item["mask"] for item in items]) if "mask" in items[0] else None
            affines = np.stack([item["affine"] for item in items])
            spacings = np.stack([item["spacing"] for item in items])
        else:
            indices, images, masks, affines, spacings = together
        batch: dict[str, Any] = {"image": images}
        if masks is not None:
            batch["mask"] = masks
        batch.update(
            labels={name: _stacked_labels([values[self._case(i)] for i in indices])
                    for name, values in self._labels.items()},
            case_id=[self.case_ids[self._case(i)] for i in indices],
            split=[self._splits[self._case(i)] for i in indices],
            index=np.asarray(indices, dtype=np.int64), spacing=spacings,
            origin=affines[:, :3, 3][:, ::-1].copy(), affine=affines)
        return batch

    def batches(self, batch_size: int, shuffle: bool = False,
                drop_last: bool = False) -> BatchIndices:
        """Batches of indices for ``DataLoader(self, batch_size=None, sampler=...)``,
        each read and returned whole by ``batch``; ``shuffle``: a new order per epoch
        (``set_epoch``), a pure function of (seed, epoch)."""
        return BatchIndices(self, batch_size, shuffle, drop_last)

    def _read_together(self, indices: Sequence[int]) -> tuple | None:
        """(indices, images, masks or None, affines, spacings) of whole cases of a stack
        store, each run of consecutive cases read in one call; None when items are
        read one by one (a volumes store, or sampled slices and patches)."""
        if not layout_named(self._store.layout).cases_share_arrays or \
                self.sampling.sampling_part:
            return None
        indices = [self._checked(i) for i in indices]
        rows = [self._rows[self._case(i)] for i in indices]
        stack = self._store.dataset(chunks=None)  # lazy, without Dask: one call per run
        masks = _read_rows(stack[MASK], rows) if MASK in stack else None
        affines, spacings = self._stack_geometry(stack)
        return (indices, _read_rows(stack[IMAGE], rows), masks, affines[rows], spacings[rows])

    def _stack_geometry(self, stack) -> tuple[np.ndarray, np.ndarray]:
        """The affine and spacing of every case of a stack store, read at the first batch
        (160 bytes a case; not pickled), instead of a zarr-python call per batch for each
        (~7% of a scan, `make bench`)."""
        if self._geometry is None:
            self._geometry = (stack[AFFINE].values, stack[SPACING].values)
        return self._geometry

    def _checked(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return index % len(self)

    def _item(self, index: int, image: np.ndarray, mask: np.ndarray | None,
              affine: np.ndarray, spacing: np.ndarray) -> dict[str, Any]:
        item: dict[str, Any] = {"image": image}
        if mask is not None:
            item["mask"] = mask
        item.update(
            labels={name: _own(values[self._case(index)])
                    for name, values in self._labels.items()},
            case_id=self.case_ids[self._case(index)], split=self._splits[self._case(index)],
            index=index,
            spacing=spacing, origin=affine[:3, 3][::-1].copy(), affine=affine)
        return item


def _read_rows(variable, rows: list[int]) -> np.ndarray:
    """``variable[rows]`` along ``case``, read as runs of consecutive rows: Zarr reads a
    slice shard by shard, but a list of indices chunk by chunk, ~30x slower."""
    order = np.unique(rows)
    runs = np.split(order, np.flatnonzero(np.diff(order) != 1) + 1)
    reads = [variable.isel({CASE: slice(run[0], run[-1] + 1)}).values for run in runs]
    read = reads[0] if len(reads) == 1 else np.concatenate(reads)
    if np.array_equal(order, rows):  # in order, no repeat: the read itself, not a copy
        return read
    return read[np.searchsorted(order, rows)]


class BatchIndices:
    """The batches of ``CaseDataset.batches``: lists of indices into the dataset."""

    def __init__(self, dataset: CaseDataset, batch_size: int, shuffle: bool,
                 drop_last: bool) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last

    def __len__(self) -> int:
        whole, rest = divmod(len(self.dataset), self.batch_size)
        return whole + (1 if rest and not self.drop_last else 0)

    def __iter__(self):
        n = len(self.dataset)
        order = np.random.default_rng((self.dataset.seed, self.dataset.epoch)).permutation(n) \
            if self.shuffle else np.arange(n)
        for batch in range(len(self)):
            yield order[batch * self.batch_size:(batch + 1) * self.batch_size].tolist()


def _one_shape(location: str, items: list[dict[str, Any]]) -> None:
    """StoreError unless the items' images have one shape: a batch is one array (cases of
    a volumes store differ in shape)."""
    first = items[0]
    for item in items[1:]:
        if item["image"].shape != first["image"].shape:
            raise StoreError(location, f"cases {first['case_id']!r} of shape "
                             f"{list(first['image'].shape)} and {item['case_id']!r} of shape "
                             f"{list(item['image'].shape)} cannot be one batch: a batch holds "
                             "cases of one shape", hint="pad them to one: DataLoader(data, "
                             "batch_size=n, collate_fn=pad_collate) (medimg_build.training), "
                             "or sample patches of one size (patch_size=...)")


def _own(value: Any) -> Any:
    """A label for an item: a multi-label row copied, so that writing into it (an in-place
    op on the tensor the DataLoader makes of it) leaves the dataset's row alone."""
    return value.copy() if isinstance(value, np.ndarray) else value


def _stacked_labels(values: list[Any]) -> np.ndarray:
    """A label of a batch: int64 per case, or the cases' 0/1 vectors stacked (int8)."""
    return np.stack(values) if values and isinstance(values[0], np.ndarray) \
        else np.asarray(values, dtype=np.int64)


def _window_affine(affine: np.ndarray, window_starts: tuple[int, ...]) -> np.ndarray:
    """The affine of the array cut out from ``window_starts`` (stored order, < 0 for a
    padded patch): voxel 0 of the cut is the stored voxel at the starts, i.e. index
    ``starts[::-1]`` in the affine's (x, y[, z]) order."""
    starts = np.array(window_starts[::-1], dtype=np.float64)
    out = affine.copy()
    out[:3, 3] = affine[:3, :len(starts)] @ starts + affine[:3, 3]
    return out


def _slice_affine(affine: np.ndarray, axis: int, spatial: int) -> np.ndarray:
    """The affine of a 2D slice cut along stored spatial ``axis`` of a volume: its
    columns in the slice's own nibabel order -- the two axes left (reversed stored
    order: column index first), then the cut axis -- so that ``affine @ (column, row,
    0, 1)`` places its voxels, as for any item, and as_monai/TorchIO read it right.
    A slice along z keeps the volume's affine; along y its columns are (x, z, y), along
    x (y, z, x)."""
    kept = [a for a in range(spatial) if a != axis][::-1] + [axis]  # stored, nibabel order
    columns = [spatial - 1 - a for a in kept]  # stored axis a is the affine's column n-1-a
    return affine[:, columns + list(range(spatial, 4))]


def _label_values(values, case_ids: list[str]) -> list[Any]:
    """Per case: an int, or (multi-label DataFrame) an int8 array over the classes."""
    rows = values.loc[case_ids]
    if rows.ndim == 1:
        return [int(v) for v in rows.to_numpy()]
    return list(np.array(rows.to_numpy(dtype=np.int8)))  # writable: torch warns otherwise
