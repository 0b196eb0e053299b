"""Harmonizing the cases of a build, in this process or on Dask workers: each case's
result is the harmonized case (for the build process to write), the case a worker
wrote (``CaseWritten``) or why it failed (``CaseFailed``), never an exception that ends
the build (``build.py`` records them)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..case import Case
from ..errors import CaseError, MedimgError
from ..limits import OPTION, SETTING
from ..failpoints import worker_failpoint
from ..store.results import CaseFailed, CaseWritten
from ..store.volumes import CaseDestination
from .case_table import sha256_of
from .pipeline import BuildContext, harmonize_case, recipe_max_voxels
from .sources import CaseSource

IN_FLIGHT_PER_WORKER = 2  # one computing, one queued: workers never idle, memory bounded
# A dead worker of a local cluster is back in seconds: this long without any worker,
# the cluster's workers are gone for good.
WORKERLESS_SECONDS = 60


Result = Case | CaseWritten | CaseFailed


def harmonized(cases: dict[int, CaseSource], context: BuildContext, workers: int,
               scheduler: str | None, destination: CaseDestination | None = None
               ) -> Iterator[tuple[int, Result]]:
    """(index, result) of each of ``cases`` (index in the build -> source), in
    completion order.

    With a ``destination`` (a volumes store, ``volumes.CaseDestination``), each Dask
    worker writes its cases into the store and sends back only a CaseWritten (no
    pixels): compression and writing run on all workers instead of in this process.

    On Dask, at most a few cases per worker are in flight, submitted in index order: a
    worker holds a few cases at a time, and the stack writer, which writes whole shards
    only, never waits on more than a window of partial shards -- memory stays bounded
    by the largest cases, not by the dataset.

    A case whose worker dies (killed for memory, say) is tried once more, alone, after
    the others; if its worker dies again, that is the case's failure, and every other
    case is built all the same."""
    if workers <= 1 and scheduler is None:
        for index, source in cases.items():
            yield index, _attempt(index, source, context)
        return
    from distributed import Client, LocalCluster, as_completed

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
        window = IN_FLIGHT_PER_WORKER * max(1, len(client.scheduler_info()["workers"]))
        # A task holding what every case needs, rather than scattered data: a worker
        # that dies (killed for memory, say) takes scattered data with it for good and
        # every case waiting on it fails, whereas the scheduler recomputes a task.
        shared = client.submit(_shared, context, destination, pure=False)
        pending = iter(cases.items())
        futures: dict = {}
        completed = as_completed()
        died: list[int] = []

        def submit(index: int, source: CaseSource) -> None:
            future = client.submit(_attempt_shared, index, source, shared, pure=False)
            futures[future] = index
            completed.add(future)

        for index, source in itertools.islice(pending, window):
            submit(index, source)
        watch = _WorkerWatch(client, scheduler)
        for future in _while_workers_remain(completed, watch):
            index = futures.pop(future)
            result = _outcome(future, watch)
            future.release()
            if result is None:
                died.append(index)
            else:
                yield index, result
            for index, source in itertools.islice(pending, 1):
                submit(index, source)
        # A worker killed by one case kills the cases queued beside it too: each case
        # whose worker died gets a second try, alone, so only the culprit fails.
        if died and shared.status == "error":  # it was being recomputed on that worker
            shared = client.submit(_shared, context, destination, pure=False)
        for index in died:
            future = client.submit(_attempt_shared, index, cases[index], shared, pure=False)
            yield index, _outcome(future, watch) or _died(index, cases[index])
            future.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


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
    return _attempt(index, source, *shared)


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


def _attempt(index: int, source: CaseSource, context: BuildContext,
             destination: CaseDestination | None = None) -> Result:
    """The harmonized case or why it failed; with a ``destination`` this process can
    reach, the case is written there and comes back as a CaseWritten. Errors of the
    write other than the store refusing the case end the build, as in the build
    process (a full disk is not one case's problem)."""
    _share_cores_with_other_workers()
    if _on_a_worker():
        worker_failpoint(source.case_id)
    try:
        case = _harmonize(source, context)
        if destination is not None and destination.reachable():
            return destination.write(index, case)
        return case
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


def _on_a_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def _share_cores_with_other_workers() -> None:
    """On a Dask worker, ITK gets the worker's threads, not every core of the node:
    several workers each running ITK on all cores only fight for them."""
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        return  # not on a worker: this process may use every core
    import SimpleITK as sitk

    if sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() != threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
