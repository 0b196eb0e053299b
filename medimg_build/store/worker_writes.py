"""Dask workers writing volumes cases into the store themselves.

A volumes case is its own group under ``cases/``, so a worker can write it without
touching anything another writer touches. The worker writes the group (``complete``
false) and sends back a ``WrittenCase``: the case with its pixels left out. The build
process then only records it -- ids, labels, table row, journal -- and sets the
completion marker, exactly as for a case it wrote itself, so the store is the same byte
for byte. Without this the build process received every image and compressed it in one
thread: the bottleneck of a parallel build.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import zarr

from ..case import Case
from ..image import MedicalImage
from .schema import CASES_GROUP


@dataclass(eq=False)
class WrittenCase(Case):
    """A case whose group a worker has written. Its image and mask are stand-ins with
    the true shape, dtype and geometry but no pixels (a broadcast voxel), and they
    travel between processes as one voxel and a shape."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in ("image", "mask"):
            if state[name] is not None:
                state[name] = (_one_voxel(state[name]), state[name].array.shape)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in ("image", "mask"):
            if state[name] is not None:
                voxel, shape = state[name]
                state[name] = voxel.replace(array=np.broadcast_to(voxel.array, shape))
        self.__dict__.update(state)


@dataclass(frozen=True)
class CaseDestination:
    """Where and how a worker writes a volumes case: the store's location and its
    ``volumes.CaseGroupSettings`` (picklable, sent to each worker once)."""

    location: str
    settings: Any

    def reachable(self) -> bool:
        """Whether this process sees the store (a worker on another host without the
        shared filesystem does not: it sends the case back for the build to write)."""
        fs, path = fsspec.core.url_to_fs(self.location)
        return fs.exists(f"{path.rstrip('/')}/{CASES_GROUP}/zarr.json")

    def write(self, case: Case) -> WrittenCase:
        from .base import check_case_geometry  # the checks the build process would run
        from .volumes import write_case_group

        check_case_geometry(case, self.location)
        cases = zarr.open_group(os.fspath(self.location), mode="r+", path=CASES_GROUP,
                                zarr_format=3)
        write_case_group(cases, case, self.settings)
        return with_pixels_left_out(case)


def with_pixels_left_out(case: Case) -> WrittenCase:
    """``case`` as a WrittenCase: everything but the pixels, which are on disk now."""
    fields = {f.name: getattr(case, f.name) for f in dataclasses.fields(Case)}
    for name in ("image", "mask"):
        image = fields[name]
        if image is not None:
            nothing = np.zeros((), image.array.dtype)
            fields[name] = image.replace(array=np.broadcast_to(nothing, image.array.shape))
    return WrittenCase(**fields)


def _one_voxel(image: MedicalImage) -> MedicalImage:
    return image.replace(array=np.zeros((1,) * image.array.ndim, image.array.dtype))
