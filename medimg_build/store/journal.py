"""The build lock and the build journal: what makes a Zarr build resumable.

Both live inside the store directory but outside the Zarr hierarchy (Zarr ignores
files it does not recognize), so they never show up as arrays:

``.medimg-build.lock`` -- JSON {host, pid, pid_start, since, command}, created with
O_EXCL when a build creates or reopens the store and removed at close or on an error
exit. An HDF5 store is one file, so its lock is the file beside it,
``<file>.medimg-build.lock`` (``BuildLock.beside``). A second build that finds it
fails naming the holder; a lock of a process that is dead on this host (pid gone, or
reused by another process: ``pid_start`` differs) is stale and taken over. On an
fsspec URL the lock is best-effort: exists-then-write is not atomic on object stores,
and a holder on another host cannot be checked, so only its owner (or a person)
removes it. A rebuild (``replace.py``) holds the lock of the store it replaces.

``.medimg-build/`` -- the journal: ``cases.json`` (recipe hash and the ordered case
ids, to refuse resuming with other inputs) and ``journal/<unit>.json``, one per write
unit (a stack shard, a volumes case), holding for each case its table row, labels,
boxes, landmarks and the image template. A unit's record is written before the unit's
completion marker, so every complete case has its record: a resumed build recovers
the case's row, labels and annotations without harmonizing it again. Close removes
the journal when every case is complete; a store with failed cases keeps it so that
``--resume`` can retry them later.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from datetime import datetime, timezone
from typing import Any

import fsspec
import fsspec.implementations.local
import numpy as np

from ..errors import StoreError
from ..labels.boxes_landmarks import Boxes, Landmarks
from ..provenance import to_jsonable

LOCK_NAME = ".medimg-build.lock"
JOURNAL_DIR = ".medimg-build"
# A killed zarr LocalStore write leaves its temporary file: ``<key>.<uuid4 hex>.partial``.
PARTIAL_WRITE = re.compile(r"\.[0-9a-f]{32}\.partial$")


def remove_partial_writes(location: str) -> list[str]:
    """Delete the temporary files that writes killed midway left in a local store (a
    resumed build would otherwise list them in its manifest); the paths removed."""
    fs, root = fsspec.core.url_to_fs(location)
    if not isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        return []  # object stores write whole objects: nothing is left half-written
    leftovers = [path for path in fs.find(root) if PARTIAL_WRITE.search(path)]
    for path in leftovers:
        fs.rm(path)
    return leftovers


def _pid_start(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, pid_start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return pid_start is None or _pid_start(pid) in (None, pid_start)


# Their values must never be written: the pseudonym key, and the source folder, whose
# name may be its patient's ("--source Smith_John_MRN555") -- a killed build leaves the
# lock in the store.
SECRET_OPTIONS = ("--key", "--source")


def _without_secrets(argv: list[str]) -> list[str]:
    """``argv`` with the value of every option in SECRET_OPTIONS replaced by '***':
    the lock (and the error naming its holder) shows the command, never the key or
    the source folder."""
    shown, hide_next = [], False
    for arg in argv:
        option, equals, _ = arg.partition("=")
        if hide_next:
            shown.append("***")
        elif equals and _secret(option):
            shown.append(f"{option}=***")
        else:
            shown.append(arg)
        hide_next = not hide_next and _secret(arg)
    return shown


def _secret(option: str) -> bool:
    """Whether ``option`` names a secret one, abbreviated too (argparse takes '--ke')."""
    return len(option) > 2 and option.startswith("--") and any(
        name.startswith(option) for name in SECRET_OPTIONS)


class BuildLock:
    """``<store>/.medimg-build.lock``; ``taken_over`` describes a stale lock replaced.
    ``inside`` is True when the lock file lies in the store directory (so it moves
    with the directory when a rebuilt store is swapped in)."""

    def __init__(self, location: str, path: str | None = None) -> None:
        self.location = location
        self.fs, root = fsspec.core.url_to_fs(location)
        self.inside = path is None
        self.path = f"{root.rstrip('/')}/{LOCK_NAME}" if path is None else path
        self.local = "://" not in location or location.startswith("file://")
        self.taken_over: str | None = None
        self.seen: bytes | None = None  # the lock file as ``holder`` last read it

    @classmethod
    def beside(cls, location: str) -> BuildLock:
        """The lock of a store that is one file (HDF5): ``<file>.medimg-build.lock``."""
        return cls(location, path=f"{fsspec.core.url_to_fs(location)[1]}.medimg-build.lock")

    def holder(self) -> dict[str, Any] | None:
        """The lock's content when a live build holds it, else None (absent or stale)."""
        self.seen = None
        try:
            self.seen = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        except NotADirectoryError:  # a file where the store directory would be
            raise StoreError(self.location, "is a file, not a Zarr store (a directory)",
                             hint="choose another --out, or --format hdf5 for an HDF5 "
                                  "store") from None
        try:
            info = json.loads(self.seen)
        except ValueError:
            # Killed between creating and filling it, or being filled right now.
            age = time.time() - self.fs.modified(self.path).timestamp()
            return None if age > 10 else {"host": "?", "pid": "?", "since": "just now"}
        if self.local and info.get("host") == socket.gethostname() and isinstance(
                info.get("pid"), int) and not _alive(info["pid"], info.get("pid_start")):
            return None
        return info

    def check(self) -> None:
        """Fail if a live build holds the lock (before touching an existing store)."""
        info = self.holder()
        if info is not None:
            raise StoreError(self.location, f"another build holds its lock: host "
                             f"{info.get('host')} pid {info.get('pid')} since "
                             f"{info.get('since')} ({info.get('command', '?')})",
                             hint=f"wait for it to end; if it is gone, delete {self.path}")

    def note_stale(self) -> None:
        """Remember whose stale lock is there (call after ``check``), for the report."""
        if self.taken_over is None and self.fs.exists(self.path):
            try:
                old = json.loads(self.fs.cat_file(self.path))
                self.taken_over = (f"took over the stale lock of host {old.get('host')} "
                                   f"pid {old.get('pid')} since {old.get('since')}")
            except ValueError:
                self.taken_over = "took over an unreadable stale lock"

    def acquire(self) -> None:
        self.check()
        self.note_stale()
        self._remove_stale(self.seen)
        info = {"host": socket.gethostname(), "pid": os.getpid(),
                "pid_start": _pid_start(os.getpid()),
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(_without_secrets(sys.argv))[:300]}
        data = json.dumps(info).encode()
        if not self.local:
            self.fs.pipe_file(self.path, data)  # best-effort (see the module docstring)
            return
        self.fs.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:  # O_EXCL: of two builds racing here, exactly one creates the file
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self.check()
            raise StoreError(self.location, "another build took the lock just now",
                             hint=f"wait for it to end; if it is gone, delete {self.path}")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    def _remove_stale(self, stale: bytes | None) -> None:
        """Delete the lock ``check`` read and found stale (``stale``, its bytes) --
        only that one: of two builds that both found it stale, the slower must not
        delete the lock the faster has just taken (both would then hold it). Locally
        the lock is moved aside (atomic) and compared with what was judged stale; a
        live lock moved by mistake is put back (os.link: never over a lock taken
        meanwhile) and this build is refused."""
        if stale is None:
            return  # there was none: O_EXCL decides between racing builds
        if not self.local:
            self.fs.rm(self.path)  # best-effort (see the module docstring)
            return
        aside = f"{self.path}.{os.getpid()}.stale"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another build removed it first: O_EXCL decides between us
        with open(aside, "rb") as handle:
            moved = handle.read()
        if moved == stale:
            os.remove(aside)
            return
        try:
            os.link(aside, self.path)
        except FileExistsError:
            pass  # a third build holds it now; the one moved aside is still refused
        finally:
            os.remove(aside)
        self.check()
        raise StoreError(self.location, "another build took the lock just now",
                         hint=f"wait for it to end; if it is gone, delete {self.path}")

    def release(self) -> None:
        """Remove the lock if it is this process's (never another build's lock)."""
        try:
            info = json.loads(self.fs.cat_file(self.path))
        except FileNotFoundError:
            return
        except ValueError:
            info = {}  # torn: only this process can have been writing it just now
        if info.get("pid", os.getpid()) != os.getpid() or \
                info.get("host", socket.gethostname()) != socket.gethostname():
            return
        try:
            self.fs.rm(self.path)
        except FileNotFoundError:
            pass


