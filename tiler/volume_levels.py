"""Volume pyramid geometry (levels, near-isotropic chunks, shards) and the 3D downsamples."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy

__all__ = [
    "Z_ANISOTROPY_LIMIT",
    "VolumeLevel",
    "mean_downsample_3d",
    "nearest_downsample_3d",
    "plan_volume_levels",
    "volume_chunks",
]

#: z is halved together with y and x only while the z voxel size stays at most this many
#: times the xy voxel size; a coarser z waits until y and x have caught up.
Z_ANISOTROPY_LIMIT = 1.5


@dataclass(frozen=True)
class VolumeLevel:
    """One level of a volume pyramid: shape, voxel size and storage layout, all (z, y, x).

    ``factor`` says how the level was made from the one above: (2, 2, 2) or (1, 2, 2);
    level 0 has (1, 1, 1).  ``scale`` is relative (level 0 = 1, 1, 1) when the voxel size
    is unknown.
    """

    shape: tuple[int, int, int]
    scale: tuple[float, float, float]
    factor: tuple[int, int, int]
    chunks: tuple[int, int, int]
    shards: tuple[int, int, int]


def volume_chunks(shape: tuple[int, int, int], scale: tuple[float, float, float],
                  chunk: int) -> tuple[int, int, int]:
    """Chunk shape near-isotropic in physical units: ``chunk`` in y/x, z scaled by a power of 2.

    E.g. z voxels twice as thick as xy voxels give (chunk / 2, chunk, chunk).  Each side is
    clipped to the level's size so small volumes are not padded.
    """
    ratio = scale[0] / max(scale[1], scale[2])
    steps = round(math.log2(ratio)) if ratio > 0 else 0
    chunk_z = min(max(chunk // 2**steps if steps >= 0 else chunk * 2**-steps,
                      max(1, chunk // 16)), chunk * 4)
    return (min(chunk_z, shape[0]), min(chunk, shape[1]), min(chunk, shape[2]))


def plan_volume_levels(shape: tuple[int, int, int], voxel_size: tuple[float, float, float] | None,
                       *, chunk: int, shard_chunks: int) -> list[VolumeLevel]:
    """Every level of the pyramid of a (z, y, x) ``shape``, down to all sides <= ``chunk``.

    y and x are halved (ceil) at every level; z too while that keeps z voxels at most
    Z_ANISOTROPY_LIMIT times the xy size (or when y and x cannot shrink any more).  Shards are
    ``shard_chunks`` chunks on a side, clipped to the level (whole chunks).
    """
    if min(shape) < 1 or chunk < 1 or shard_chunks < 1:
        raise ValueError(f"bad volume shape {shape}, chunk {chunk} or shard_chunks {shard_chunks}")
    scale = tuple(float(v) for v in voxel_size) if voxel_size else (1.0, 1.0, 1.0)
    factor = (1, 1, 1)
    levels = []
    while True:
        chunks = volume_chunks(shape, scale, chunk)  # type: ignore[arg-type]
        shards = tuple(min(shard_chunks, math.ceil(size / side)) * side
                       for size, side in zip(shape, chunks, strict=True))
        levels.append(VolumeLevel(shape, scale, factor, chunks, shards))  # type: ignore[arg-type]
        depth, height, width = shape
        if max(shape) <= chunk:
            return levels
        stuck = height == 1 and width == 1
        halve_z = depth > 1 and (scale[0] <= Z_ANISOTROPY_LIMIT * max(scale[1], scale[2])
                                 or stuck)
        factor = (2 if halve_z else 1, 2, 2)
        shape = (math.ceil(depth / factor[0]), math.ceil(height / 2), math.ceil(width / 2))
        scale = (scale[0] * factor[0], scale[1] * 2, scale[2] * 2)


#: Integer types whose sums of 8 values fit these types exactly; others are summed as floats.
_INTEGER_SUM_TYPES = {
    numpy.dtype(numpy.uint8): numpy.dtype(numpy.uint16),
    numpy.dtype(numpy.int8): numpy.dtype(numpy.int16),
    numpy.dtype(numpy.uint16): numpy.dtype(numpy.int32),
    numpy.dtype(numpy.int16): numpy.dtype(numpy.int32),
    numpy.dtype(numpy.uint32): numpy.dtype(numpy.int64),
    numpy.dtype(numpy.int32): numpy.dtype(numpy.int64),
}


def mean_downsample_3d(block: numpy.ndarray, factor_z: int) -> numpy.ndarray:
    """Average 2x2 (y, x) or 2x2x2 (z, y, x) neighbourhoods of a (c, z, y, x) block.

    The result is (c, ceil(z / factor_z), ceil(y / 2), ceil(x / 2)); an odd last slice, row or
    column averages the voxels that exist.  Integers are rounded to nearest (halves to even),
    as the 2D downsample does; the result has the block's dtype.
    """
    if factor_z not in (1, 2):
        raise ValueError(f"factor_z must be 1 or 2, not {factor_z}")
    sum_type = _INTEGER_SUM_TYPES.get(numpy.dtype(block.dtype).newbyteorder("="),
                                      numpy.dtype(numpy.float64))
    channels, depth, height, width = block.shape
    out = numpy.empty((channels, -(-depth // factor_z), -(-height // 2), -(-width // 2)),
                      dtype=block.dtype.newbyteorder("="))
    # Each output voxel sums 2 values (1 at an odd end) per halved axis: 2**bits in all.
    sides = [[(slice(0, size // 2), 1)] + ([(slice(size // 2, None), 0)] if size % 2 else [])
             for size in (height, width)]
    for z in range(out.shape[1]):  # plane by plane: the sums stay in the CPU caches
        planes = block[:, z * factor_z:min(z * factor_z + factor_z, depth)]
        total = _pair_sums(planes[:, 0], 1, sum_type)
        if planes.shape[1] == 2:
            _pair_sums(planes[:, 1], 1, sum_type, into=total)
        total = _pair_sums(total, 2, sum_type)
        for (rows, row_bit), (cols, col_bit) in itertools.product(*sides):
            bits = planes.shape[1] - 1 + row_bit + col_bit
            region = total[:, rows, cols]
            if sum_type.kind == "f":
                region /= 2**bits
            elif bits:
                _round_shift(region, bits)
        if sum_type.kind == "f" and block.dtype.kind in "iu":
            numpy.rint(total, out=total)
        out[:, z] = total
    return out


def nearest_downsample_3d(block: numpy.ndarray, factor_z: int) -> numpy.ndarray:
    """The first voxel of every 2x2 (y, x) or 2x2x2 (z, y, x) neighbourhood of a (c, z, y, x)
    block, shaped as ``mean_downsample_3d``'s result; values unchanged (for label images)."""
    if factor_z not in (1, 2):
        raise ValueError(f"factor_z must be 1 or 2, not {factor_z}")
    return numpy.ascontiguousarray(block[:, 0::factor_z, 0::2, 0::2])


