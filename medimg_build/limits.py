"""How large an image may be before anything allocates it.

Source files come from strangers: a 66-byte NIfTI header can declare 13 GB of voxels, and
a 21 KB deflate TIFF can inflate to 10 GB. Every reader therefore computes the decoded
size from the header (dimensions x channels x frames) and every harmonization step the
size of its output grid, and calls ``check_size`` before it decodes or resamples. Past
the limit the case is refused with one line naming the file, the size and the setting
that raises it; the decoder never discovers the size by allocating it.

The limit counts values (voxels x channels), whatever their type, because every step
after reading works in float32 or wider. It is fixed rather than taken from the
machine's memory so that two labs building the same recipe refuse the same cases.
A build sets it from the recipe's ``limits.max_voxels`` (``--max-voxels N`` on the
command line) for the duration of each case with ``max_voxels``; readers called on
their own use the default.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from os import PathLike

from .errors import ImageReadError

# 2**29 values: a 1024 x 1024 x 512 volume, 2 GiB as float32. Peak memory of a worker is
# several times that (the read image, float copies, the resampled grid), which keeps one
# worker of the default pool within the memory of an ordinary workstation. Real volumes
# larger than this exist (whole-body micro-CT); they need the setting raised on purpose.
DEFAULT_MAX_VOXELS = 2**29
SETTING = "limits.max_voxels"
OPTION = "--max-voxels"

_max_voxels: ContextVar[int] = ContextVar("max_voxels", default=DEFAULT_MAX_VOXELS)


class ImageTooLargeError(ImageReadError):
    """An image, or the grid a step would produce, holds more values than the limit."""


def current_max_voxels() -> int:
    return _max_voxels.get()


def store_max_voxels(medimg: dict) -> int:
    """The limit for reading a store's cases: the reader's, or the one the store was
    built with (its recipe's ``limits.max_voxels``) when larger, so that a store built
    with ``--max-voxels N`` reads and validates its own cases. A forged store can raise
    it as well; its chunks are still checked one by one as they are read."""
    try:
        built = int(medimg["recipe"]["content"]["limits"]["max_voxels"])
    except (KeyError, TypeError, ValueError):
        built = 0
    return max(current_max_voxels(), built)


@contextmanager
def max_voxels(limit: int | None) -> Iterator[int]:
    """Within the block, ``check_size`` refuses more than ``limit`` values (None: the
    default)."""
    limit = DEFAULT_MAX_VOXELS if limit is None else int(limit)
    if limit < 1:
        raise ValueError(f"max_voxels must be a positive number of voxels, not {limit}")
    token = _max_voxels.set(limit)
    try:
        yield limit
    finally:
        _max_voxels.reset(token)


def check_size(path: str | PathLike | None, shape: Sequence[int], what: str = "image",
               fix: str | None = None) -> None:
    """Refuse a ``shape`` (all axes: spatial, channels, frames) holding more values than
    the current limit. Dimensions are Python ints, so a header's 2**31-sized axes cannot
    overflow the product. ``fix``: a remedy other than raising the limit (a recipe
    setting that made the size), put first in the hint."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise ImageReadError(path, f"{what} declares a negative size {_shown(dims)}",
                             hint="the header is damaged or forged")
    values = math.prod(dims)
    limit = current_max_voxels()
    if values > limit:
        raise ImageTooLargeError(
            path, f"{what} of {_shown(dims)} = {values:,} values "
            f"({values * 4 / 2**30:,.1f} GiB as float32) is over the limit of {limit:,}",
            hint=(f"{fix}; or, " if fix else "") + "if the image is real and a worker has "
            f"the memory (several times that size), raise the limit with {OPTION} N or the "
            f"recipe's {SETTING}")


def _shown(dims: Sequence[int]) -> str:
    return "x".join(str(d) for d in dims)
