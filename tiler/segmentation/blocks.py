"""Blocks of a blockwise segmentation: their shape from the memory budget, halos, chunked reads."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy
import zarr

from tiler.shard_reader import ShardedArrayReader, open_shard_reader
from tiler.storage import Location, as_location

__all__ = ["BLOCK_VOXEL_CAP", "MIN_BLOCK_SIDE", "ArrayReader", "BlockPlan", "Box", "plan_blocks"]

#: Most voxels of one block, halo included (2048² or 161³): bigger blocks gain little.
BLOCK_VOXEL_CAP = 1 << 22
#: The budget holds at least this many blocks at once (a worker's and one more).
MIN_BLOCKS_IN_BUDGET = 2
#: Smallest block side the planner picks, and never less than the halo: thinner blocks would
#: spend most of their time on context (a test may ask for smaller ones).
MIN_BLOCK_SIDE = 32

#: A box of the image: (start, stop) per axis, (z,) y, x.
Box = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class BlockPlan:
    """How an image of ``shape`` ((z,) y, x) is cut: core ``block`` shape, ``halo`` voxels of
    context on every side (clipped at the image border), the ``grid`` of blocks, the chunk
    shape of the provisional label array (whose shards are the blocks), how many ``workers``
    run at once and the estimated ``block_bytes`` one of them needs."""

    shape: tuple[int, ...]
    block: tuple[int, ...]
    halo: int
    chunk: tuple[int, ...]
    workers: int
    block_bytes: int

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(math.ceil(size / side) for size, side in zip(self.shape, self.block,
                                                                  strict=True))

    @property
    def count(self) -> int:
        return math.prod(self.grid)

    def position(self, index: int) -> tuple[int, ...]:
        """Grid position of block ``index`` (raster order, last axis fastest)."""
        return tuple(int(i) for i in numpy.unravel_index(index, self.grid))

    def index(self, position: tuple[int, ...]) -> int:
        return int(numpy.ravel_multi_index(position, self.grid))

    def core(self, index: int) -> Box:
        """The voxels block ``index`` labels."""
        return tuple((p * side, min((p + 1) * side, size)) for p, side, size in
                     zip(self.position(index), self.block, self.shape, strict=True))

    def haloed(self, index: int) -> Box:
        """The voxels block ``index`` reads: its core and up to ``halo`` more on every side."""
        return tuple((max(0, low - self.halo), min(size, high + self.halo))
                     for (low, high), size in zip(self.core(index), self.shape, strict=True))

    def blocks_in(self, box: Box) -> Iterator[tuple[int, Box]]:
        """(index, the part of ``box`` in it) for every block that ``box`` overlaps."""
        ranges = [range(low // side, (high - 1) // side + 1)
                  for (low, high), side in zip(box, self.block, strict=True)]
        for position in itertools.product(*ranges):
            index = self.index(position)
            part = tuple((max(low, c_low), min(high, c_high)) for (low, high), (c_low, c_high)
                         in zip(box, self.core(index), strict=True))
            yield index, part


def plan_blocks(shape: tuple[int, ...], chunk: tuple[int, ...], halo: int,
                bytes_per_voxel: int, memory_budget: int, processes: int,
                block_shape: tuple[int, ...] | None = None) -> BlockPlan:
    """Block geometry for an image of ``shape`` whose storage chunks are ``chunk``.

    Blocks hold (halo included) at most BLOCK_VOXEL_CAP voxels and at most
    memory_budget / (MIN_BLOCKS_IN_BUDGET * bytes_per_voxel); sides are whole chunks when a
    chunk fits, so reads decode each chunk once.  The shape depends on the budget, never on
    ``processes``: results do not change with the number of workers.  Workers are as many
    as ``processes``, blocks and the budget allow.  ``block_shape`` (tests) overrides the
    shape.  ValueError if even a block of MIN_BLOCK_SIDE (or ``halo``) voxels a side does not
    fit the budget.
    """
    ndim = len(shape)
    if block_shape is not None:
        if len(block_shape) != ndim or min(block_shape) < 1:
            raise ValueError(f"block_shape {block_shape} does not fit an image of {shape}")
        block = tuple(min(int(side), size) for side, size in zip(block_shape, shape,
                                                                 strict=True))
    else:
        voxels = min(BLOCK_VOXEL_CAP, memory_budget // (MIN_BLOCKS_IN_BUDGET * bytes_per_voxel))
        block = _sides(shape, chunk, halo, voxels)
    block_bytes = bytes_per_voxel * math.prod(min(side + 2 * halo, size)
                                              for side, size in zip(block, shape, strict=True))
    if block_bytes > memory_budget and block_shape is None:
        raise ValueError(f"memory_budget of {memory_budget} bytes is too small: a block of "
                         f"{block} voxels with a halo of {halo} needs about {block_bytes} bytes")
    count = math.prod(math.ceil(size / side) for size, side in zip(shape, block, strict=True))
    workers = max(1, min(processes, memory_budget // max(1, block_bytes), count))
    temp_chunk = tuple(c if side % c == 0 else side for c, side in zip(chunk, block,
                                                                        strict=True))
    return BlockPlan(tuple(shape), block, halo, temp_chunk, workers, block_bytes)


def _sides(shape: tuple[int, ...], chunk: tuple[int, ...], halo: int,
           voxels: int) -> tuple[int, ...]:
    """Near-cubic core sides whose haloed block holds about ``voxels``; axes shorter than
    that are taken whole and their share goes to the others."""
    ndim = len(shape)
    whole = [False] * ndim
    while True:
        fixed = math.prod(size for size, w in zip(shape, whole, strict=True) if w)
        free = ndim - sum(whole)
        if free == 0:
            return tuple(shape)
        side = (voxels / fixed) ** (1 / free) - 2 * halo
        grown = [w or size <= side for size, w in zip(shape, whole, strict=True)]
        if grown == whole:
            break
        whole = grown
    sides = []
    for size, step, w in zip(shape, chunk, whole, strict=True):
        if w:
            sides.append(size)
        elif side >= step:
            sides.append(int(side // step) * step)
        else:
            sides.append(max(MIN_BLOCK_SIDE, halo, int(side)))
    return tuple(min(s, size) for s, size in zip(sides, shape, strict=True))


class ArrayReader:
    """Reads boxes of one channel of a channel-first zarr array chunk by chunk, with no cache
    (through ShardedArrayReader when the layout is ours, else through zarr)."""

    def __init__(self, path: str | Path | Location) -> None:
        location = as_location(path)
        local = location.local_path
        self.path = local if local is not None else location
        self.array = zarr.open_array(str(local) if local is not None else location.zarr_store(),
                                     mode="r", zarr_format=3)
        self.shape = tuple(int(side) for side in self.array.shape[1:])
        self.dtype = numpy.dtype(self.array.dtype)
        self.chunk = tuple(int(side) for side in self.array.chunks[1:])
        reader = open_shard_reader(self.path)
        ok = reader is not None and (reader.shape, reader.chunk_shape) == (
            tuple(self.array.shape), tuple(self.array.chunks)) and reader.chunk_shape[0] == 1
        self._reader: ShardedArrayReader | None = reader if ok else None

    def read(self, channel: int, box: Box) -> numpy.ndarray:
        """Voxels ``box`` of ``channel`` as a native-order array of the box's shape."""
        if self._reader is None:
            region = self.array[(channel, *(slice(low, high) for low, high in box))]
            return numpy.asarray(region).astype(self.dtype.newbyteorder("="), copy=False)
        out = numpy.empty(tuple(high - low for low, high in box),
                          dtype=self.dtype.newbyteorder("="))
        ranges = [range(low // side, (high - 1) // side + 1)
                  for (low, high), side in zip(box, self.chunk, strict=True)]
        for index in itertools.product(*ranges):
            data = self._reader.read_chunk((channel, *index))[0]
            source, target = [], []
            for i, (low, high), side in zip(index, box, self.chunk, strict=True):
                start, stop = max(low, i * side), min(high, (i + 1) * side)
                source.append(slice(start - i * side, stop - i * side))
                target.append(slice(start - low, stop - low))
            out[tuple(target)] = data[tuple(source)]
        return out
