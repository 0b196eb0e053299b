"""Shards of a stack store, as both of their writers write them: the build process
(``stack.StackWriter``, from cases it harmonized or received) and a Dask worker
(``ShardDestination``, from the cases of one shard it harmonized itself).

Either way a shard is written whole, by one writer, once its cases are known: two
writers filling one shard overwrite each other's chunks (zarr-python #3514). A worker
writes the pixels and geometry of its shard but not ``complete``: the build process
sets that once it has recorded the cases (their ids, labels and journal records), so
a case the store then refuses is never complete, as when the build process writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from ..case import Case
from ..errors import MedimgError
from .annotation_tables import GROUP_NAMES, check_types
from .axes import image_to_stored, mask_to_stored, stored_origin, stored_spacing
from .base import ImageTemplate, check_case_geometry, misfit_error
from .contract import WorkerLocation, each_or_failure
from .results import CaseFailed, CaseWritten, case_written, template_record
from .schema import (
    AFFINE, COMPLETE, IMAGE, MASK, ORIGIN, SPACING, TARGET_SHARD_BYTES, WHOLE_ARRAY_CONFIG,
)

# The per-case arrays a shard write fills besides ``complete``, with their fill values.
SHARD_ARRAYS = {IMAGE: 0, MASK: 0, AFFINE: np.nan, SPACING: np.nan, ORIGIN: np.nan}
STACK = "stack"  # the layout's name, in refusals
# Harmonizing tasks of a stack shard (ShardDestination.cases_per_task).
TASK_BYTES = 4 * 1024 * 1024
MAX_CASES_PER_TASK = 8


def default_cases_per_shard(case_bytes: int, n_cases: int) -> int:
    """About ``TARGET_SHARD_BYTES`` of uncompressed image per shard, within [1, N]:
    big enough for few files and efficient reads, small enough to buffer in memory."""
    return cases_within(TARGET_SHARD_BYTES, case_bytes, n_cases)


def cases_within(budget: int, case_bytes: int, most: int) -> int:
    """How many cases of ``case_bytes`` fit in ``budget`` bytes, within [1, most]."""
    return max(1, min(most, budget // max(1, case_bytes)))


def stored_shape(template: ImageTemplate) -> tuple[int, ...]:
    """One case's image as stored, ``(c, [z,] y, x)`` (``axes.image_to_stored``)."""
    return (template.n_channels,) + tuple(reversed(template.spatial_shape))


def stored_case_bytes(template: ImageTemplate) -> int:
    return math.prod(stored_shape(template)) * template.dtype.itemsize


def cases_per_shard(template: ImageTemplate, requested: int | None, n_cases: int) -> int:
    k = requested or default_cases_per_shard(stored_case_bytes(template), n_cases)
    return max(1, min(int(k), n_cases))


def open_stack_arrays(root) -> dict[str, Any]:
    """The existing per-case arrays of a stack store, the sharded ones with the config
    they were created with: reopened with Zarr's default, a shard would drop its empty
    chunks (an all-zero mask slice) and differ from the one written in one go."""
    arrays = {}
    for name in (IMAGE, MASK, AFFINE, SPACING, ORIGIN, COMPLETE):
        if name in root:
            array = root[name]
            arrays[name] = array.with_config(WHOLE_ARRAY_CONFIG) if array.shards else array
    return arrays


def write_shard_pixels(arrays: dict[str, Any], start: int, stop: int,
                       cases: dict[int, Case], template: ImageTemplate) -> None:
    """Image, mask and geometry of the shard of cases ``start:stop``, whole; cases
    absent from ``cases`` (failed, refused) stay at fill values. Not ``complete``."""
    image = arrays[IMAGE]
    n = stop - start
    pixels = np.zeros((n,) + image.shape[1:], dtype=image.dtype)
    masks = np.zeros((n,) + image.shape[2:], dtype=template.mask_dtype or np.uint8)
    affine = np.full((n, 4, 4), np.nan)
    spacing = np.full((n, template.spatial_ndim), np.nan)
    origin = np.full((n, 3), np.nan)
    for index, case in cases.items():
        row = index - start
        pixels[row] = image_to_stored(case.image)
        if case.mask is not None:
            masks[row] = mask_to_stored(case.mask.array)
        affine[row] = case.image.affine
        spacing[row] = stored_spacing(case.image.affine, case.image.spatial_ndim)
        origin[row] = stored_origin(case.image.affine)
    image[start:stop] = pixels
    if MASK in arrays:
        arrays[MASK][start:stop] = masks
    arrays[AFFINE][start:stop] = affine
    arrays[SPACING][start:stop] = spacing
    arrays[ORIGIN][start:stop] = origin


