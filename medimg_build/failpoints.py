"""Named points where a test may kill or pause a build, by environment variable.

Crash safety (resume, locks, replacing a store) can only be tested by killing a real
build at a known moment, in a subprocess: these are the moments. Each point is a name;
a build passes its points in order and nothing happens unless the test set the
variable to that name (the same idea as FreeBSD's fail points or TiKV's ``fail``
crate). Unset, a point costs one dictionary lookup.

Points: ``checked`` and ``lock`` (creating a store: past the lock check, holding the
lock), ``case`` (a volumes case written, not yet complete), ``shard`` (a stack shard
written, not yet complete), ``close`` (the table written, the store not finished),
and ``"1"``, ``"2"``, ... (the build loop after that many cases).
"""

from __future__ import annotations

import os
import signal

KILL_AT = "MEDIMG_TEST_KILL_AFTER"  # SIGKILL the build at this point
STOP_AT = "MEDIMG_TEST_STOP_AT"  # SIGSTOP it there (the test sends SIGCONT)
KILL_WORKER_ON = "MEDIMG_TEST_KILL_WORKER_ON"  # SIGKILL the worker harmonizing this case


def failpoint(name: str) -> None:
    """Kill or stop this process if a test asked for it at point ``name``."""
    if os.environ.get(KILL_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(STOP_AT) == name:
        os.kill(os.getpid(), signal.SIGSTOP)


def worker_failpoint(case_id: str) -> None:
    """Kill this Dask worker if it harmonizes the case a test poisoned, as the kernel's
    OOM killer would (tests/test_build_safety.py)."""
    if os.environ.get(KILL_WORKER_ON) == case_id:
        os.kill(os.getpid(), signal.SIGKILL)
