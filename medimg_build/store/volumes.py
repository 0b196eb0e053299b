"""Volumes layout writer: one group ``cases/<case_id>`` per case, each its own grid.

A case group is an OME-NGFF image: its levels ``scale<n>/image`` (level 0 only, unless
the store has a pyramid: ``pyramid.py``) and its mask as the label image
``labels/mask/mask`` (``labels/mask/scale<n>/mask`` with a pyramid; layout and
metadata: ``ngff.py``), each level with its voxel-centre coordinates ``z``, ``y``, ``x``.

Each array is one shard (one file per array per case, so N cases make O(N) files
whatever their slice count) of 2D-slice chunks (a slice decodes alone). The group's
``medimg_case.complete`` turns true last, after every array of the case is written.
Different cases touch different groups, so cases can be written concurrently.

So Dask workers write volumes cases into the store themselves (``CaseDestination``):
a worker writes the group (``complete`` false) and sends back a ``CaseWritten``, the
case's record without its pixels. The build process then only records it -- ids,
labels, table row, journal -- and sets the completion marker, exactly as for a case it
wrote itself, so the store is the same byte for byte. Without this the build process
received every image and compressed it in one thread: the bottleneck of a parallel
build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from ..case import Case
from ..failpoints import failpoint
from .axes import (
    axis_coords, image_to_stored, is_axis_aligned, mask_to_stored, spatial_dims,
    stored_origin, stored_spacing,
)
from .base import BaseWriter, check_case_geometry
from .classification import segmentation_classes
from .contract import WorkerLocation, each_or_failure
from .ngff import image_ome, image_omero, label_image_ome, labels_ome, space_unit
from .pyramid import Factors, image_levels, level_affine, mask_levels, plan_levels
from .schema import (
    CASE_ATTRS, CASES_GROUP, CHANNEL, IMAGE, LABELS_GROUP, MASK, VOLUMES_ROOT_NAMES,
    WHOLE_ARRAY_CONFIG, checksummed, image_path, level_0_mask_path, level_group,
)
from .results import CaseFailed, CaseWritten, case_written


class VolumesWriter(BaseWriter):
    reserved = VOLUMES_ROOT_NAMES

    def __init__(self, *args: Any, pyramid_levels: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pyramid_levels = pyramid_levels  # at most; small images get fewer
        self._cases = (self._root[CASES_GROUP] if CASES_GROUP in self._root  # resuming
                       else self._root.create_group(CASES_GROUP))
        # The written case of lowest index describes the arrays of all: the same case
        # whatever order the workers finished in, and after a resume.
        self._first: tuple[int, str] | None = None

    def _write(self, index: int, written: CaseWritten, case: Case | None) -> None:
        with self._lock:
            self._fit_template(written)
        if case is not None:  # else a worker wrote its group already
            write_case_group(self._cases, case, self._group_settings())
        self._journal_unit(case_unit(index), [index])
        failpoint("case")  # failpoint: killed with a case written but not complete
        group = self._cases[written.case_id]
        group.attrs[CASE_ATTRS] = dict(group.attrs[CASE_ATTRS], complete=True)  # last
        self._wrote(index, written.case_id)

    def _group_settings(self) -> CaseGroupSettings:
        return CaseGroupSettings(self._compressor, self._pyramid_levels,
                                 segmentation_classes(self._vocabulary()))

    def worker_destination(self, first: dict[str, Any] | None = None
                           ) -> CaseDestination | None:
        """Where workers write cases, if the format lets them (``writes_from_workers``);
        a case group needs nothing of the first case (``first`` is not used)."""
        if not self._format.writes_from_workers:
            return None
        return CaseDestination(self.location, self._group_settings())

    def _discard(self, written: CaseWritten) -> None:
        """Delete the group a worker wrote for a case the store then refused."""
        if written.case_id in self._cases:
            del self._cases[written.case_id]

    def _wrote(self, index: int, case_id: str) -> None:
        with self._lock:
            self._first = min(self._first or (index, case_id), (index, case_id))

    # -- resuming ----------------------------------------------------------------------
    def _complete_records(self, case_ids: list[str]) -> list[dict[str, Any]]:
        """Records of the complete cases; an incomplete case's group is deleted."""
        records = []
        for index, case_id in enumerate(case_ids):
            try:
                complete = self._cases[case_id].attrs[CASE_ATTRS]["complete"] is True
            except KeyError:
                continue  # never started
            except Exception:  # metadata torn by the kill
                complete = False
            if complete:
                records += self._unit_records(case_unit(index))
                self._wrote(index, case_id)
            else:
                del self._cases[case_id]
        return records

    def _kept_on_resume(self) -> set[str]:
        return {CASES_GROUP}

    def _arrays_info(self) -> dict[str, Any]:
        """Root arrays, plus the level-0 image and mask of one case as the pattern of
        all: null in ``shape``/``chunks``/``shards`` means that case's own extent."""
        info = self._root_arrays_info()
        if self._first is None:
            return info
        group = self._cases[self._first[1]]
        for path in (image_path(), level_0_mask_path(group)):
            if path is not None and path in group:
                pattern = self._format.array_info(group[path])
                ndim = len(pattern["shape"])
                pattern.update(path=f"{CASES_GROUP}/{{case_id}}/{path}", shape=[None] * ndim,
                               chunks=pattern["chunks"][:-2] + [None, None],
                               shards=[None] * ndim)
                info[f"{CASES_GROUP}/*/{path}"] = pattern
        return info