class Journal:
    """``<store>/.medimg-build/``: the case list and one record file per write unit."""

    def __init__(self, location: str) -> None:
        self.fs, root = fsspec.core.url_to_fs(location)
        self.root = f"{root.rstrip('/')}/{JOURNAL_DIR}"

    def start(self, recipe_sha256: str | None, case_ids: list[str],
              key_check: str | None = None) -> None:
        self.fs.makedirs(f"{self.root}/journal", exist_ok=True)
        self._put("cases.json", {"recipe_sha256": recipe_sha256, "case_ids": case_ids,
                                 "key_check": key_check})

    def cases(self) -> dict[str, Any] | None:
        return self._get("cases.json")

    def write_unit(self, unit: str, records: list[dict[str, Any]]) -> None:
        self._put(f"journal/{unit}.json", {"records": records})

    def read_unit(self, unit: str) -> list[dict[str, Any]] | None:
        found = self._get(f"journal/{unit}.json")
        return None if found is None else found["records"]

    def records(self) -> list[dict[str, Any]]:
        """Every case record journaled so far, of complete units or not."""
        try:
            paths = self.fs.ls(f"{self.root}/journal", detail=False)
        except FileNotFoundError:
            return []
        found = [self._get(f"journal/{path.rsplit('/', 1)[-1]}") for path in sorted(paths)]
        return [record for unit in found if unit for record in unit["records"]]

    def remove(self) -> None:
        if self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)

    def _put(self, name: str, value: Any) -> None:
        # Plain write: a record is trusted only once its unit's completion marker,
        # written after this call returns, is set, so a torn record is never read.
        self.fs.pipe_file(f"{self.root}/{name}", json.dumps(value).encode())

    def _get(self, name: str) -> Any:
        try:
            return json.loads(self.fs.cat_file(f"{self.root}/{name}"))
        except (FileNotFoundError, ValueError):
            return None


