"""Filling a volume pyramid: level-0 units streamed layer by layer into the levels below them."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy
import zarr

from tiler.readers.volume_base import VolumeSource
from tiler.volume_levels import VolumeLevel, mean_downsample_3d
from tiler.zarr_shards import ShardFileWriter, ShardStream

__all__ = ["Box", "LevelWriter", "UnitPlan", "boxes", "shrink"]

Box = tuple[int, int, int, int, int, int]  # z0, z1, y0, y1, x0, x1


@dataclass(frozen=True)
class UnitPlan:
    """How a pyramid is filled: its levels, the level-0 unit (whole shards), units at once,
    how many levels below 0 each unit makes in memory, and which levels it writes as whole
    shards (the others, small, are written through zarr under shard locks)."""

    levels: list[VolumeLevel]
    unit: tuple[int, int, int]
    workers: int
    in_pass: int
    streamable: list[bool]


def boxes(shape: tuple[int, ...], step: tuple[int, ...]) -> list[Box]:
    """Boxes of ``step`` tiling a (z, y, x) ``shape``, z slowest; edge boxes clipped."""
    depth, height, width = shape
    return [(z, min(z + step[0], depth), y, min(y + step[1], height), x, min(x + step[2], width))
            for z in range(0, depth, step[0]) for y in range(0, height, step[1])
            for x in range(0, width, step[2])]


def shrink(box: Box, factor: tuple[int, int, int]) -> Box:
    """The box of the level below covering ``box`` (starts even, ends ceil-halved)."""
    z0, z1, y0, y1, x0, x1 = box
    fz, fy, fx = factor
    return (z0 // fz, -(-z1 // fz), y0 // fy, -(-y1 // fy), x0 // fx, -(-x1 // fx))


def _split(start: int, stop: int, parts: int) -> list[tuple[int, int]]:
    """Cut [start, stop) into at most ``parts`` contiguous, nearly equal ranges."""
    step = max(1, math.ceil((stop - start) / parts))
    return [(low, min(low + step, stop)) for low in range(start, stop, step)]


def _volume(box: Box) -> int:
    return (box[1] - box[0]) * (box[3] - box[2]) * (box[5] - box[4])


@dataclass
class _Level:
    """One level's share of a unit: its box, where its slices go, what waits to be stored
    (``pending``, until a chunk layer is whole) and to be downsampled (``carry``, an odd slice)."""

    index: int
    box: Box
    stream: ShardStream | None
    collected: numpy.ndarray | None = None
    pending: list[numpy.ndarray] = field(default_factory=list)
    stored_to: int = 0
    carry: numpy.ndarray | None = None
    down_to: int = 0


class LevelWriter:
    """Fills every level: level-0 units with the levels below them, then the remaining levels.

    A unit is read one chunk layer at a time; each layer is compressed into its shards, and
    halved into the next level's layer, down the in-memory levels.  Units run on the
    ``outer`` pool; compression and downsampling are spread over the ``inner`` pool, and so are
    reads when fewer units than threads run at once (else each unit reads its own layers).
    """

    def __init__(self, source: VolumeSource, arrays: list[zarr.Array], root: Path,
                 plan: UnitPlan, inner: ThreadPoolExecutor, threads: int,
                 advance: Callable[[int, str], None]) -> None:
        self.source, self.arrays, self.plan = source, arrays, plan
        self.writers = [ShardFileWriter(array, root) for array in arrays]
        self.inner, self.parts, self.advance = inner, 2 * threads, advance
        self.read_parts = max(1, threads // plan.workers)  # a layer read by this many threads
        self._locks: dict[tuple[int, ...], threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def run(self, outer: ThreadPoolExecutor) -> None:
        levels, workers = self.plan.levels, self.plan.workers
        units = boxes(levels[0].shape, self.plan.unit)
        for count, voxels in enumerate(run_bounded(outer, workers, self._unit, units), 1):
            self.advance(voxels, f"block {count} of {len(units)}")
        for index in range(self.plan.in_pass + 1, len(levels)):
            task = (lambda box, index=index: self._downsample_shard(index, box))
            for voxels in run_bounded(outer, workers, task, boxes(levels[index].shape,
                                                                  levels[index].shards)):
                self.advance(voxels, f"level {index + 1} of {len(levels)}")

    def _unit(self, box: Box) -> int:
        """Read one unit layer by layer and write it into every in-memory level; voxels done."""
        states, level_box = [], box
        for index in range(self.plan.in_pass + 1):
            if index:
                level_box = shrink(level_box, self.plan.levels[index].factor)
            stream = (self.writers[index].stream(level_box)
                      if self.plan.streamable[index] else None)
            states.append(_Level(index, level_box, stream, stored_to=level_box[0],
                                 down_to=level_box[0]))
        z0, z1 = box[:2]
        depth = self.plan.levels[0].chunks[0]
        for low in range(z0, z1, depth):
            layer = self._read_layer(low, min(low + depth, z1), box)
            self._feed(states, 0, layer, final=False)
            del layer  # not held while the next layer is read
        for index in range(len(states)):
            self._feed(states, index, None, final=True)
        for state in states:
            if state.stream is not None:
                state.stream.close()
            elif state.collected is not None:
                self._write_locked(state.index, state.box, state.collected)
        return sum(_volume(state.box) for state in states)

    def _read_layer(self, low: int, high: int, box: Box) -> numpy.ndarray:
        """Slices low:high of the unit ``box``, read by ``read_parts`` threads."""
        _, _, y0, y1, x0, x1 = box
        if self.read_parts == 1:  # as many units at once as threads: read as is, no copy
            return self.source.read_block(low, high, y0, y1, x0, x1)
        layer = numpy.empty((self.source.shape[0], high - low, y1 - y0, x1 - x0),
                            dtype=self.source.dtype)

        def read(a: int, b: int) -> None:
            layer[:, a - low:b - low] = self.source.read_block(a, b, y0, y1, x0, x1)

        self._parallel(read, _split(low, high, self.read_parts))
        return layer

    def _feed(self, states: list[_Level], index: int, data: numpy.ndarray | None,
              *, final: bool) -> None:
        """Hand slices to level ``index``: store whole chunk layers, pass halves further down."""
        state = states[index]
        if data is not None:
            state.pending.append(data)
        depth = self.plan.levels[index].chunks[0]
        waiting = sum(part.shape[1] for part in state.pending)
        while waiting >= depth or (final and waiting):
            joined = state.pending[0] if len(state.pending) == 1 else numpy.concatenate(
                state.pending, axis=1)
            take = min(depth, waiting)
            layer, rest = joined[:, :take], joined[:, take:]
            state.pending = [rest] if rest.shape[1] else []
            waiting -= take
            self._store(state, layer)
            if index < self.plan.in_pass:
                self._pass_down(states, state, layer, final=final and not waiting)
        if final and state.carry is not None and index < self.plan.in_pass:
            self._pass_down(states, state, state.carry[:, :0], final=True)  # a last odd slice

    def _store(self, state: _Level, layer: numpy.ndarray) -> None:
        z0, z1, y0, y1, x0, x1 = state.box
        low = state.stored_to
        if state.stream is not None:
            state.stream.write_layer(low, layer, self.inner.map)
        else:
            if state.collected is None:
                state.collected = numpy.zeros((layer.shape[0], z1 - z0, y1 - y0, x1 - x0),
                                              dtype=layer.dtype)
            state.collected[:, low - z0:low - z0 + layer.shape[1]] = layer
        state.stored_to = low + layer.shape[1]

    def _pass_down(self, states: list[_Level], state: _Level, layer: numpy.ndarray,
                   *, final: bool) -> None:
        """Downsample what is ready (pairs of slices when z halves) into the next level."""
        factor_z = self.plan.levels[state.index + 1].factor[0]
        if state.carry is not None:
            layer = numpy.concatenate([state.carry, layer], axis=1)
            state.carry = None
        usable = layer.shape[1] if final or factor_z == 1 else layer.shape[1] // 2 * 2
        if usable < layer.shape[1]:
            state.carry = layer[:, usable:]
        if usable:
            self._feed(states, state.index + 1, self._downsample(layer[:, :usable], factor_z),
                       final=False)

    def _downsample(self, block: numpy.ndarray, factor_z: int) -> numpy.ndarray:
        """mean_downsample_3d of ``block``, computed in z bands on the inner pool."""
        depth = block.shape[1]
        out = numpy.empty((block.shape[0], -(-depth // factor_z), -(-block.shape[2] // 2),
                           -(-block.shape[3] // 2)), dtype=block.dtype)

        def band(low: int, high: int) -> None:
            part = block[:, low * factor_z:min(high * factor_z, depth)]
            out[:, low:high] = mean_downsample_3d(part, factor_z)

        self._parallel(band, _split(0, out.shape[1], self.parts))
        return out

    def _downsample_shard(self, index: int, box: Box) -> int:
        """Make one shard of level ``index`` from the stored level above, layer by layer."""
        above, level = self.arrays[index - 1], self.plan.levels[index]
        z0, z1, y0, y1, x0, x1 = box
        fz, fy, fx = level.factor
        _, depth, height, width = above.shape
        stream = self.writers[index].stream(box)
        for low in range(z0, z1, level.chunks[0]):
            high = min(low + level.chunks[0], z1)
            region = above[:, low * fz:min(high * fz, depth), y0 * fy:min(y1 * fy, height),
                           x0 * fx:min(x1 * fx, width)]
            stream.write_layer(low, mean_downsample_3d(numpy.asarray(region), fz))
        stream.close()
        return _volume(box)

    def _write_locked(self, index: int, box: Box, data: numpy.ndarray) -> None:
        """Store ``data`` at ``box`` of level ``index`` through zarr, holding its shards' locks."""
        shards = self.plan.levels[index].shards
        ranges = [range(box[2 * a] // shards[a], -(-box[2 * a + 1] // shards[a])) for a in range(3)]
        keys = [(index, iz, iy, ix) for iz in ranges[0] for iy in ranges[1] for ix in ranges[2]]
        with self._locks_guard:
            locks = [self._locks.setdefault(key, threading.Lock()) for key in keys]
        for lock in locks:
            lock.acquire()
        try:
            z0, z1, y0, y1, x0, x1 = box
            self.arrays[index][:, z0:z1, y0:y1, x0:x1] = data
        finally:
            for lock in reversed(locks):
                lock.release()

    def _parallel(self, task: Callable[[int, int], None], ranges: list[tuple[int, int]]) -> None:
        """Run ``task(low, high)`` for every range on the inner pool; re-raise the first error."""
        futures = [self.inner.submit(task, low, high) for low, high in ranges]
        try:
            for future in futures:
                future.result()
        finally:
            for future in futures:
                future.cancel()


def run_bounded(pool: ThreadPoolExecutor, workers: int, task: Callable[[Box], int],
                items: Iterable[Box]) -> Iterator[int]:
    """Run ``task(box)`` for every box with at most ``workers`` queued; yield each result."""
    pending: set[Future] = set()
    queue = iter(items)
    try:
        while True:
            for item in queue:
                pending.add(pool.submit(task, item))
                if len(pending) >= workers:
                    break
            if not pending:
                return
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
    finally:
        for future in pending:
            future.cancel()
