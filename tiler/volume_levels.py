"""Volume pyramid geometry (levels, near-isotropic chunks, shards) and the 3D mean downsample."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy

__all__ = [
    "Z_ANISOTROPY_LIMIT",
    "VolumeLevel",
    "mean_downsample_3d",
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


def _accumulator(dtype: numpy.dtype) -> tuple[numpy.dtype, numpy.dtype]:
    """(sum type, mean type): exact sums of 8 values, and a float type exact for their mean."""
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        return numpy.dtype(numpy.int32), numpy.dtype(numpy.float32)  # |sum| < 2**24: exact
    if dtype.kind in "iu":
        return numpy.dtype(numpy.int64), numpy.dtype(numpy.float64)
    return numpy.dtype(numpy.float64), numpy.dtype(numpy.float64)


def mean_downsample_3d(block: numpy.ndarray, factor_z: int) -> numpy.ndarray:
    """Average 2x2 (y, x) or 2x2x2 (z, y, x) neighbourhoods of a (c, z, y, x) block.

    The result is (c, ceil(z / factor_z), ceil(y / 2), ceil(x / 2)); an odd last slice, row or
    column averages the voxels that exist.  Integers are rounded to nearest (halves to even),
    as the 2D downsample does; the result has the block's dtype.
    """
    if factor_z not in (1, 2):
        raise ValueError(f"factor_z must be 1 or 2, not {factor_z}")
    sum_type, mean_type = _accumulator(block.dtype)
    _, depth, height, width = block.shape
    out_shape = (block.shape[0], math.ceil(depth / factor_z), math.ceil(height / 2),
                 math.ceil(width / 2))
    total = numpy.zeros(out_shape, dtype=sum_type)
    counts = []
    for axis, size, step in ((1, depth, factor_z), (2, height, 2), (3, width, 2)):
        count = numpy.full(out_shape[axis], step, dtype=mean_type)
        if size % step:
            count[-1] = 1
        counts.append(count)
    for dz in range(factor_z):
        for dy in (0, 1):
            for dx in (0, 1):
                part = block[:, dz::factor_z, dy::2, dx::2]
                total[:, :part.shape[1], :part.shape[2], :part.shape[3]] += part
    weight = (1 / counts[0])[:, None, None] * (1 / counts[1])[:, None] * (1 / counts[2])
    mean = total.astype(mean_type, copy=False)
    mean *= weight.astype(mean_type)
    if block.dtype.kind in "iu":
        return numpy.rint(mean, out=mean).astype(block.dtype)
    return mean.astype(block.dtype)