def reset_cases(arrays: dict[str, Any], start: int, stop: int, refused: set[int],
                kept: set[int]) -> None:
    """Put the shard ``start:stop`` back as if the ``refused`` cases a worker wrote in
    it had never been there: their rows at fill values and the shard rewritten whole
    (read back, so its bytes are those of a shard written without them); with no case
    ``kept`` the shard is deleted, as a shard never written is absent."""
    for name, fill in SHARD_ARRAYS.items():
        if name not in arrays:
            continue
        array = arrays[name]
        if not kept:  # all fill: with empty chunks not written, Zarr deletes them
            array.with_config({"write_empty_chunks": False})[start:stop] = fill
            continue
        values = array[start:stop]
        for index in refused:
            values[index - start] = fill
        array[start:stop] = values


@dataclass(frozen=True)
class ShardCaseWritten(CaseWritten):
    """A case a worker wrote into a stack shard, with the other cases written with it
    (``shard_cases``, ascending, itself included): the build process marks them
    complete together, once it has recorded or refused each."""

    shard_cases: tuple[int, ...] = ()


@dataclass(frozen=True)
class ShardDestination(WorkerLocation):
    """Where Dask workers write stack shards (``contract.WorkerDestination``):
    picklable, sent to each worker once. ``template`` is None while the store has no
    arrays: they are made from the first harmonized case
    (``StackWriter.worker_destination(first)``)."""

    n_cases: int
    cases_per_shard: int = 0
    template: ImageTemplate | None = None

    @property
    def needs_template(self) -> bool:
        return self.template is None

    @property
    def cases_per_task(self) -> int:
        """Small cases, several to a harmonizing task: each Dask task costs the build
        process (the client and a local cluster's scheduler) 2-4 ms of CPU, as much as
        a small case's whole harmonizing (a 512x512 picture: ~15 ms). About
        ``TASK_BYTES`` of harmonized image per task keeps what waits on the workers
        bounded."""
        if self.template is None:
            return 1
        return cases_within(TASK_BYTES, stored_case_bytes(self.template), MAX_CASES_PER_TASK)

    def reachable(self) -> bool:
        return self.sees(f"{IMAGE}/zarr.json")

    def units(self, indices: list[int]) -> list[list[int]]:
        """``indices`` (ascending) by shard: the cases one worker task writes."""
        by_shard: dict[int, list[int]] = {}
        for index in indices:
            by_shard.setdefault(index // self.cases_per_shard, []).append(index)
        return list(by_shard.values())

    def write_cases(self, cases: dict[int, Case]) -> dict[int, CaseWritten | CaseFailed]:
        """Write ``cases`` (of one shard) as that shard, after the checks the build
        process would run on their pixels; each case's record, or why the store
        refuses it (it stays out of the shard)."""
        results: dict[int, CaseWritten | CaseFailed] = {}
        fitting: dict[int, Case] = {}
        for index, checked in each_or_failure(cases, self._checked).items():
            if isinstance(checked, CaseFailed):
                results[index] = checked
            else:
                fitting[index] = checked
        if not fitting:
            return results
        shard = min(fitting) // self.cases_per_shard
        start = shard * self.cases_per_shard
        stop = min(self.n_cases, start + self.cases_per_shard)
        if max(fitting) >= stop:
            raise ValueError(f"cases {sorted(fitting)} are not of one shard")
        root = zarr.open_group(self.opened_at, mode="r+", zarr_format=3,
                               use_consolidated=False)
        write_shard_pixels(open_stack_arrays(root), start, stop, fitting, self.template)
        together = tuple(fitting)
        for index, case in fitting.items():
            written = case_written(index, case)
            results[index] = ShardCaseWritten(written.index, written.record, together)
        return results

    def refusal(self, index: int, case: Case) -> CaseFailed | None:
        """Why the store refuses ``case`` whatever its template, or None: a case the
        store refuses must not make its arrays (the build process checks this before
        taking a case's template)."""
        try:
            self._check_own(case)
        except MedimgError as error:
            return CaseFailed(index, case.case_id, error)
        return None

    def _check_own(self, case: Case) -> None:
        check_types(case.case_id, {kind: getattr(case, kind) for kind in GROUP_NAMES},
                    self.location)
        check_case_geometry(case, self.location)

    def _checked(self, index: int, case: Case) -> Case:
        """``case``, once it fits the store's arrays; else its refusal is raised."""
        self._check_own(case)
        error = misfit_error(self.template, ImageTemplate(template_record(case)), case.case_id,
                             self.location, STACK, stack=True)
        if error is not None:
            raise error
        return case
