"""The store layouts as classes: ``StackLayout`` (every case in one array along
``case``) and ``VolumesLayout`` (one group per case), found by name with
``layout_named``. A layout holds what differs between them -- its writer, its reads,
its validation, the options it takes, and whether its cases share one array -- so no
caller compares layout names. A layout takes a format: ``layout.writer(store_format,
...)`` and ``layout.reads(format_reads, ...)`` serve Zarr and HDF5 alike (nibabel's
image classes and TorchIO's backends are the models: one class per kind, asked, not
switched on).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..errors import StoreError
from .base import BaseWriter
from .layout_checks import check_stack, check_volumes
from .layout_reads import FormatReads, StackReads, VolumesReads
from .schema import LAYOUTS
from .stack import StackWriter
from .volumes import VolumesWriter


class Layout(ABC):
    name: ClassVar[str]  # as the recipe's store.layout and the root attrs name it
    # Whether all cases share one array (the stack): then every case must have the
    # first case's shape, channels and dtype, and a mask for all cases or for none.
    cases_share_arrays: ClassVar[bool]
    writer_class: ClassVar[type[BaseWriter]]
    reads_class: ClassVar[type]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def writer(self, store_format, root, location: str, n_cases: int,
               attrs: dict[str, Any], compressor, options: dict[str, Any]) -> BaseWriter:
        """The writer that fills the new (or reopened) store whose root group is
        ``root``, in ``store_format`` (a ``formats.StoreFormat``); ``options`` from
        ``self.options``."""
        return self.writer_class(self, store_format, root, location, n_cases, attrs,
                                 compressor, **options)

    def reads(self, format_reads: FormatReads, store, root, attrs: dict[str, Any]):
        """What ``MedimgStore`` reads this layout's cases with."""
        return self.reads_class(format_reads, store, root, attrs)

    @abstractmethod
    def options(self, location: str, cases_per_shard: int | None, pyramid_levels: int
                ) -> dict[str, Any]:
        """The writer options of this layout (keyword arguments of its writer class);
        a StoreError for an option given that this layout cannot honour."""

    @abstractmethod
    def check(self, checker, ids: list[str]) -> np.ndarray:
        """``validate_store``'s checks of this layout's arrays, reported to ``checker``
        (its ``validate._Checker``); the complete flags."""


class StackLayout(Layout):
    name, cases_share_arrays = "stack", True
    writer_class, reads_class = StackWriter, StackReads

    def options(self, location: str, cases_per_shard: int | None, pyramid_levels: int
                ) -> dict[str, Any]:
        if pyramid_levels > 1:
            raise StoreError(location, "a multiscale pyramid needs the volumes layout (a "
                             "stack is one array of many cases, not an OME-NGFF image)",
                             hint="drop --pyramid, or build with --set layout=volumes")
        return {"cases_per_shard": cases_per_shard}

    def check(self, checker, ids: list[str]) -> np.ndarray:
        return check_stack(checker, ids)


class VolumesLayout(Layout):
    name, cases_share_arrays = "volumes", False
    writer_class, reads_class = VolumesWriter, VolumesReads

    def options(self, location: str, cases_per_shard: int | None, pyramid_levels: int
                ) -> dict[str, Any]:
        return {"pyramid_levels": pyramid_levels}

    def check(self, checker, ids: list[str]) -> np.ndarray:
        return check_volumes(checker, ids)


_BY_NAME: dict[str, Layout] = {layout.name: layout for layout in (StackLayout(),
                                                                   VolumesLayout())}
assert tuple(_BY_NAME) == LAYOUTS  # the schema's names (schema.py), one class each


def layout_named(name: str, location: str | None = None) -> Layout:
    """The layout called ``name``; a StoreError naming ``location`` for any other."""
    if name not in LAYOUTS:  # a tuple: an unhashable name is refused too
        raise StoreError(location, f"unknown store layout {name!r}",
                         hint=f"use one of {', '.join(LAYOUTS)}")
    return _BY_NAME[name]
