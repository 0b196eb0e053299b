"""Connecting a build to a running Dask scheduler (``build --scheduler``)."""

from __future__ import annotations

from ..errors import MedimgError

# Dask waits 30 s by default; a scheduler that answers at all answers within this.
CONNECT_SECONDS = 5


class SchedulerError(MedimgError):
    """No Dask scheduler answers at the address given."""


def connect(address: str):
    """A distributed Client of the scheduler at ``address``, which has a worker;
    SchedulerError naming the address and the fix if there is no scheduler or no
    worker (a build would wait for one forever)."""
    client = _client(address)
    try:
        client.wait_for_workers(1, timeout=CONNECT_SECONDS)
    except TimeoutError:  # dask's TimeoutError is the builtin one
        client.close()
        raise SchedulerError(address, f"the scheduler there has no worker (none joined "
                             f"within {CONNECT_SECONDS} s)",
                             hint="start workers: `dask worker ADDRESS`") from None
    return client


def _client(address: str):
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_SECONDS)
    except ValueError as err:  # distributed's parse of the address
        raise SchedulerError(address, f"not a scheduler address ({err})",
                             hint="e.g. --scheduler tcp://host:8786") from None
    except OSError:  # refused, unreachable, timed out: Dask says only "timed out"
        raise SchedulerError(address, f"no Dask scheduler answers there within "
                             f"{CONNECT_SECONDS} s",
                             hint="start one (`dask scheduler`, then `dask worker ADDRESS`) "
                                  "or check the host and port, or leave out --scheduler to "
                                  "use local workers") from None
