"""Single-pass 2D pyramid build: level-0 shards in Z-order, every lower level made in memory."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

import numpy

from tiler.cluster import SourceRecipe, connect, source_recipe
from tiler.downsample import mean_downsample_2x
from tiler.readers.base import ImageSource
from tiler.zarr_shards import ShardFileWriter, morton_order

__all__ = ["SHARD_MEMORY_BUDGET", "ShardJob", "build_levels", "max_tasks_in_flight"]

#: Bytes of shard data (pixels read, downsampled and encoded) allowed in flight at once.
SHARD_MEMORY_BUDGET = 192 * 2**20
#: Working copies of one shard a task holds at its peak (source block, its mean, encoded chunks).
COPIES_PER_TASK = 3

#: Called from the calling thread after each shard: (level, pixels written).
ShardDone = Callable[[int, int], None]


@dataclass
class _Parent:
    """A shard of level >= 1 being assembled from the 2x2 means of its children."""

    block: numpy.ndarray | None
    waiting: int


@dataclass
class ShardJob:
    """Writes one shard of any level and returns its downsample (the shard itself if last):
    the work of one task, picklable for a dask cluster when ``source`` is a SourceRecipe."""

    source: ImageSource | SourceRecipe
    writers: list[ShardFileWriter]
    shapes: list[tuple[int, int]]
    size: int
    downsample: Callable[[numpy.ndarray], numpy.ndarray]

    def __call__(self, level: int, row: int, col: int,
                 block: numpy.ndarray | None) -> tuple[numpy.ndarray, int]:
        y0, x0 = row * self.size, col * self.size
        if block is None:
            source = self.source.open() if isinstance(self.source, SourceRecipe) else self.source
            height, width = self.shapes[0]
            block = source.read_region(y0, min(y0 + self.size, height),
                                       x0, min(x0 + self.size, width))
        self.writers[level].write((0, y0, x0), block)
        pixels = block.shape[1] * block.shape[2]
        if level == len(self.shapes) - 1:
            return block, pixels
        return self.downsample(block), pixels


def _run_job(job: ShardJob, level: int, row: int, col: int,
             block: numpy.ndarray | None) -> tuple[numpy.ndarray, int]:
    return job(level, row, col, block)


def max_tasks_in_flight(workers: int, shard_bytes: int,
                        memory_budget: int = SHARD_MEMORY_BUDGET) -> int:
    """Shard tasks queued or running at once: 2 per worker, fewer when shards are big."""
    by_memory = memory_budget // max(1, COPIES_PER_TASK * shard_bytes)
    return max(1, min(2 * workers, by_memory))


def build_levels(source: ImageSource, writers: list[ShardFileWriter],
                 shapes: list[tuple[int, int]], shard_size: int, workers: int,
                 shard_done: ShardDone, *,
                 downsample: Callable[[numpy.ndarray], numpy.ndarray] = mean_downsample_2x,
                 memory_budget: int = SHARD_MEMORY_BUDGET,
                 scheduler: str | None = None) -> numpy.ndarray:
    """Write every level of the pyramid, reading each source pixel once; return the last level.

    Level-0 shards are read from ``source`` in Z-order on a pool of ``workers`` threads; each
    task writes its shard and returns its 2x2 mean, a quadrant of a level-1 shard.  A parent
    shard whose children have all arrived is written (and halved) by a task of its own, up to
    the last level.  Z-order closes parents early, so only a few partial shards per level
    and a bounded number of tasks are ever held: memory does not grow with the image size.
    ``downsample`` makes a (c, ceil(h/2), ceil(w/2)) block from a (c, h, w) one (the 2x2 mean,
    or ``nearest_downsample_2x`` for labels); ``memory_budget`` bounds the shard data in flight.

    With ``scheduler`` (a dask.distributed address) the shard tasks run on that cluster instead
    of threads, as many at once as its threads and the budget allow; parents are assembled
    here as locally, so the files are the same.  The workers reopen the source from its path
    (or get it pickled, see tiler.cluster.source_recipe) and write the shard files themselves:
    the source file and the writers' folder must be the same paths on every worker.
    """
    builder = _Builder(source, writers, shapes, shard_size, downsample)
    channels = source.shape[0]
    shard_bytes = channels * shard_size * shard_size * numpy.dtype(source.dtype).itemsize
    if scheduler is None:
        limit = max_tasks_in_flight(workers, shard_bytes, memory_budget)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tiler-pyramid") as pool:
            return builder.run(pool, limit, shard_done)
    with connect(scheduler) as cluster:
        job = cluster.share(replace(builder.job, source=source_recipe(source, cluster.run_id)))
        limit = max_tasks_in_flight(cluster.threads, shard_bytes, memory_budget)
        return builder.run(cluster, limit, shard_done, shared_job=job)


class _Builder:
    """The bookkeeping of build_levels: which shards exist and which parents are complete."""

    def __init__(self, source: ImageSource, writers: list[ShardFileWriter],
                 shapes: list[tuple[int, int]], shard_size: int,
                 downsample: Callable[[numpy.ndarray], numpy.ndarray] = mean_downsample_2x
                 ) -> None:
        self.source = source
        self.downsample = downsample
        self.writers = writers
        self.shapes = shapes
        self.size = shard_size
        self.last = len(shapes) - 1
        self.grids = [(math.ceil(h / shard_size), math.ceil(w / shard_size)) for h, w in shapes]
        self.parents: dict[tuple[int, int, int], _Parent] = {}
        self.job = ShardJob(source, writers, shapes, shard_size, downsample)

    def run(self, pool: Any, limit: int, shard_done: ShardDone,
            shared_job: Any = None) -> numpy.ndarray:
        """Fill every level with tasks on ``pool`` (an executor, or a tiler.cluster.Cluster
        given the ShardJob it shares as ``shared_job``); return the last level."""

        def submit(level: int, row: int, col: int, block: numpy.ndarray | None) -> Future:
            if shared_job is None:
                return pool.submit(self._task, level, row, col, block)
            shared_block = None if block is None else pool.share(block)  # no big task graph
            return pool.submit(_run_job, shared_job, level, row, col, shared_block)

        pending: dict[Future, tuple[int, int, int]] = {}
        level0 = iter(morton_order(self.grids[0]))
        lowest: numpy.ndarray | None = None
        try:
            while True:
                while len(pending) < limit:
                    key = next(level0, None)
                    if key is None:
                        break
                    pending[submit(0, *key, None)] = (0, *key)
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    level, row, col = pending.pop(future)
                    result, pixels = future.result()
                    shard_done(level, pixels)
                    if level == self.last:
                        lowest = result
                        continue
                    parent = self._deliver(level, row, col, result)
                    if parent is not None:
                        block = self.parents.pop(parent).block
                        pending[submit(*parent, block)] = parent
        finally:
            for future in pending:
                future.cancel()
        if lowest is None:  # pragma: no cover - every run ends with the last level
            raise RuntimeError("the pyramid build ended before its last level")
        return lowest

    def _task(self, level: int, row: int, col: int,
              block: numpy.ndarray | None) -> tuple[numpy.ndarray, int]:
        """Write shard (row, col) of ``level``; return its 2x2 mean (the block itself if last)."""
        return self.job(level, row, col, block)

    def _deliver(self, level: int, row: int, col: int,
                 half: numpy.ndarray) -> tuple[int, int, int] | None:
        """File a child's mean into its parent; return the parent's key once it is complete."""
        key = (level + 1, row // 2, col // 2)
        parent = self.parents.get(key)
        if parent is None:
            parent = self.parents[key] = _Parent(None, self._child_count(*key))
        if parent.waiting == 1 and parent.block is None:  # the only child: its mean is the shard
            parent.block = half
        else:
            if parent.block is None:
                parent.block = numpy.empty((half.shape[0], *self._shard_shape(*key)), half.dtype)
            half_size = self.size // 2
            y0, x0 = (row % 2) * half_size, (col % 2) * half_size
            parent.block[:, y0:y0 + half.shape[1], x0:x0 + half.shape[2]] = half
        parent.waiting -= 1
        return key if parent.waiting == 0 else None

    def _child_count(self, level: int, row: int, col: int) -> int:
        rows, cols = self.grids[level - 1]
        return (min(2 * row + 2, rows) - 2 * row) * (min(2 * col + 2, cols) - 2 * col)

    def _shard_shape(self, level: int, row: int, col: int) -> tuple[int, int]:
        height, width = self.shapes[level]
        return (min(self.size, height - row * self.size), min(self.size, width - col * self.size))
