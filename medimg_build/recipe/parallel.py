"""Harmonizing the cases of a build, in this process or on Dask workers: each case's
result is the harmonized case (for the build process to write), the case a worker
wrote (``CaseWritten``) or why it failed (``CaseFailed``), never an exception that ends
the build (``build.py`` records them)."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..case import Case
from ..errors import CaseError, MedimgError
from ..limits import OPTION, SETTING
from ..failpoints import worker_failpoint
from ..store.contract import WorkerDestination
from ..store.results import CaseFailed, CaseWritten, template_record
from .case_table import sha256_of
from .pipeline import BuildContext, harmonize_case, recipe_max_voxels
from .sources import CaseSource

IN_FLIGHT_PER_WORKER = 2  # one computing, one queued: workers never idle, memory bounded
# A dead worker of a local cluster is back in seconds: this long without any worker,
# the cluster's workers are gone for good.
WORKERLESS_SECONDS = 60


Result = Case | CaseWritten | CaseFailed
# The writer's ``worker_destination``: called with None, then with the first case's
# template if the destination ``needs_template``.
Destinations = Callable[[dict[str, Any] | None], WorkerDestination | None]


def harmonized(cases: dict[int, CaseSource], context: BuildContext, workers: int,
               scheduler: str | None, destinations: Destinations | None = None
               ) -> Iterator[tuple[int, Result]]:
    """(index, result) of each of ``cases`` (index in the build -> source), in
    completion order.

    With ``destinations`` giving a destination (a Zarr store), Dask workers write
    the cases into the store a unit at a time -- a volumes case, harmonized and written
    by one task; or a stack shard, whose cases are harmonized by tasks of their own on
    any worker, a few small cases to a task (``cases_per_task``: each task costs this
    process CPU), and written by one task -- and send back only CaseWritten records (no
    pixels): compression and writing run on all workers instead of in this process. A
    stack store's arrays are made from its first harmonized case (``_first_template``).

    On Dask, about two harmonizing tasks per worker are in flight at a time, submitted in
    index order a unit at a time, so harmonized cases wait on the workers for at most
    about two units (stack shards) -- memory stays bounded by the largest units, not
    by the dataset.

    A unit whose worker dies (killed for memory, say) is tried once more, alone, after
    the others; if its worker dies again, each of its cases is tried alone (written by
    this process), and a case whose worker dies then is that case's failure: every
    other case is built all the same."""
    if workers <= 1 and scheduler is None:
        for index, source in cases.items():
            yield index, _attempt(index, source, context)
        return
    from distributed import Client, LocalCluster

    from .scheduler import connect

    cluster = None
    if scheduler is None:
        import dask

        # A case whose worker dies fails at once (then gets its second try alone).
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                   processes=True, dashboard_address=None)
    client = connect(scheduler) if scheduler else Client(cluster)
    try:
        yield from _on_dask(client, cases, context, destinations,
                            _WorkerWatch(client, scheduler))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _on_dask(client, cases: dict[int, CaseSource], context: BuildContext,
             destinations: Destinations | None, watch: _WorkerWatch
             ) -> Iterator[tuple[int, Result]]:
    from distributed import as_completed

    window = IN_FLIGHT_PER_WORKER * max(1, len(client.scheduler_info()["workers"]))
    # Tasks holding what every case needs, rather than scattered data: a worker that
    # dies (killed for memory, say) takes scattered data with it for good and every
    # case waiting on it fails, whereas the scheduler recomputes a task.
    plain = client.submit(_shared, context, None, pure=False)  # cases sent back whole
    destination = destinations(None) if destinations is not None else None
    first: dict[int, Any] = {}  # index -> a harmonized case kept on its worker
    settled: set[int] = set()
    if destination is not None and destination.needs_template:
        template = yield from _first_template(client, cases, plain, destination, window,
                                              watch, first, settled)
        destination = None if template is None else destinations(template)
    todo = [index for index in cases if index not in settled]
    units = (destination.units(todo) if destination is not None
             else [[index] for index in todo])
    shared = (plain if destination is None else
              client.submit(_shared, context, destination, pure=False))
    pending = iter(units)
    per_task = destination.cases_per_task if destination is not None else 1
    futures: dict = {}  # future -> its unit (a unit's task), or None (harmonizing)
    completed = as_completed()
    died: list[list[int]] = []
    harmonizing = 0  # tasks harmonizing cases, not finished

    def submit_next() -> bool:
        """Submit the next unit: the task that writes it, and for a unit of several
        cases (a stack shard) tasks that harmonize its cases, ``per_task`` at a time,
        on any worker, so that a shard's cases run on all workers; their pixels go
        from worker to worker, never through this process."""
        nonlocal harmonizing
        unit = next(pending, None)
        if unit is None:
            return False
        todo = [index for index in unit if index not in first] if len(unit) > 1 else []
        groups = []
        for start in range(0, len(todo), per_task):
            group = client.submit(_attempt_group,
                                  {i: cases[i] for i in todo[start:start + per_task]},
                                  plain, pure=False)
            groups.append(group)
            futures[group] = None
            completed.add(group)
            harmonizing += 1
        future = client.submit(_unit, {i: cases[i] for i in unit}, shared,
                               {i: first.pop(i) for i in unit if i in first}, groups,
                               pure=False)
        futures[future] = unit
        completed.add(future)
        harmonizing += len(unit) == 1  # it harmonizes its case itself
        return True

    while harmonizing < window and submit_next():
        pass
    for future in _while_workers_remain(completed, watch):
        unit = futures.pop(future)
        if unit is None:  # cases harmonized; they wait on their worker for their unit's task
            harmonizing -= 1
            future.release()
        else:
            results = _outcome(future, watch)
            future.release()
            harmonizing -= len(unit) == 1
            if results is None:
                died.append(unit)
            else:
                yield from results
        while harmonizing < window and submit_next():
            pass
    yield from _second_tries(client, died, cases, context, destination, shared, plain,
                             watch)


def _second_tries(client, died: list[list[int]], cases: dict[int, CaseSource],
                  context: BuildContext, destination, shared, plain, watch: _WorkerWatch
                  ) -> Iterator[tuple[int, Result]]:
    """A worker killed by one case kills the tasks queued beside it too: each unit
    whose worker died gets a second try, alone; then each of its cases alone, written
    by the build process, so that only the culprit fails."""
    for unit in died:
        shared = _alive(client, shared, context, destination)
        future = client.submit(_unit, {i: cases[i] for i in unit}, shared, {}, [],
                               pure=False)
        results = _outcome(future, watch)
        future.release()
        if results is not None:
            yield from results
            continue
        for index in unit:
            if len(unit) == 1:  # that was this case's second try
                yield index, _died(index, cases[index])
                continue
            plain = _alive(client, plain, context, None)
            future = client.submit(_attempt_shared, index, cases[index], plain, pure=False)
            yield index, _outcome(future, watch) or _died(index, cases[index])
            future.release()


def _first_template(client, cases: dict[int, CaseSource], plain, destination, window: int,
                    watch: _WorkerWatch, first: dict[int, Any], settled: set[int]):
    """Harmonize the first cases, a window at a time, until one succeeds and the
    ``destination`` does not refuse it; yield the failures and refusals before it
    (their indices ``settled``); return the template of that case (None if none was).
    The harmonized cases stay on their workers (``first``) for the tasks of their
    shards: no case is harmonized twice, and the only wait is for the first case (the
    pipeline's fill)."""
    pending = iter(cases.items())
    while batch := list(itertools.islice(pending, window)):
        for index, source in batch:
            first[index] = client.submit(_attempt_shared, index, source, plain, pure=False)
        for index, _ in batch:
            probe = client.submit(_template_or_failure, index, first[index], destination,
                                  pure=False)
            outcome = _outcome(probe, watch)
            probe.release()
            if isinstance(outcome, dict):
                return outcome
            first.pop(index).release()
            if outcome is not None:  # None: its worker died; its shard's task retries it
                settled.add(index)
                yield index, outcome
    return None


def _template_or_failure(index: int, result: Result, destination
                         ) -> dict[str, Any] | CaseFailed:
    """The case's template, or why it failed or the store refuses it: as one process
    does, a refused first case does not make the arrays (a mask the others lack)."""
    if not isinstance(result, Case):
        return result
    return destination.refusal(index, result) or template_record(result)


def _alive(client, shared, context: BuildContext, destination):
    """``shared`` again if it was lost with a dead worker (recomputed there)."""
    if shared.status == "error":
        return client.submit(_shared, context, destination, pure=False)
    return shared


def _unit(sources: dict[int, CaseSource], shared: tuple[BuildContext, Any],
          first: dict[int, Result], groups: list[dict[int, Result]]
          ) -> list[tuple[int, Result]]:
    """On a worker: harmonize the cases of one unit (those in ``first`` and ``groups``
    were, by tasks of their own), then write them into the store when this worker
    reaches it (else they go back whole, for the build process to write)."""
    context, destination = shared
    done = dict(first)
    for group in groups:
        done.update(group)
    results = {index: done[index] if index in done else _attempt(index, source, context)
               for index, source in sources.items()}
    if destination is not None and destination.reachable():
        results.update(destination.write_cases(
            {index: case for index, case in results.items() if isinstance(case, Case)}))
    return sorted(results.items())


class _WorkerWatch:
    """Ends a build whose cluster has had no worker for WORKERLESS_SECONDS. A local
    cluster restarts a dead worker; the workers of a running scheduler may never come
    back (a batch job that ended, a worker run without a nanny), and the build would
    wait for them forever."""

    def __init__(self, client, scheduler: str | None) -> None:
        self.client, self.scheduler = client, scheduler
        self.alone_since: float | None = None

    def check(self) -> None:
        from .scheduler import SchedulerError

        if self.client.scheduler_info().get("workers"):
            self.alone_since = None
        elif self.alone_since is None:
            self.alone_since = time.monotonic()
        elif time.monotonic() - self.alone_since > WORKERLESS_SECONDS:
            raise SchedulerError(self.scheduler or "the local Dask cluster",
                                 f"every worker is gone, and none joined within "
                                 f"{WORKERLESS_SECONDS} s",
                                 hint="start workers (`dask worker ADDRESS`), then run "
                                      "the build again with --resume")


def _while_workers_remain(completed, watch: _WorkerWatch) -> Iterator:
    """The futures of ``completed`` as they finish, as iterating it gives them, while
    ``watch`` finds workers."""
    while not completed.is_empty():
        if completed.has_ready():
            yield next(completed)
            continue
        watch.check()
        with completed.thread_condition:  # notified at each completion, as its own
            completed.thread_condition.wait(timeout=0.1)  # iteration waits


def _shared(context: BuildContext, destination) -> tuple[BuildContext, Any]:
    return context, destination


def _attempt_shared(index: int, source: CaseSource, shared: tuple[BuildContext, Any]
                    ) -> Result:
    """``_attempt`` on a worker, given the value of a ``_shared`` task: harmonizing
    needs its context only, whichever destination the task holds."""
    return _attempt(index, source, shared[0])


def _attempt_group(sources: dict[int, CaseSource], shared: tuple[BuildContext, Any]
                   ) -> dict[int, Result]:
    """``_attempt_shared`` of several cases, in one task (``cases_per_task``)."""
    return {index: _attempt(index, source, shared[0]) for index, source in sources.items()}


def _outcome(future, watch: _WorkerWatch) -> Result | None:
    """The case's result, or None when the worker running it died (the scheduler
    gives up on a case after it saw ``distributed.scheduler.allowed-failures`` + 1
    workers die under it). A finished result lost with its worker is computed again,
    so this waits, while ``watch`` finds workers."""
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError

    while True:
        try:
            return future.result(timeout=1)
        except TimeoutError:
            watch.check()
        except (KilledWorker, FutureCancelledError):
            return None


def _died(index: int, source: CaseSource) -> CaseFailed:
    return CaseFailed(index, source.case_id, CaseError(
        source.image_path, "the Dask worker building this case died twice (killed for "
        f"memory, say): give the workers more memory, lower the size limit ({OPTION} N) "
        "so that such cases are refused before they allocate, or leave it out"))


def _attempt(index: int, source: CaseSource, context: BuildContext) -> Case | CaseFailed:
    """The harmonized case or why it failed."""
    _share_cores_with_other_workers()
    if _on_a_worker():
        worker_failpoint(source.case_id)
    try:
        return _harmonize(source, context)
    except MedimgError as error:
        return CaseFailed(index, source.case_id, error)


def _harmonize(source: CaseSource, context: BuildContext) -> Case:
    """The harmonized case; any error it meets as a MedimgError."""
    try:
        case = harmonize_case(source, context)
        case.sources = source_digests(case, context.source_dir)
        return case
    except MedimgError:
        raise
    except Exception as error:  # a bug or an unforeseen file: report it, keep building
        if _out_of_memory(error):
            raise _ran_out_of_memory(source, context) from error
        # A library's text may quote the input: one printable line, cut (MedimgError).
        raise CaseError(source.image_path,
                        f"unexpected {type(error).__name__}: {error}") from error


# What ITK says when an image buffer cannot be allocated (itkImportImageContainer.hxx);
# it reaches Python as a RuntimeError, not a MemoryError.
_ITK_ALLOCATION_FAILED = "Failed to allocate memory"


def _out_of_memory(error: Exception) -> bool:
    return isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError) and _ITK_ALLOCATION_FAILED in str(error))


