"""Stack layout writer: every case in one ``image[case, channel, [z,] y, x]`` array.

Chunks are one 2D slice of one channel of one case, so a slice is read without
decompressing its neighbours; shards hold ``cases_per_shard`` whole cases, so the file
count is about N / cases_per_shard.

Cases arrive in any order but a shard is written once, by one call, when all its cases
have arrived (or at close): two writers filling one shard overwrite each other's
chunks (zarr-python #3514). The per-case geometry arrays and ``complete`` are chunked
like the shards, so each shard write touches chunks of its own only.

On Dask, a worker task writes each shard from its harmonized cases
(``stack_shards.ShardDestination``); this writer then records those cases
(``ShardCaseWritten``, no pixels) and sets their ``complete`` once it has them all.
The arrays are made from the first harmonized case, before any worker writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..case import Case
from ..errors import StoreError
from ..failpoints import failpoint
from .axes import WORLD_LABELS, spatial_dims
from .base import BaseWriter, ImageTemplate
from .results import CaseWritten
from .schema import (
    AFFINE, AFFINE_DIMS, CASE, CHANNEL, COMPLETE, IMAGE, MASK, ORIGIN, SPACING, SPATIAL,
    STACK_ROOT_NAMES, WHOLE_ARRAY_CONFIG, WORLD, checksummed,
)
from .stack_shards import (
    ShardCaseWritten, ShardDestination, cases_per_shard,
    open_stack_arrays, reset_cases, stored_shape, write_shard_pixels,
)


# What the stack writes before close (the rest of the root is written by close).
STACK_LAYOUT_ARRAYS = (IMAGE, MASK, AFFINE, SPACING, ORIGIN, COMPLETE, SPATIAL, WORLD)


def shard_unit(shard: int) -> str:
    return f"shard-{shard:06d}"


@dataclass
class _WorkerShard:
    """The cases a worker wrote into one shard, as the writer records or refuses them."""

    written: set[int]
    accepted: set[int] = field(default_factory=set)
    refused: set[int] = field(default_factory=set)

    def settled(self) -> bool:
        return self.accepted | self.refused == self.written


class StackWriter(BaseWriter):
    reserved = STACK_ROOT_NAMES

    def __init__(self, *args: Any, cases_per_shard: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._requested_k = cases_per_shard
        self._k = 0  # decided with the first case
        self._pending: dict[int, dict[int, Case]] = {}  # shard -> index -> case
        self._from_workers: dict[int, _WorkerShard] = {}  # shard -> what a worker wrote
        self._arrays: dict[str, Any] = {}  # handles, so a shard write re-reads no metadata

    def _write(self, index: int, written: CaseWritten, case: Case | None) -> None:
        if case is None and not isinstance(written, ShardCaseWritten):
            raise StoreError(self.location, f"case {written.case_id!r}: a stack store is "
                             "written by the build process or by the worker that writes "
                             "its whole shard, either of which needs the case's pixels")
        with self._lock:
            if self._fit_template(written):
                if case is None:  # the arrays exist before any worker writes
                    raise StoreError(self.location, "a worker wrote a shard before the "
                                     "stack's arrays were made")
                self._create_arrays()
            shard, batch = index // self._k, None
            if case is None:
                self._worker_shard(shard, written).accepted.add(index)
            else:
                pending = self._pending.setdefault(shard, {})
                pending[index] = case
                ready = len(pending) == self._shard_stop(shard) - shard * self._k
                batch = self._pending.pop(shard) if ready else None
        if case is None:
            self._settle(shard)
        elif batch is not None:
            self._write_shard(shard, batch)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for shard, batch in sorted(pending.items()):
            self._write_shard(shard, batch)

    def _shard_stop(self, shard: int) -> int:
        return min(self.n_cases, (shard + 1) * self._k)

    # -- shards written by workers -----------------------------------------------------
    def worker_destination(self, first: dict[str, Any] | None = None
                           ) -> ShardDestination | None:
        """Where workers write whole shards, if the format lets them; before the
        arrays exist, a destination that ``needs_template``: given ``first`` (the
        template of a harmonized case), the arrays are made from it now."""
        if not self._format.writes_from_workers:
            return None
        with self._lock:
            if not self._arrays and first is not None:
                self._template = ImageTemplate(first)
                self._create_arrays()
            if not self._arrays:
                return ShardDestination(self.location, self.n_cases)
            return ShardDestination(self.location, self.n_cases, self._k, self._template)

    def _worker_shard(self, shard: int, written: ShardCaseWritten) -> _WorkerShard:
        return self._from_workers.setdefault(shard, _WorkerShard(set(written.shard_cases)))

    def _discard(self, written: CaseWritten) -> None:
        """A case a worker wrote into its shard that the store refused: left out of the
        shard once the shard's other cases are recorded."""
        if not isinstance(written, ShardCaseWritten) or not self._k:
            return
        with self._lock:
            shard = written.index // self._k
            self._worker_shard(shard, written).refused.add(written.index)
        self._settle(shard)

    def _settle(self, shard: int) -> None:
        """Once every case a worker wrote into ``shard`` is recorded or refused: the
        refused ones taken out, the others journaled, then marked complete."""
        with self._lock:
            unit = self._from_workers.get(shard)
            if unit is None or not unit.settled():
                return
            del self._from_workers[shard]
        start, stop = shard * self._k, self._shard_stop(shard)
        if unit.refused:
            reset_cases(self._arrays, start, stop, unit.refused, unit.accepted)
        if unit.accepted:
            self._complete_shard(shard, sorted(unit.accepted))

    # -- arrays ------------------------------------------------------------------------
    def _create_arrays(self) -> None:
        """The stack's arrays, shaped by the first case's template (call under the
        lock, ``_template`` set)."""
        template = self._template
        stored = stored_shape(template)
        n = template.spatial_ndim
        self._k = cases_per_shard(template, self._requested_k, self.n_cases)
        dims = spatial_dims(n)
        slice_chunk = (1,) * (n - 2) + stored[-2:]  # one 2D slice
        self._array(IMAGE, (CASE, CHANNEL) + dims, stored, template.dtype,
                    chunks=(1, 1) + slice_chunk, shards=(self._k,) + stored)
        if template.mask_dtype is not None:
            self._array(MASK, (CASE,) + dims, stored[1:], template.mask_dtype,
                        chunks=(1,) + slice_chunk, shards=(self._k,) + stored[1:])
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
        """All arrays of one shard from the build process's cases, ``complete`` last.
        Absent cases stay at fill values."""
        write_shard_pixels(self._arrays, shard * self._k, self._shard_stop(shard), batch,
                           self._template)
        self._complete_shard(shard, sorted(batch))

    def _complete_shard(self, shard: int, indices: list[int]) -> None:
        """Journal the cases of a shard whose pixels are written, then mark them
        complete: a reader never sees a case as complete before its pixels are on
        disk, a resume never finds a complete case without its record."""
        start, stop = shard * self._k, self._shard_stop(shard)
        complete = np.zeros(stop - start, dtype=bool)
        complete[np.asarray(indices) - start] = True
        self._journal_unit(shard_unit(shard), indices)
        failpoint("shard")  # failpoint: killed with a shard written but not complete
        self._arrays[COMPLETE][start:stop] = complete

    # -- resuming ----------------------------------------------------------------------
    def _complete_records(self, case_ids: list[str]) -> list[dict[str, Any]]:
        """Records of the cases of entirely complete shards. A shard with any case
        not complete is rewritten whole (all its cases redone): never a partial write
        into a shard, which concurrent writers would corrupt (zarr-python #3514)."""
        if IMAGE not in self._root or COMPLETE not in self._root:
            return []
        self._arrays = open_stack_arrays(self._root)
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