def _pair_sums(block: numpy.ndarray, axis: int, sum_type: numpy.dtype,
               into: numpy.ndarray | None = None) -> numpy.ndarray:
    """Sums of neighbouring pairs along ``axis`` (an odd last one alone), added ``into``."""
    size = block.shape[axis]
    half = size // 2

    def along(part: slice) -> tuple[slice, ...]:
        return (slice(None),) * axis + (part,)

    even, odd = block[along(slice(0, 2 * half, 2))], block[along(slice(1, 2 * half, 2))]
    if into is None:
        into = numpy.empty(block.shape[:axis] + (size - half,) + block.shape[axis + 1:], sum_type)
        numpy.add(even, odd, out=into[along(slice(0, half))], dtype=sum_type)
        if size % 2:
            into[along(slice(half, None))] = block[along(slice(size - 1, None))]
        return into
    paired = into[along(slice(0, half))]
    paired += even
    paired += odd
    if size % 2:
        into[along(slice(half, None))] += block[along(slice(size - 1, None))]
    return into


def _round_shift(total: numpy.ndarray, bits: int) -> None:
    """In place: integer ``total / 2**bits`` rounded to nearest, halves to even.

    ``(t + 2**(bits-1) - 1 + (t >> bits & 1)) >> bits``: ``>>`` floors, also for negative t.
    """
    if not total.size:
        return
    bias = total >> bits
    bias &= 1
    bias += (1 << (bits - 1)) - 1
    total += bias
    total >>= bits