@dataclass(frozen=True)
class CaseDestination(WorkerLocation):
    """Where and how a worker writes a volumes case (``contract.WorkerDestination``):
    the store's location and its ``CaseGroupSettings`` (picklable, sent to each worker
    once)."""

    settings: CaseGroupSettings
    needs_template = False  # each case has arrays of its own
    cases_per_task = 1  # a unit is one case, harmonized by the task that writes it

    def reachable(self) -> bool:
        return self.sees(f"{CASES_GROUP}/zarr.json")

    def write(self, index: int, case: Case) -> CaseWritten:
        """Write the group of ``case`` (to be the store's case ``index``), after the
        checks the build process would run on its pixels; what the writer records."""
        check_case_geometry(case, self.location)
        cases = zarr.open_group(self.opened_at, mode="r+", path=CASES_GROUP,
                                zarr_format=3)
        write_case_group(cases, case, self.settings)
        return case_written(index, case)

    def units(self, indices: list[int]) -> list[list[int]]:
        """Each case alone: cases touch different groups, so any worker writes any."""
        return [[index] for index in indices]

    def write_cases(self, cases: dict[int, Case]) -> dict[int, CaseWritten | CaseFailed]:
        """Each case written (``write``), or why the store refuses it."""
        return each_or_failure(cases, self.write)


@dataclass(frozen=True)
class CaseGroupSettings:
    """What writing a case group takes besides the case (picklable: workers get it)."""

    compressor: Any
    pyramid_levels: int  # at most; small images get fewer
    classes: dict[int, str]  # mask value -> class name, for the NGFF label colours


def write_case_group(cases, case: Case, settings: CaseGroupSettings) -> None:
    """The case's group under ``cases``: its image levels, its mask as a label image,
    and its attributes with ``complete`` false (the writer sets it once the case is
    recorded). Touches that group only, so workers can write different cases at once."""
    image = case.image
    nd = image.spatial_ndim
    stored = image_to_stored(image)
    plan = plan_levels(stored_spacing(image.affine, nd), stored.shape[1:],
                       settings.pyramid_levels)
    affines = [level_affine(image.affine, factors) for factors in plan]
    attrs = case_attrs(case.case_id, image.affine, nd, stored.shape[1:], image.has_channels)
    ome = image_ome(case.case_id, affines, nd, image_omero(stored, image.history, image.meta),
                    space_unit(image))
    # overwrite=True: a retry of a case whose first attempt failed half-way.
    group = cases.create_group(case.case_id, overwrite=True,
                               attributes={CASE_ATTRS: attrs, "ome": ome})
    _write_image(group, stored, plan, affines, settings.compressor)
    if case.mask is not None:
        _write_mask(group, case.case_id, mask_to_stored(case.mask.array), plan, affines,
                    settings, space_unit(image))


