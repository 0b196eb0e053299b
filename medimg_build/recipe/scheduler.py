"""Connecting a build to a running Dask scheduler (``build --scheduler``)."""

from __future__ import annotations

from ..errors import MedimgError

# Dask waits 30 s by default; a scheduler that answers at all answers within this.
CONNECT_SECONDS = 5


class SchedulerError(MedimgError):
    """No Dask scheduler answers at the address given."""


def connect(address: str):
    """A distributed Client of the scheduler at ``address``; SchedulerError naming the
    address and the fix if there is none."""
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
