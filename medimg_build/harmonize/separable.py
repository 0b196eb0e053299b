"""Resampling whose index transform is diagonal, one axis at a time, in float32.

When new voxel ``u`` comes from old index ``p = (u - offset) / scale`` on each axis (as in
``resize_with_pad`` and ``resample_to_spacing``), Gaussian smoothing followed by linear
interpolation is separable: along each axis it is one small matrix, computed only at the
output samples,

    out[u] = sum_m W[u, m] in[m],   W[u, m] = (1 - f) g(m - lo) + f g(m - lo - 1)

with ``lo = floor(p)``, ``f = p - lo`` and ``g`` the Gaussian of ``sigma`` voxels sampled
at integers, normalised to sum 1 and cut at 4 sigma (``scipy.ndimage.gaussian_filter``'s
default, which skimage's ``resize`` uses). The image border is replicated for the
Gaussian, as ITK's recursive Gaussian does. Interpolation follows ITK's linear
interpolator and resampler: a sample whose ``p`` lies in ``[-0.5, n - 0.5)`` is inside
(between ``-0.5`` and ``0``, and past ``n - 1``, it takes the edge value); any other gets
the pad value, or with ``extrapolate`` ITK's nearest-neighbour extrapolation.

With smoothing, ``W`` is banded (``2 int(4 sigma + 0.5) + 2`` taps per row) and applied in
blocks of output rows as dense products of a few dozen columns (BLAS), never as a full
matrix: the fast form of a banded product in numpy (a transposed copy for the contiguous
axis costs more than the whole product). The source is cast to float32 one block at a
time, so memory is the output of the first axis plus one block. Without smoothing, two
taps: a gather of both neighbours and a mix, which no matrix product beats.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

TRUNCATE = 4.0  # the Gaussian is cut at this many sigmas
TIE = 1e-9  # voxels: p this close to the buffer's edge (or to a half voxel) is on it
# A block of output rows spans about this many source rows (or the kernel, if wider):
# fewer wasted products in narrower blocks, fewer calls in wider ones (measured).
BLOCK_SPAN = 16
# Two-tap interpolation gathers both neighbours in this many slabs of the output.
GATHER_SLABS = 8

# What the provenance says the smoothing was (the step's ``antialias``).
GAUSSIAN = f"gaussian-sampled-{TRUNCATE:g}sigma"


@dataclass(frozen=True)
class AxisOperator:
    """One axis: output samples ``first .. first + count - 1`` are in the image (the rest
    are pad). With smoothing, each block ``(u0, u1, a, b, weights)`` gives content samples
    ``u0:u1`` as ``weights @ source[a:b]``; without, content sample ``u`` is
    ``source[low[u]]`` and ``source[high[u]]`` mixed by ``fraction[u]`` (two taps: a
    gather beats any matrix product)."""

    first: int
    count: int
    blocks: tuple[tuple[int, int, int, int, np.ndarray], ...] = ()
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    fraction: np.ndarray | None = None


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The Gaussian sampled at integers ``-r .. r``, sum 1: ``r = int(4 sigma + 0.5)``,
    as ``scipy.ndimage.gaussian_filter``."""
    if sigma <= 0:
        return np.ones(1)
    radius = int(TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def _positions(n_out: int, scale: float, offset: float) -> np.ndarray:
    """Old continuous index ``p`` of each new sample ``u``."""
    return (np.arange(n_out) - offset) / scale


def _in_buffer(p: np.ndarray, n_in: int) -> np.ndarray:
    """ITK's IsInsideBuffer: the buffer spans [-0.5, n - 0.5) in continuous index. A
    sample within TIE of an end is taken as on it (its p is a rounded quotient)."""
    return (p + TIE >= -0.5) & (p + TIE < n_in - 0.5)


@functools.lru_cache(maxsize=64)
def axis_operator(n_in: int, n_out: int, scale: float, offset: float, sigma: float,
                  extrapolate: bool = False) -> AxisOperator:
    """The smoothing-then-linear operator of one axis (see the module docstring); with
    ``extrapolate``, every sample is content (``resample_separable`` then overwrites
    those outside the buffer with ITK's nearest-neighbour extrapolation).

    Cached: a mass build resizes thousands of images of one shape to one shape."""
    p = _positions(n_out, scale, offset)
    inside = np.arange(n_out) if extrapolate else np.flatnonzero(_in_buffer(p, n_in))
    if inside.size == 0:
        return AxisOperator(0, 0, ())
    first, count = int(inside[0]), int(inside.size)
    p = np.clip(p[inside], 0, n_in - 1)
    low = np.minimum(np.floor(p), max(n_in - 2, 0)).astype(np.int64)
    fraction = p - low
    if sigma <= 0:
        high = np.minimum(low + 1, n_in - 1)
        for array in (low, high):
            array.setflags(write=False)
        fraction = fraction.astype(np.float32)
        fraction.setflags(write=False)
        return AxisOperator(first, count, low=low, high=high, fraction=fraction)
    kernel = gaussian_kernel(sigma)
    radius = kernel.size // 2
    taps = kernel.size + 1
    weights = np.zeros((count, taps))
    weights[:, :-1] += (1 - fraction)[:, None] * kernel
    weights[:, 1:] += fraction[:, None] * kernel
    # Source index of each tap, the border replicated (clipped taps add up on the edge).
    index = np.clip(low[:, None] - radius + np.arange(taps), 0, n_in - 1)

    rows_per_block = max(1, round(max(BLOCK_SPAN, taps) * scale))
    blocks = []
    for u0 in range(0, count, rows_per_block):
        u1 = min(u0 + rows_per_block, count)
        rows = index[u0:u1]
        a, b = int(rows.min()), int(rows.max()) + 1
        flat = (np.arange(u1 - u0)[:, None] * (b - a) + rows - a).ravel()
        block = np.bincount(flat, weights[u0:u1].ravel(), minlength=(u1 - u0) * (b - a))
        block = block.reshape(u1 - u0, b - a).astype(np.float32)
        block.setflags(write=False)
        blocks.append((u0, u1, a, b, block))
    return AxisOperator(first, count, tuple(blocks))


def _apply_first(source: np.ndarray, op: AxisOperator) -> np.ndarray:
    """``op`` along axis 0 of ``source`` (any dtype and strides), cast block by block."""
    rest = source.shape[1:]
    out = np.empty((op.count, math.prod(rest)), np.float32)
    for u0, u1, a, b, weights in op.blocks:
        band = np.ascontiguousarray(source[a:b], dtype=np.float32).reshape(b - a, -1)
        np.matmul(weights, band, out=out[u0:u1])
    return out.reshape((op.count, *rest))


def _apply(array: np.ndarray, axis: int, op: AxisOperator) -> np.ndarray:
    """``op`` along ``axis`` of a C-contiguous float32 ``array``."""
    shape = array.shape
    before, after = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
    out = np.empty((*shape[:axis], op.count, *shape[axis + 1:]), np.float32)
    if after == 1:  # the contiguous axis: rows times the transposed operator
        rows, out_rows = array.reshape(before, shape[axis]), out.reshape(before, op.count)
        for u0, u1, a, b, weights in op.blocks:
            np.matmul(rows[:, a:b], weights.T, out=out_rows[:, u0:u1])
    else:
        stack = array.reshape(before, shape[axis], after)
        out_stack = out.reshape(before, op.count, after)
        for u0, u1, a, b, weights in op.blocks:
            np.matmul(weights, stack[:, a:b], out=out_stack[:, u0:u1])
    return out


def _interpolate(source: np.ndarray, axis: int, op: AxisOperator) -> np.ndarray:
    """Two-tap ``op`` along ``axis`` of ``source`` (any dtype and strides): float32
    ``low + fraction * (high - low)``, gathered in the source's type (no float copy of it)
    and a slab of the outermost axis at a time: the gathers of a whole upsampled volume
    were two more output-sized arrays, above the peak of the ITK code this replaced."""
    shape = list(source.shape)
    shape[axis] = op.count
    out = np.empty(shape, np.float32)
    fraction = op.fraction.reshape([-1 if d == axis else 1 for d in range(source.ndim)])
    step = -(-shape[0] // GATHER_SLABS)
    for start in range(0, shape[0], step):
        rows = slice(start, start + step)
        if axis == 0:
            part, low_index, high_index, weight = source, op.low[rows], op.high[rows], \
                fraction[rows]
        else:
            part, low_index, high_index, weight = source[rows], op.low, op.high, fraction
        low = np.take(part, low_index, axis=axis)
        high = np.take(part, high_index, axis=axis)
        slab = out[rows]
        np.subtract(high, low, out=slab, dtype=np.float32)
        slab *= weight
        slab += low
    return out


def apply_operators(pixels: np.ndarray, ops: list[AxisOperator]) -> np.ndarray:
    """``ops[d]`` along spatial axis ``d`` of one channel's ``pixels``: the float32 content
    band, C-contiguous in the memory order of ``pixels`` (axes by decreasing stride),
    returned as a view in spatial axis order.

    Matrix products go outermost axis first (the first casts the source a block at a
    time); two-tap interpolation, the axis that shrinks most first (least work after)."""
    memory = sorted(range(pixels.ndim), key=lambda d: -abs(pixels.strides[d]))
    array = pixels.transpose(memory)
    steps = [(axis, ops[d]) for axis, d in enumerate(memory)]
    if all(op.blocks == () for _, op in steps):
        steps.sort(key=lambda step: step[1].count / array.shape[step[0]])
    for done, (axis, op) in enumerate(steps):
        if not op.blocks:
            array = _interpolate(array, axis, op)
        elif done == 0:
            array = _apply_first(array, op)  # axis 0: memory order, see above
        else:
            array = _apply(array, axis, op)
    return array.transpose(np.argsort(memory))


def resample_separable(array: np.ndarray, spatial_ndim: int, new_shape, scale, offset,
                       sigma: float, fill_value: float = 0.0,
                       extrapolate: bool = False) -> np.ndarray:
    """``array`` (spatial axes first, then at most one channel axis) smoothed by a
    Gaussian of ``sigma`` voxels and linearly interpolated at ``p = (u - offset) / scale``
    per axis, onto ``new_shape``; samples outside get ``fill_value`` (or, with
    ``extrapolate``, the nearest edge value). float32, laid out as the rest of the
    package wants (spatial axes Fortran-ordered, channels innermost)."""
    channels = array.shape[spatial_ndim:]
    ops = [axis_operator(int(n), int(m), float(s), float(o), float(sigma), extrapolate)
           for n, m, s, o in zip(array.shape[:spatial_ndim], new_shape, scale, offset)]
    reverse = tuple(reversed(range(spatial_ndim))) + tuple(range(spatial_ndim, array.ndim))
    out = np.empty(tuple(new_shape[::-1]) + channels, np.float32).transpose(reverse)
    if any(op.count == 0 for op in ops):  # the image falls between the new voxels
        out.fill(fill_value)
        return out
    content = tuple(slice(op.first, op.first + op.count) for op in ops)
    _fill_outside(out, content, fill_value)
    positions = [_positions(int(m), float(s), float(o))
                 for m, s, o in zip(new_shape, scale, offset)]
    for c in np.ndindex(*channels):
        pixels = array[(..., *c)]
        out[(*content, *c)] = apply_operators(pixels, ops)
        if extrapolate:
            _nearest_beyond_the_buffer(out[(..., *c)], pixels, positions)
    return out


def _nearest_beyond_the_buffer(out: np.ndarray, pixels: np.ndarray, positions) -> None:
    """ITK's extrapolation: a sample outside the buffer on any axis takes the value of
    the nearest voxel on every axis (index rounded half up, then clamped), not an
    interpolated one. These are only the outer faces of an upsampled grid."""
    nearest = [np.clip(np.floor(p + 0.5 + TIE), 0, n - 1).astype(np.intp)
               for p, n in zip(positions, pixels.shape)]
    for axis, p in enumerate(positions):
        beyond = np.flatnonzero(~_in_buffer(p, pixels.shape[axis]))
        if beyond.size:
            index = [*nearest[:axis], nearest[axis][beyond], *nearest[axis + 1:]]
            face = [slice(None)] * pixels.ndim
            face[axis] = beyond
            out[tuple(face)] = pixels[np.ix_(*index)]


def _fill_outside(out: np.ndarray, content: tuple[slice, ...], value: float) -> None:
    """``value`` in every voxel of ``out`` outside the box ``content`` (the pad band)."""
    for axis, band in enumerate(content):
        lead = (slice(None),) * axis
        out[(*lead, slice(0, band.start))] = value
        out[(*lead, slice(band.stop, None))] = value


def smooth_separable(array: np.ndarray, spatial_ndim: int, sigma: float) -> np.ndarray:
    """``array`` smoothed by the Gaussian of ``sigma`` voxels on its own grid (float32):
    the same filter as ``resample_separable``, for interpolators it cannot fold in."""
    shape = array.shape[:spatial_ndim]
    n = spatial_ndim
    return resample_separable(array, n, shape, [1.0] * n, [0.0] * n, sigma, 0.0)