def _write_image(group, stored: np.ndarray, plan: list[Factors], affines: list[np.ndarray],
                 compressor) -> None:
    """Each level of the image in its group ``scale<n>``, with the 1-D voxel-centre
    positions of that level."""
    dims = (CHANNEL,) + spatial_dims(stored.ndim - 1)
    for level, (affine, pixels) in enumerate(zip(affines, image_levels(stored, plan))):
        node = group.create_group(level_group(level))
        _array(node, IMAGE, dims, pixels, compressor)
        _axis_coords(node, affine, pixels.shape[1:])


def _write_mask(group, case_id: str, stored: np.ndarray, plan: list[Factors],
                affines: list[np.ndarray], settings: CaseGroupSettings,
                unit: str | None) -> None:
    """The mask as the NGFF label image ``labels/mask`` of the case's image, with the
    image's levels and their voxel-centre positions: in the label image group itself
    for one level, in its groups ``scale<n>`` for a pyramid (``schema.mask_path``);
    colours and names from the store's segmentation classes."""
    classes = settings.classes
    values = sorted(classes) if classes else np.unique(stored).tolist()
    labels = group.create_group(LABELS_GROUP, attributes={"ome": labels_ome([MASK])})
    ome = label_image_ome(case_id, affines, stored.ndim, values, classes, unit)
    label_image = labels.create_group(MASK, attributes={"ome": ome})
    pyramid = len(plan) > 1
    for level, (affine, pixels) in enumerate(zip(affines, mask_levels(stored, plan))):
        node = label_image.create_group(level_group(level)) if pyramid else label_image
        _array(node, MASK, spatial_dims(stored.ndim), pixels, settings.compressor)
        _axis_coords(node, affine, pixels.shape)


def _axis_coords(group, affine: np.ndarray, spatial_shape: tuple[int, ...]) -> None:
    """The 1-D voxel-centre positions (mm) along each spatial axis, which xarray makes
    the level's coordinates."""
    for name, values in axis_coords(affine, spatial_shape).items():
        group.create_array(name, data=values, dimension_names=(name,))


def _array(group, name: str, dims: tuple[str, ...], data: np.ndarray, compressor) -> None:
    """One shard (the whole array) of 2D-slice chunks, each with its crc32c, all
    written (an empty mask slice too: a chunk missing from a complete case is damage)."""
    chunks = (1,) * (data.ndim - 2) + data.shape[-2:]
    array = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks,
                               shards=data.shape, compressors=checksummed(compressor),
                               config=WHOLE_ARRAY_CONFIG, dimension_names=dims)
    array[...] = data


def case_unit(index: int) -> str:
    return f"case-{index:08d}"


def case_attrs(case_id: str, affine: np.ndarray, spatial_ndim: int,
               stored_shape: tuple[int, ...], channel_axis: bool) -> dict[str, Any]:
    """The group's ``medimg_case`` attribute (complete: False until the case is whole)."""
    return {
        "case_id": case_id,
        "affine": affine.tolist(),  # nibabel index order (x, y[, z]): the reverse of dims
        "spacing": stored_spacing(affine, spatial_ndim).tolist(),  # stored order
        "origin": stored_origin(affine).tolist(),  # RAS+ as (S, A, R), stored order
        "shape": [int(n) for n in stored_shape],  # stored spatial shape ([z,] y, x)
        "axis_aligned": is_axis_aligned(affine, spatial_ndim),
        "channel_axis": channel_axis,
        "complete": False,
    }