# -- one case's record --------------------------------------------------------------
def case_record(index: int, case, labels: dict[str, Any]) -> dict[str, Any]:
    """What a resumed build needs of a written case, as JSON (floats round-trip
    exactly: json writes repr). ``sources`` (source file relative to the source
    folder -> sha256) lets a resume notice a source changed since."""
    return {"index": index, "case_id": case.case_id, "row": _plain(case.row),
            "sources": dict(case.sources), "labels": to_jsonable(labels),
            "boxes": _annotation(case.boxes), "landmarks": _annotation(case.landmarks)}


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """The row as JSON keeps what the table encoding looks at; NaN stays NaN (not
    null as in to_jsonable) so that a float column reads back the same."""
    out = {}
    for key, value in row.items():
        if isinstance(value, (float, np.floating)):
            out[str(key)] = float(value)
        else:
            out[str(key)] = to_jsonable(value)
    return out


def _annotation(value) -> dict[str, Any] | None:
    if value is None:
        return None
    fields = {"labels": list(value.labels), "affine": value.affine.tolist(),
              "shape": [int(n) for n in value.shape],
              "source": _annotation(value.source)}
    if value.picture:  # a picture's world axes are its columns and rows (its table columns)
        fields["picture"] = True
    if isinstance(value, Boxes):
        fields.update(lo=value.lo.tolist(), hi=value.hi.tolist(),
                      key_slice=value.key_slice.tolist())
    else:
        fields.update(points=value.points.tolist())
    return fields


def annotation_from(kind: str, data: dict[str, Any] | None):
    """``_annotation`` undone: the Boxes or Landmarks the case had."""
    if data is None:
        return None
    common = {"labels": tuple(data["labels"]), "affine": np.array(data["affine"], float),
              "shape": tuple(data["shape"]), "source": annotation_from(kind, data["source"]),
              "picture": bool(data.get("picture", False))}
    n, d = len(data["labels"]), len(data["shape"])

    def table(key: str) -> np.ndarray:
        return np.array(data[key], float).reshape(n, d)

    if kind == "boxes":
        return Boxes(lo=table("lo"), hi=table("hi"),
                     key_slice=np.array(data["key_slice"], bool).reshape(n), **common)
    points = table("points")
    return Landmarks(points=points, **common)
