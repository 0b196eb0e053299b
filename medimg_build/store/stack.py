"""Stack layout writer: every case in one ``image[case, channel, [z,] y, x]`` array.

Chunks are one 2D slice of one channel of one case, so a slice is read without
decompressing its neighbours; shards hold ``cases_per_shard`` whole cases, so the file
count is about N / cases_per_shard.

Cases arrive in any order but a shard is written once, by one call, when all its cases
have arrived (or at close): two writers filling one shard overwrite each other's
chunks (zarr-python #3514). The per-case geometry arrays and ``complete`` are chunked
like the shards, so each shard write touches chunks of its own only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..case import Case
from ..errors import StoreError
from ..failpoints import failpoint
from .axes import WORLD_LABELS, image_to_stored, mask_to_stored, spatial_dims, stored_origin
from .axes import stored_spacing
from .base import BaseWriter
from .results import CaseWritten
from .schema import (
    AFFINE, AFFINE_DIMS, CASE, CHANNEL, COMPLETE, IMAGE, MASK, ORIGIN, SPACING, SPATIAL,
    STACK_ROOT_NAMES, TARGET_SHARD_BYTES, WHOLE_ARRAY_CONFIG, WORLD, checksummed,
)


# What the stack writes before close (the rest of the root is written by close).
STACK_LAYOUT_ARRAYS = (IMAGE, MASK, AFFINE, SPACING, ORIGIN, COMPLETE, SPATIAL, WORLD)


def shard_unit(shard: int) -> str:
    return f"shard-{shard:06d}"


def default_cases_per_shard(case_bytes: int, n_cases: int) -> int:
    """About ``TARGET_SHARD_BYTES`` of uncompressed image per shard, within [1, N]:
    big enough for few files and efficient reads, small enough to buffer in memory."""
    return max(1, min(n_cases, TARGET_SHARD_BYTES // max(1, case_bytes)))


class StackWriter(BaseWriter):
    reserved = STACK_ROOT_NAMES

    def __init__(self, *args: Any, cases_per_shard: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._requested_k = cases_per_shard
        self._k = 0  # decided with the first case
        self._pending: dict[int, dict[int, Case]] = {}  # shard -> index -> case
        self._arrays: dict[str, Any] = {}  # handles, so a shard write re-reads no metadata

    def _write(self, index: int, written: CaseWritten, case: Case | None) -> None:
        if case is None:  # shards are written whole, by the build process
            raise StoreError(self.location, f"case {written.case_id!r}: a stack store is "
                             "written by the build process, which needs the case's pixels")
        with self._lock:
            if self._fit_template(written):
                self._create_arrays(case)
            shard = index // self._k
            pending = self._pending.setdefault(shard, {})
            pending[index] = case
            ready = len(pending) == self._shard_stop(shard) - shard * self._k
            batch = self._pending.pop(shard) if ready else None
        if batch is not None:
            self._write_shard(shard, batch)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for shard, batch in sorted(pending.items()):
            self._write_shard(shard, batch)

    def _shard_stop(self, shard: int) -> int:
        return min(self.n_cases, (shard + 1) * self._k)

    # -- arrays ------------------------------------------------------------------------
    def _create_arrays(self, case: Case) -> None:
        stored = image_to_stored(case.image)
        n = case.image.spatial_ndim
        k = self._requested_k or default_cases_per_shard(stored.nbytes, self.n_cases)
        self._k = max(1, min(int(k), self.n_cases))
        dims = spatial_dims(n)
        slice_chunk = (1,) * (n - 2) + stored.shape[-2:]  # one 2D slice
        self._array(IMAGE, (CASE, CHANNEL) + dims, stored.shape, stored.dtype,
                    chunks=(1, 1) + slice_chunk, shards=(self._k,) + stored.shape)
        if case.mask is not None:
            self._array(MASK, (CASE,) + dims, stored.shape[1:], case.mask.array.dtype,
                        chunks=(1,) + slice_chunk, shards=(self._k,) + stored.shape[1:])
        self._array(AFFINE, (CASE,) + AFFINE_DIMS, (4, 4), np.float64, fill_value=np.nan)
        self._array(SPACING, (CASE, SPATIAL), (n,), np.float64, fill_value=np.nan)
        self._array(ORIGIN, (CASE, WORLD), (3,), np.float64, fill_value=np.nan)
        self._array(COMPLETE, (CASE,), (), bool, fill_value=False)
        # Coordinates naming the entries of `spacing` and `origin`.
        self._names_coord(SPATIAL, dims)
        self._names_coord(WORLD, WORLD_LABELS)

    def _array(self, name: str, dims: tuple[str, ...], case_shape: tuple[int, ...], dtype,
               chunks: tuple[int, ...] | None = None, shards: tuple[int, ...] | None = None,
               fill_value: Any = 0) -> None:
        """A per-case array; unsharded ones are chunked like the image shards. Every
        chunk carries a crc32c; the sharded ones (image, mask) are written whole, so
        that a missing chunk is damage (the per-case arrays of a shard whose cases all
        failed are never written, and read as fill values by design)."""
        self._arrays[name] = self._root.create_array(
            name, shape=(self.n_cases,) + tuple(case_shape), dtype=dtype,
            chunks=chunks or (self._k,) + tuple(case_shape), shards=shards,
            compressors=checksummed(self._compressor),
            config=WHOLE_ARRAY_CONFIG if shards else None,
            fill_value=fill_value, dimension_names=dims,
        )

    def _names_coord(self, name: str, labels: tuple[str, ...]) -> None:
        array = self._root.create_array(name, shape=(len(labels),), dtype=str,
                                        dimension_names=(name,))
        array[:] = np.array(labels, dtype=object)

    def _write_shard(self, shard: int, batch: dict[int, Case]) -> None:
        """All arrays of one shard, ``complete`` last: a reader never sees a case as
        complete before its pixels are on disk. Absent cases stay at fill values."""
        start, stop = shard * self._k, self._shard_stop(shard)
        image = self._arrays[IMAGE]
        pixels = np.zeros((stop - start,) + image.shape[1:], dtype=image.dtype)
        mask_dtype = self._template.mask_dtype or np.uint8  # unused without masks
        masks = np.zeros((stop - start,) + image.shape[2:], dtype=mask_dtype)
        affine = np.full((stop - start, 4, 4), np.nan)
        spacing = np.full((stop - start, self._template.spatial_ndim), np.nan)
        origin = np.full((stop - start, 3), np.nan)
        complete = np.zeros(stop - start, dtype=bool)
        for index, case in batch.items():
            row = index - start
            pixels[row] = image_to_stored(case.image)
            if case.mask is not None:
                masks[row] = mask_to_stored(case.mask.array)
            affine[row] = case.image.affine
            spacing[row] = stored_spacing(case.image.affine, case.image.spatial_ndim)
            origin[row] = stored_origin(case.image.affine)
            complete[row] = True
        image[start:stop] = pixels
        if MASK in self._arrays:
            self._arrays[MASK][start:stop] = masks
        self._arrays[AFFINE][start:stop] = affine
        self._arrays[SPACING][start:stop] = spacing
        self._arrays[ORIGIN][start:stop] = origin
        self._journal_unit(shard_unit(shard), list(batch))
        failpoint("shard")  # failpoint: killed with a shard written but not complete
        self._arrays[COMPLETE][start:stop] = complete

    # -- resuming ----------------------------------------------------------------------
    def _complete_records(self, case_ids: list[str]) -> list[dict[str, Any]]:
        """Records of the cases of entirely complete shards. A shard with any case
        not complete is rewritten whole (all its cases redone): never a partial write
        into a shard, which concurrent writers would corrupt (zarr-python #3514)."""
        if IMAGE not in self._root or COMPLETE not in self._root:
            return []
        self._arrays = {name: self._root[name] for name in
                        (IMAGE, MASK, AFFINE, SPACING, ORIGIN, COMPLETE) if name in self._root}
        self._k = int(self._arrays[IMAGE].shards[0])
        records = []
        for shard in range(-(-self.n_cases // self._k)):
            start, stop = shard * self._k, self._shard_stop(shard)
            try:
                whole = bool(np.all(self._arrays[COMPLETE][start:stop]))
            except Exception:  # a chunk torn by the kill: that shard is not complete
                whole = False
            if whole:
                records += self._unit_records(shard_unit(shard))
        if not records:
            self._arrays = {}
        return records

    def _kept_on_resume(self) -> set[str]:
        # No complete shard: start afresh, arrays created again with the first case.
        return set(STACK_LAYOUT_ARRAYS) if self._arrays else set()

    def _arrays_info(self) -> dict[str, Any]:
        info = self._root_arrays_info()
        if IMAGE in info:
            info[IMAGE]["cases_per_shard"] = self._k
        return info
