"""Choices a recipe makes about how pixel values are read (its ``read`` section).

Like the size limit (``medimg_build.limits``), a build sets them for the duration of each
case with ``read_options``; readers called on their own use the defaults, which are
dcm2niix's.

``philips_scaling``: Philips MR stores, besides RescaleSlope/Intercept (RS, RI), a
private MRScaleSlope (SS, 2005,100E). ``"precise"`` (default, dcm2niix's ``-p y``) gives
the scanner's floating-point values, (stored * RS + RI) / (RS * SS), comparable across
series; ``"display"`` (dcm2niix's ``-p n``) applies RS and RI only, the values the
scanner displays. See Chenevert et al. 2014, PMC3998685.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

PHILIPS_SCALINGS = ("precise", "display")
DEFAULT_PHILIPS_SCALING = "precise"
SETTING = "read.philips_scaling"

_philips_scaling: ContextVar[str] = ContextVar("philips_scaling",
                                               default=DEFAULT_PHILIPS_SCALING)


def current_philips_scaling() -> str:
    return _philips_scaling.get()


@contextmanager
def read_options(philips_scaling: str | None = None) -> Iterator[None]:
    """Within the block, DICOM readers scale Philips values as ``philips_scaling`` says
    (None: the default)."""
    scaling = DEFAULT_PHILIPS_SCALING if philips_scaling is None else philips_scaling
    if scaling not in PHILIPS_SCALINGS:
        raise ValueError(f"philips_scaling must be one of {PHILIPS_SCALINGS}, not {scaling!r}")
    token = _philips_scaling.set(scaling)
    try:
        yield
    finally:
        _philips_scaling.reset(token)
