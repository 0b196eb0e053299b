"""``--overwrite`` without losing the old store: build beside it, swap it in at close.

A rebuild writes into a sibling of the store it replaces, ``.<name>.medimg-build-<id>``
(same folder, so same filesystem: a rename there is atomic), and only a close that
built every case (or, with ``accept_failures``, at least one) swaps it in. Until then
the old store stays whole and readable; a rebuild that fails or is killed leaves it
untouched (a killed one leaves the sibling, which ``--resume`` finishes).

The swap of a Zarr directory is one ``renameat2(RENAME_EXCHANGE)`` on Linux: at every
instant the store's name holds either the whole old store or the whole new one.
Elsewhere (or on a filesystem without it) it is two renames, old -> trash then
new -> store, and between them, for the time of one rename, the name holds nothing:
a reader opening the store right then finds no store (an error, never a mix). The
rebuild is renamed to trash before the swap, so a kill at any point leaves the old
store or the new one under the name and nothing that ``--resume`` would swap back in.
An HDF5 store is one file, replaced by one ``os.replace``. A reader that opened the
old store before the swap and reads after it would read the new store's chunks under
the old metadata: its reads check that the name still holds the folder it opened
(``integrity.check_pinned``) and fail instead.

Object stores (s3://, ...) have no rename at all, so replacing a store there is
refused (``refuse_remote_replace``): delete the old one first, or write to a new prefix.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import uuid
from typing import Any

import fsspec

from ..errors import StoreError
from .contract import StoreWriter
from .journal import BuildLock

BUILD_MARK = ".medimg-build-"  # a rebuild in progress, beside its store
TRASH_MARK = ".medimg-trash-"  # a replaced store on its way out


def rebuild_location(location: str) -> str:
    """A fresh, recognizable sibling of ``location`` to build the replacement in."""
    parent, name = os.path.split(_local_path(location))
    return os.path.join(parent, f".{name}{BUILD_MARK}{uuid.uuid4().hex[:12]}")


def rebuilds_beside(location: str) -> list[str]:
    """The rebuilds that killed ``--overwrite`` builds of ``location`` left beside it,
    oldest first."""
    return _siblings(location, BUILD_MARK)


def remove_leftovers(location: str) -> None:
    """Delete the rebuilds and trash of earlier builds of ``location`` (call holding
    its lock: no live build is using them)."""
    for path in _siblings(location, BUILD_MARK) + _siblings(location, TRASH_MARK):
        _remove(path)


def refuse_remote_replace(location: str) -> None:
    raise StoreError(location, "cannot replace a store on an object store safely (it has "
                     "no atomic rename: readers would see a mix of the two stores)",
                     hint="delete the old store first, or build to a new prefix")


def is_local(location: str) -> bool:
    fs = fsspec.core.url_to_fs(location)[0]
    return isinstance(fs, fsspec.implementations.local.LocalFileSystem)


class Replacing(StoreWriter):
    """A writer that fills ``inner`` (built at a ``rebuild_location``) and, at close,
    swaps it in for the store at ``target``. ``lock`` is the target's build lock, held
    from the start to the end of the swap. The cases are the inner writer's."""

    def __init__(self, inner: StoreWriter, target: str, lock: BuildLock | None,
                 resumable: bool = True) -> None:
        super().__init__(inner.location, inner.n_cases, lock)
        self.inner, self.target, self.resumable = inner, target, resumable
        self.recovered, self.rebuilt = inner.recovered, inner.rebuilt
        self.accept_failures = False  # swap in a store whose failed cases are missing

    def write_case(self, index: int, case):
        return self.inner.write_case(index, case)

    def worker_destination(self, first=None):
        return self.inner.worker_destination(first)

    def cases_in_store(self) -> int:
        return self.inner.cases_in_store()

    def close(self, table, attrs: dict[str, Any] | None = None) -> None:
        try:
            self.inner.close(table, attrs)
            if self._swappable():
                if self.lock is not None and self.lock.inside:
                    # The new store carries the lock in: the name stays locked throughout.
                    BuildLock(self.inner.location).acquire()
                swap_in(self.inner.location, self.target)
            elif self.resumable:
                self.kept_old = (
                    f"the old store at {self.target} is kept: cases failed, so the rebuild "
                    f"stays at {self.inner.location}; fix them and run again with --resume "
                    "to finish and swap it in (or pass --allow-failures to accept a store "
                    "without them)")
            else:
                _remove(self.inner.location)  # nothing can finish it: no space left taken
                self.kept_old = (
                    f"the old store at {self.target} is kept: cases failed, so the rebuild "
                    "was discarded; fix them and rebuild (or pass --allow-failures to "
                    "accept a store without them)")
        finally:
            if self.lock is not None:
                self.lock.release()

    def abort(self) -> None:
        try:
            self.inner.abort()
            if not self.resumable:
                _remove(self.inner.location)  # half a rebuild nothing can finish
        finally:
            if self.lock is not None:
                self.lock.release()

    def _swappable(self) -> bool:
        written = self.inner.cases_in_store()
        every = written == self.inner.n_cases
        return every or (self.accept_failures and written > 0)


def swap_in(new: str, target: str) -> None:
    """Put ``new`` at ``target`` and delete what was there (module docstring)."""
    target = _local_path(target)
    if not os.path.isdir(new) or not os.path.lexists(target):
        os.replace(new, target)  # a file, or nothing to replace: one atomic rename
        return
    parent, name = os.path.split(new)
    # Out of --resume's sight first: after the exchange this name holds the old store,
    # and a kill before it is deleted must leave trash, never a "rebuild" to swap back.
    staged = os.path.join(parent, name.replace(BUILD_MARK, TRASH_MARK))
    os.rename(new, staged)
    if _exchange(staged, target):
        _remove(staged)  # the old store
        return
    old = f"{staged}-old"
    os.rename(target, old)
    try:
        os.rename(staged, target)
    except OSError as error:  # another build took the name in between
        raise StoreError(target, f"could not move the rebuilt store in ({error}); the "
                         f"old store is at {old}, the new one at {staged}",
                         hint="move the one you want back into place by hand") from error
    _remove(old)


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the
    system or the filesystem cannot."""
    rename = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if rename is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if rename(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), b)


def _local_path(location: str) -> str:
    """The real local path of a local ``location`` (a path or a file:// URL). A store
    reached through a symbolic link is rebuilt and swapped where it really is: the
    link keeps pointing at it, and the rebuild is on the store's own filesystem."""
    return os.path.realpath(fsspec.core.url_to_fs(location)[1])


def _siblings(location: str, mark: str) -> list[str]:
    parent, name = os.path.split(_local_path(location))
    try:
        names = os.listdir(parent)
    except FileNotFoundError:
        return []
    found = [os.path.join(parent, n) for n in names if n.startswith(f".{name}{mark}")]
    return sorted(found, key=os.path.getmtime)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)
