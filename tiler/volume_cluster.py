"""Filling a volume pyramid on a dask cluster: level-0 units and the shards below them as tasks."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import zarr

from tiler.cluster import SourceRecipe, connect, run_bounded, source_recipe
from tiler.volume_pyramid import UNIT_MEMORY_FACTOR, NearestLevelWriter
from tiler.volume_units import Box, LevelWriter, UnitPlan, boxes

__all__ = ["VolumeJob", "fill_on_cluster"]

#: A level's box and voxels a unit made but did not write (levels of less than a chunk per
#: unit, whose shards several units share): written by the client, in one process.
Piece = tuple[int, Box, numpy.ndarray]


@dataclass
class VolumeJob:
    """What every volume task needs: the source, the pyramid folder and its level arrays
    (absolute paths, the same on every worker), the plan and the downsampling."""

    source: SourceRecipe
    root: str
    level_paths: list[str]
    plan: UnitPlan
    nearest: bool

    def unit(self, box: Box) -> tuple[int, list[Piece]]:
        """Write level-0 unit ``box`` and its share of the in-memory levels; (voxels, pieces)."""
        with ThreadPoolExecutor(1, thread_name_prefix="tiler-volume-task") as inner:
            writer = self._writer(inner)
            voxels = writer.unit_task(box)
        return voxels, writer.pieces

    def shard(self, index: int, box: Box) -> int:
        """Write shard ``box`` of level ``index`` (below the in-memory levels); voxels."""
        with ThreadPoolExecutor(1, thread_name_prefix="tiler-volume-task") as inner:
            return self._writer(inner).shard_task(index, box)

    def _writer(self, inner: ThreadPoolExecutor) -> _TaskWriter:
        group = zarr.open_group(self.root, mode="r+", zarr_format=3)
        arrays = [group[path] for path in self.level_paths]
        writer_class = _NearestTaskWriter if self.nearest else _MeanTaskWriter
        return writer_class(self.source.open(), arrays, self.root, self.plan, inner, 1,
                            _ignore_progress)


def _ignore_progress(voxels: int, message: str) -> None:
    """Progress inside a task: the client reports it when the task returns."""


class _TaskWriter(LevelWriter):
    """A LevelWriter inside one task: it keeps the pieces it would write under shard locks
    (shards shared with other units, maybe in other processes) for the client to write."""

    pieces: list[Piece]

    def unit_task(self, box: Box) -> int:
        self.pieces = []
        return self._unit(box)

    def shard_task(self, index: int, box: Box) -> int:
        return self._downsample_shard(index, box)

    def _write_locked(self, index: int, box: Box, data: numpy.ndarray) -> None:
        self.pieces.append((index, box, data))


class _MeanTaskWriter(_TaskWriter):
    """Levels are means of the level above (images)."""


class _NearestTaskWriter(_TaskWriter, NearestLevelWriter):
    """Levels keep the first voxel of each block of the level above (label volumes)."""


def _run_unit(job: VolumeJob, box: Box) -> tuple[int, list[Piece]]:
    return job.unit(box)


def _run_shard(job: VolumeJob, index: int, box: Box) -> int:
    return job.shard(index, box)


def fill_on_cluster(scheduler: str, source: Any, arrays: list[zarr.Array], root: Path,
                    plan: UnitPlan, *, nearest: bool, memory_budget: int,
                    advance: Callable[[int, str], None]) -> None:
    """LevelWriter.run as tasks on the dask cluster at ``scheduler``: level-0 units, then the
    shards of the levels below them, level by level, as many at once as the cluster's threads
    and ``memory_budget`` (for the whole cluster) allow.  The same files as a local run: the
    plan is the caller's, and pieces of shared shards are written here through zarr."""
    levels = plan.levels
    voxel_bytes = arrays[0].shape[0] * numpy.dtype(arrays[0].dtype).itemsize
    layer_bytes = UNIT_MEMORY_FACTOR * levels[0].chunks[0] * plan.unit[1] * plan.unit[2] * voxel_bytes
    units = boxes(levels[0].shape, plan.unit)
    done = 0

    def unit_done(box: Box, result: tuple[int, list[Piece]]) -> None:
        nonlocal done
        voxels, pieces = result
        for index, (z0, z1, y0, y1, x0, x1), data in pieces:
            arrays[index][:, z0:z1, y0:y1, x0:x1] = data
        done += 1
        advance(voxels, f"block {done} of {len(units)}")

    with connect(scheduler) as cluster:
        limit = max(1, min(cluster.threads, memory_budget // max(1, layer_bytes)))
        job = cluster.share(VolumeJob(source_recipe(source, cluster.run_id),
                                      os.path.abspath(root), [array.path for array in arrays],
                                      plan, nearest))
        run_bounded(lambda box: cluster.submit(_run_unit, job, box), units, limit, unit_done)
        for index in range(plan.in_pass + 1, len(levels)):
            message = f"level {index + 1} of {len(levels)}"
            run_bounded(lambda box, index=index: cluster.submit(_run_shard, job, index, box),
                        boxes(levels[index].shape, levels[index].shards), limit,
                        lambda box, voxels, message=message: advance(voxels, message))
