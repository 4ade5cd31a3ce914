"""One block of a segmentation, in a worker process, a dask task or inline: read, segment, save."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import zarr

from tiler.cluster import cached
from tiler.segmentation.blocks import ArrayReader, BlockPlan
from tiler.segmentation.measure import block_stats
from tiler.segmentation.methods import segment_block
from tiler.segmentation.stitch import save_faces
from tiler.storage import Location
from tiler.zarr_shards import ShardFileWriter

__all__ = ["WorkerSetup", "clear_worker", "init_worker", "run_block", "run_shared_block"]


@dataclass
class WorkerSetup:
    """What every worker needs, sent once (pool initializer): where the level-0 image and the
    provisional label array are, the plan, the checked params, the global threshold (threshold
    and watershed methods) and the trained classifier (classifier method).  ``key`` names the
    run on a dask cluster (see run_shared_block)."""

    image_array: str | Location  # a local path, or the level's Location in an object store
    channel: int
    plan: BlockPlan
    params: dict
    threshold: float | None
    labels_array: str
    faces: str
    classifier: Any = None
    key: str = ""


@dataclass
class _Worker:
    setup: WorkerSetup
    image: ArrayReader
    labels: ShardFileWriter


_worker: _Worker | None = None


def init_worker(setup: WorkerSetup) -> None:
    """Open the image and the provisional label array for this process's blocks."""
    global _worker
    _worker = _open(setup)


def _open(setup: WorkerSetup) -> _Worker:
    array = zarr.open_array(setup.labels_array, mode="r+", zarr_format=3)
    return _Worker(setup, ArrayReader(setup.image_array),
                   ShardFileWriter(array, setup.labels_array))


def clear_worker() -> None:
    """Forget what init_worker opened (after an inline run)."""
    global _worker
    _worker = None


def run_block(index: int) -> dict[str, numpy.ndarray]:
    """Segment block ``index``: its core labels go to the provisional label array, its face
    slabs to the faces folder; returns the statistics of its objects (see block_stats)."""
    if _worker is None:
        raise RuntimeError("init_worker was not called in this process")
    return _run(_worker, index)


def run_shared_block(setup: WorkerSetup, index: int) -> dict[str, numpy.ndarray]:
    """run_block as a dask task: ``setup`` (shared once per run) is opened once per worker
    process and kept, by ``setup.key``, until the run ends (tiler.cluster.cached)."""
    return _run(cached(f"{setup.key}-blocks", lambda: _open(setup)), index)


def _run(worker: _Worker, index: int) -> dict[str, numpy.ndarray]:
    setup, plan = worker.setup, worker.setup.plan
    core, haloed = plan.core(index), plan.haloed(index)
    data = worker.image.read(setup.channel, haloed)
    inner = tuple(slice(c_low - h_low, c_high - h_low)
                  for (c_low, c_high), (h_low, _) in zip(core, haloed, strict=True))
    labels = segment_block(data, inner, setup.params, setup.threshold, setup.classifier)
    values = data[inner]
    del data
    origin = tuple(low for low, _ in core)
    stats = block_stats(labels.core, labels.count, values, origin, labels.classes)
    worker.labels.write((0, *origin), labels.core[numpy.newaxis].astype(numpy.uint32))
    save_faces(Path(setup.faces), plan, index, labels)
    return stats
