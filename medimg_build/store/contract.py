"""The writer contract: what ``create_store`` and ``reopen_store`` return and what
``build_store`` calls, whatever the layout, the format, or whether the store is being
replaced (``replace.Replacing``) or is already finished (``writer.FinishedStore``).

An abstract base class rather than a Protocol: the writers share the attributes set
here, and a writer that forgets a method fails when it is made, not mid-build.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import fsspec

from ..errors import MedimgError
from .results import CaseFailed

if TYPE_CHECKING:
    import pandas as pd

    from ..case import Case
    from .journal import BuildLock
    from .results import CaseWritten

T = TypeVar("T")


def opened_by_workers(location: str) -> str:
    """The store's location as workers must open it, computed in the build process: a
    relative path names the build's folder, and a worker started in another folder
    would open (or find no store, or another store) under its own. URLs stay as given."""
    return location if "://" in location else os.path.abspath(location)


@dataclass(frozen=True)
class WorkerLocation:
    """The store's location as the build names it (``location``, in refusals) and as
    workers open it (``opened_at``: ``opened_by_workers``), shared by the worker
    destinations."""

    location: str
    opened_at: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "opened_at", opened_by_workers(self.location))

    def sees(self, member: str) -> bool:
        """Whether this process sees ``member`` (an object's path in the store): a
        worker on another host without the shared filesystem does not, and sends its
        cases back for the build process to write."""
        fs, path = fsspec.core.url_to_fs(self.opened_at)
        return fs.exists(f"{path.rstrip('/')}/{member}")


def each_or_failure(cases: dict[int, Case], attempt: Callable[[int, Case], T]
                    ) -> dict[int, T | CaseFailed]:
    """``attempt(index, case)`` of each case, in index order, or why the store refuses
    that case (a ``MedimgError`` it raised): one refused case never stops the others."""
    results: dict[int, T | CaseFailed] = {}
    for index, case in sorted(cases.items()):
        try:
            results[index] = attempt(index, case)
        except MedimgError as error:
            results[index] = CaseFailed(index, case.case_id, error)
    return results


class WorkerDestination(Protocol):
    """Where Dask workers write cases themselves (``volumes.CaseDestination``, one case
    group per task; ``stack_shards.ShardDestination``, one shard per task): picklable,
    sent to each worker once.

    ``needs_template``: the store has no arrays yet (a stack store makes them from its
    first case): ask the writer again with a harmonized case's template
    (``StoreWriter.worker_destination(first)``) before any worker writes.

    ``cases_per_task``: how many cases of a unit one harmonizing task takes, when a
    unit's cases are harmonized by tasks of their own (units of several cases)."""

    needs_template: bool
    cases_per_task: int

    def reachable(self) -> bool:
        """Whether this process sees the store (else the cases go back to the build
        process to write)."""

    def units(self, indices: list[int]) -> list[list[int]]:
        """``indices`` (ascending) grouped as one worker task writes them, in order."""

    def write_cases(self, cases: dict[int, Case]) -> dict[int, CaseWritten | CaseFailed]:
        """Write the harmonized ``cases`` of one unit (index in the store -> case); for
        each, what the writer then records (``StoreWriter.write_case``) or why the store
        refuses it."""


class StoreWriter(ABC):
    """Fills one store: ``write_case`` for each case not ``recovered``, then ``close``
    -- or ``abort`` on an error exit.

    ``location``: where the cases are written (a rebuild's own location while a store
    is being replaced). ``lock``: the build lock held until ``close`` or ``abort``, or
    None for a build that takes none. ``recovered``: index -> the cases a resumed store
    already holds complete (empty for a new store). ``rebuilt``: case id -> why a
    resume found the case stale and builds it again. ``kept_old``: after ``close``, why
    an old store was kept rather than replaced, or None."""

    def __init__(self, location: str, n_cases: int, lock: BuildLock | None = None) -> None:
        self.location = location
        self.n_cases = n_cases
        self.lock = lock
        self.recovered: dict[int, CaseWritten] = {}
        self.rebuilt: dict[str, str] = {}
        self.kept_old: str | None = None

    @abstractmethod
    def write_case(self, index: int, case: Case | CaseWritten) -> CaseWritten:
        """Write the case at ``index`` and say what was written; a ``CaseWritten`` is a
        case a worker wrote already through ``worker_destination``: it is recorded
        only (or its pixels deleted, if the store refuses it). Raises ``StoreError``
        (or another ``MedimgError``) when the store refuses the case; the index is
        then free again."""

    @abstractmethod
    def worker_destination(self, first: dict[str, Any] | None = None
                           ) -> WorkerDestination | None:
        """Where Dask workers may write cases themselves, or None: this writer's
        cases are written by the build process only. ``first``: the template
        (``results.template_record``) of the case that makes a stack store's arrays,
        when the destination said it ``needs_template``; the arrays are made then."""

    @abstractmethod
    def cases_in_store(self) -> int:
        """How many cases are written or recovered so far."""

    @abstractmethod
    def close(self, table: pd.DataFrame, attrs: dict[str, Any] | None = None) -> None:
        """Finish the store: write ``table`` (the case table, one row per case) and
        ``attrs`` as the root ``medimg`` attribute -- the final one, e.g. with the build
        report; None keeps the attributes the store was created with. Releases the
        lock."""

    @abstractmethod
    def abort(self) -> None:
        """An error exit: release the lock; the store stays unfinished (resumable)."""
