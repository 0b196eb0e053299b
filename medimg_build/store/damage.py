"""Bytes of a store that no longer decode, as one StoreError naming what holds them.

A damaged chunk surfaces from deep inside the codecs as whatever they raise: Blosc a
RuntimeError, Zarr's sharding and crc32c a ValueError, UTF-8 and JSON a ValueError,
HDF5's filters an OSError without errno. The readers that know what they were reading
(a case's pixels, a table column) turn these into one line naming it; ``verify`` then
names the chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import StoreError
from .integrity import DAMAGED_HINT


@contextmanager
def undecodable(path: str, what: str) -> Iterator[None]:
    """Raise what a damaged chunk raises inside as StoreError(path, "<what> cannot be
    read (<error>)"). An OSError with an errno is a fault of the machine (network,
    permission, full disk), not of the bytes: it passes as it is."""
    try:
        yield
    except (ValueError, RuntimeError, OSError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise
        lines = str(err).strip().splitlines()
        detail = f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__
        raise StoreError(path, f"{what} cannot be read ({detail})", hint=DAMAGED_HINT) from err
