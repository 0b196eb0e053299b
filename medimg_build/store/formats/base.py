"""``StoreFormat``, the interface every storage format implements, and the registry
whose ``pick_format`` is the one place that chooses a format for a location.

Modelled on xarray's ``BackendEntrypoint.guess_can_open`` with ``plugins.guess_engine``
(ask each registered format in turn), zarr-python's ``Store`` ABC (the members are
abstract, so a format that forgets one cannot be instantiated) and TorchIO's
``register_backend`` (a format is added by registering it, not by editing callers).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

from ...errors import StoreError


class StoreFormat(ABC):
    """One storage format of the medimg schema: how a location is recognized, opened,
    made room for, described and checksummed. The layout writers and readers are the
    same for every format; they talk to the group ``open`` yields, and a writer asks
    its format what differs while writing (``writing_case``, ``array_info``,
    ``finish``, ``writes_from_workers``)."""

    name: ClassVar[str]  # what --format names it ("zarr", "hdf5")
    title: ClassVar[str]  # what a message calls it ("Zarr", "HDF5")
    suffixes: ClassVar[tuple[str, ...]] = ()  # a new store with these is of this format
    resumable: ClassVar[bool]  # whether a killed build continues with --resume
    # Whether Dask workers may write volumes cases into the store themselves
    # (``volumes.CaseDestination``), or only the build process writes.
    writes_from_workers: ClassVar[bool]

    def claims_name(self, location: str) -> bool:
        """Whether a store to be written at ``location`` is of this format by its name."""
        return bool(self.suffixes) and location.lower().rstrip("/").endswith(self.suffixes)

    @abstractmethod
    def guess_can_open(self, location: str, storage_options: dict | None = None) -> bool:
        """Whether the existing ``location`` is of this format (by its content where
        that is cheap and certain, as a file signature)."""

    @abstractmethod
    def open(self, location: str, mode: str = "r", storage_options: dict | None = None
             ) -> AbstractContextManager[Any]:
        """The root group as it is on disk, closed on exit, in the group API that
        writers, readers, validate and the manifest use (``zarr.Group``'s). Mode "r"
        only: a writer's root group is opened by ``create_writer``, which keeps it open
        until the writer closes."""

    @abstractmethod
    def open_reader(self, location: str, storage_options: dict | None = None):
        """The ``MedimgStore`` of the finished store at ``location``; ``NotThisFormat``
        when it is not of this format at all (``reader.NotThisFormat``)."""

    @abstractmethod
    def create_writer(self, location: str, new, overwrite: bool, journal: dict | None):
        """A new store at ``location`` and its writer; ``new`` is ``writer.NewStore``
        (layout, size, attributes, options), already checked."""

    @abstractmethod
    def make_room(self, location: str, overwrite: bool) -> bool:
        """Whether there is a store of this format at ``location`` to replace; a
        StoreError for anything there that ``overwrite`` must not delete."""

    @abstractmethod
    def array_info(self, array) -> dict[str, Any]:
        """What the root attributes record about one stored array."""

    @contextmanager
    def writing_case(self, root) -> Iterator[None]:
        """Around a writer's write of one case into ``root`` (a no-op unless the
        format needs one)."""
        yield

    def keep_case_table(self, root, table: Callable[[], Any]) -> None:
        """Keep the case table as a file readers without this format's library read
        (``table()``: the pyarrow Table, made only when asked), in a writer's ``close``
        before ``finish`` (the content manifest covers it). A no-op unless the format
        needs one: every HDF5 library reads an HDF5 file's columns, its text included."""

    @abstractmethod
    def finish(self, root) -> None:
        """The last step of a writer's ``close``, after the root attributes: the
        content manifest and whatever the format does to a finished store."""

    @abstractmethod
    def manifest_objects(self, root) -> dict[str, str]:
        """key -> sha256 of every object the content manifest lists for ``root``."""

    @abstractmethod
    def verify(self, location: str, storage_options: dict | None = None) -> list:
        """The ``manifest.Mismatch`` list of the store at ``location`` ([] if intact)."""

    @abstractmethod
    def manifest_summary(self, location: str, storage_options: dict | None = None
                         ) -> dict[str, Any]:
        """The root attributes' record of the manifest (after ``verify`` found nothing)."""

    @abstractmethod
    def snapshot(self, location: str, out: str, storage_options: dict | None = None) -> int:
        """Pack the store into the zip ``out``; the number of entries (or a
        ManifestError where the format has no snapshot)."""

    def refuse_resume(self, location: str) -> None:
        """A StoreError if a build of this format cannot be resumed (``resumable``)."""
        if not self.resumable:
            raise StoreError(location, f"--resume does not work on {self.title} stores",
                             hint="rebuild with --overwrite")

    def again_after_fault(self) -> str:
        """How a build of this format goes on once a fault (a full disk) is fixed."""
        if self.resumable:
            return ", then run the same command with --resume"
        return (", then run the same command with --overwrite "
                f"({self.title} builds do not resume)")


_FORMATS: list[StoreFormat] = []
_DEFAULT: list[StoreFormat] = []  # the format of a location no other format claims


def register_format(store_format: StoreFormat, default: bool = False) -> StoreFormat:
    """Add ``store_format`` to those ``pick_format`` chooses from; the ``default``
    format (Zarr) is asked last and takes whatever no other format claims. A format
    that leaves one of the class settings unset is refused here, at import, rather
    than by an AttributeError in the middle of a build."""
    unset = [name for name in ("name", "title", "resumable", "writes_from_workers")
             if not hasattr(store_format, name)]
    if unset:
        raise TypeError(f"{type(store_format).__name__} does not set {', '.join(unset)}")
    if any(f.name == store_format.name for f in _FORMATS):
        raise ValueError(f"a store format named {store_format.name!r} is registered")
    _FORMATS.append(store_format)
    if default:
        _DEFAULT[:] = [store_format]
    return store_format


def format_names() -> tuple[str, ...]:
    return tuple(f.name for f in _FORMATS)


def _in_order() -> Iterator[StoreFormat]:
    yield from (f for f in _FORMATS if f not in _DEFAULT)
    yield from _DEFAULT


def pick_format(location: str | os.PathLike, requested: str | None = None,
                storage_options: dict | None = None, *, writing: bool = False,
                probe_urls: bool = True) -> StoreFormat:
    """The format of the store at ``location``: the ``requested`` one (by name) if
    given; else, for a store to be written, the first format that claims its name
    (``.h5``/``.hdf5``: HDF5); else, for a store to be read, the first registered
    format whose ``guess_can_open`` says yes (HDF5 by its signature), the default
    (Zarr) last. ``probe_urls=False``: a URL is the default format's without asking
    the others, each of whose guesses costs requests a Zarr store never needs (the
    reader asks again only if Zarr cannot open it)."""
    location = os.fspath(location)
    if requested is not None:
        for store_format in _FORMATS:
            if store_format.name == requested:
                return store_format
        raise StoreError(location, f"unknown store format {requested!r}",
                         hint=f"use one of {', '.join(format_names())}")
    if writing:
        return next((f for f in _in_order() if f.claims_name(location)), _DEFAULT[0])
    if not probe_urls and "://" in location:
        return _DEFAULT[0]
    return next((f for f in _in_order() if f.guess_can_open(location, storage_options)),
                _DEFAULT[0])
