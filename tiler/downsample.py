"""Pyramid geometry and the 2x2 downsamples (mean for images, nearest for labels) between levels."""

from __future__ import annotations

import math

import numpy

__all__ = ["level_shapes", "mean_downsample_2x", "nearest_downsample_2x"]

#: Integer sum types for four pixels without overflow, by input type; others go through floats.
_INTEGER_SUM_TYPES = {
    numpy.dtype(numpy.uint8): numpy.dtype(numpy.uint16),
    numpy.dtype(numpy.int8): numpy.dtype(numpy.int16),
    numpy.dtype(numpy.uint16): numpy.dtype(numpy.uint32),
    numpy.dtype(numpy.int16): numpy.dtype(numpy.int32),
    numpy.dtype(numpy.uint32): numpy.dtype(numpy.int64),
    numpy.dtype(numpy.int32): numpy.dtype(numpy.int64),
}


def level_shapes(height: int, width: int, tile_size: int) -> list[tuple[int, int]]:
    """(height, width) of every pyramid level: halve with ceil until both fit in one tile."""
    if height < 1 or width < 1 or tile_size < 1:
        raise ValueError(f"bad image size {height} x {width} or tile size {tile_size}")
    shapes = [(height, width)]
    while height > tile_size or width > tile_size:
        height, width = math.ceil(height / 2), math.ceil(width / 2)
        shapes.append((height, width))
    return shapes


def _accumulator_dtype(dtype: numpy.dtype) -> numpy.dtype:
    """An integer type that holds the sum of four values without overflow, or float64."""
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        return numpy.dtype(numpy.int32)
    if dtype.kind in "iu" and dtype.itemsize <= 4:
        return numpy.dtype(numpy.int64)
    return numpy.dtype(numpy.float64)


def mean_downsample_2x(block: numpy.ndarray) -> numpy.ndarray:
    """Average 2x2 neighbourhoods of a (c, h, w) block into (c, ceil(h/2), ceil(w/2)).

    An odd last row or column averages the pixels that exist (2 or 1 instead of 4).  The
    result has the block's dtype: integers are rounded to nearest (halves to even).
    """
    sum_type = _INTEGER_SUM_TYPES.get(numpy.dtype(block.dtype).newbyteorder("="))
    if sum_type is not None:
        return _integer_mean(block, sum_type)
    return _float_mean(block)


def nearest_downsample_2x(block: numpy.ndarray) -> numpy.ndarray:
    """The top-left pixel of every 2x2 neighbourhood of a (c, h, w) block: (c, ceil(h/2),
    ceil(w/2)), values unchanged (for label images, whose ids must not be averaged)."""
    return numpy.ascontiguousarray(block[:, 0::2, 0::2])


def _integer_mean(block: numpy.ndarray, sum_type: numpy.dtype) -> numpy.ndarray:
    """The 2x2 mean in integer arithmetic: exact sums, then round half to even by bit tricks.

    For a sum ``t`` of 4 values, ``(t + 1 + (t >> 2 & 1)) >> 2`` is ``t / 4`` rounded half to
    even (``>>`` floors, also for negative sums); for 2 values ``(t + (t >> 1 & 1)) >> 1``.
    """
    _, height, width = block.shape
    half_h, half_w = height // 2, width // 2
    total = block[:, 0::2, 0::2].astype(sum_type)
    total[:, :half_h, :] += block[:, 1::2, 0::2]
    total[:, :, :half_w] += block[:, 0::2, 1::2]
    total[:, :half_h, :half_w] += block[:, 1::2, 1::2]
    inner = total[:, :half_h, :half_w]
    _round_shift(inner, 2)
    if height % 2 and width % 2:  # bottom-right corner: one pixel, already exact
        _round_shift(total[:, half_h, :half_w], 1)
        _round_shift(total[:, :half_h, half_w], 1)
    elif height % 2:
        _round_shift(total[:, half_h, :], 1)
    elif width % 2:
        _round_shift(total[:, :, half_w], 1)
    return total.astype(block.dtype.newbyteorder("="), copy=False)


def _round_shift(total: numpy.ndarray, shift: int) -> None:
    """In place: ``total / 2**shift`` rounded to nearest, halves to even."""
    if not total.size:
        return
    bias = total >> shift
    bias &= 1
    if shift == 2:
        bias += 1
    total += bias
    total >>= shift


def _float_mean(block: numpy.ndarray) -> numpy.ndarray:
    """The 2x2 mean through float64 sums (floats, 64-bit integers and anything else)."""
    _, height, width = block.shape
    half_h, half_w = height // 2, width // 2
    out_h, out_w = height - half_h, width - half_w
    total = block[:, 0::2, 0::2].astype(_accumulator_dtype(block.dtype))
    total[:, :half_h, :] += block[:, 1::2, 0::2]
    total[:, :, :half_w] += block[:, 0::2, 1::2]
    total[:, :half_h, :half_w] += block[:, 1::2, 1::2]
    counts = numpy.full((out_h, out_w), 4.0)
    if out_h > half_h:
        counts[-1, :] /= 2
    if out_w > half_w:
        counts[:, -1] /= 2
    mean = total / counts
    if block.dtype.kind in "iu":
        return numpy.rint(mean).astype(block.dtype)
    return mean.astype(block.dtype)