def _ran_out_of_memory(source: CaseSource, context: BuildContext) -> CaseError:
    """A case past this worker's memory but within the size limit (raised, or the
    default on a small machine): one line saying what to do, not the allocation message
    of whichever library failed (numpy, ITK)."""
    limit = recipe_max_voxels(context.recipe)
    return CaseError(source.image_path, (
        f"ran out of memory harmonizing this case, within the size limit of {limit:,} "
        f"values (give each worker more memory -- fewer --workers -- or lower the limit "
        f"with {OPTION} N or the recipe's {SETTING} so that such cases are refused before "
        "they allocate)"))


def source_digests(case: Case, source_dir: Path) -> dict[str, str]:
    """Each source file the case was read from, relative to ``source_dir``, -> its
    sha256 (the row's ``source_sha256``, in the same order as the files, when the
    counts agree). Files outside ``source_dir`` (a symbolic link out of it) cannot be
    named relative to it and are left out."""
    files = [Path(f) for image in (case.image, case.mask) if image is not None
             for f in image.meta.get("source_files", [])]
    digests = case.row.get("source_sha256") or []
    if len(digests) != len(files):
        digests = [sha256_of(f) for f in files]
    root = source_dir.resolve()
    found = {}
    for path, digest in zip(files, digests):
        try:
            found[path.resolve().relative_to(root).as_posix()] = digest
        except ValueError:
            continue
    return found


def _worker_threads() -> int | None:
    """The threads of the Dask worker running this, or None in the build's own process.
    A worker process has imported distributed; the build process of an in-process build
    has not, and importing it only to ask would cost that build a second of start-up."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_worker

    try:
        return get_worker().state.nthreads
    except (ValueError, AttributeError):
        return None


def _on_a_worker() -> bool:
    return _worker_threads() is not None


def _share_cores_with_other_workers() -> None:
    """On a Dask worker, ITK gets the worker's threads, not every core of the node:
    several workers each running ITK on all cores only fight for them."""
    threads = _worker_threads()
    if threads is None:
        return  # not on a worker: this process may use every core
    import SimpleITK as sitk

    if sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() != threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
