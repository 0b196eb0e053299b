"""Choices a recipe makes about how pixel values are read (its ``read`` section).

Like the size limit (``medimg_build.limits``), a build sets them for the duration of each
case with ``read_options``; readers called on their own use the defaults, which are
dcm2niix's.

``philips_scaling``: Philips MR stores, besides RescaleSlope/Intercept (RS, RI), a
private MRScaleSlope (SS, 2005,100E). ``"precise"`` (default, dcm2niix's ``-p y``) gives
the scanner's floating-point values, (stored * RS + RI) / (RS * SS), comparable across
series; ``"display"`` (dcm2niix's ``-p n``) applies RS and RI only, the values the
scanner displays. See Chenevert et al. 2014, PMC3998685.

``picture_fit``: the shape a build then shrinks the case's picture to (a stack's
``harmonize.shape``). A JPEG reader may then decode at a reduced DCT scale (libjpeg's
1/2, 1/4, 1/8, which average each 2x2, 4x4 or 8x8 block), keeping at least twice the
pixels the resize keeps: most of a large photo's decoding is skipped, and the resize's
own anti-aliasing still does the last factor of two. Only the case's image is read under
it, never its mask (labels must not be averaged), and only for a case without a mask or
annotations (they are given on the file's pixels: ``recipe.pipeline._shrunk_to``).
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


_picture_fit: ContextVar[tuple[int, ...] | None] = ContextVar("picture_fit", default=None)


def current_philips_scaling() -> str:
    return _philips_scaling.get()


def current_picture_fit() -> tuple[int, ...] | None:
    return _picture_fit.get()


@contextmanager
def picture_fit(shape: tuple[int, ...] | None) -> Iterator[None]:
    """Within the block, pictures are read for a resize to ``shape`` (None: read whole)."""
    token = _picture_fit.set(None if shape is None else tuple(int(n) for n in shape))
    try:
        yield
    finally:
        _picture_fit.reset(token)


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
