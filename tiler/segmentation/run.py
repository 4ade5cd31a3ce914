"""segment_pyramid: blockwise segmentation of an OME-Zarr pyramid in bounded memory, all cores."""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy
import zarr
import zarr.codecs

from tiler.cluster import connect, run_bounded
from tiler.render import open_pyramid
from tiler.segmentation.blocks import ArrayReader, BlockPlan, plan_blocks
from tiler.segmentation.labels_pyramid import FinalLabels, write_label_pyramid
from tiler.segmentation.measure import combine_stats, object_table, unit_suffix
from tiler.segmentation.methods import BYTES_PER_VOXEL, global_threshold, method_halo
from tiler.segmentation.outputs import (
    column_names,
    diameter_stats,
    histograms,
    write_csv,
    write_json,
    write_objects,
)
from tiler.segmentation.params import ParameterError, validate_params
from tiler.segmentation.stitch import face_pairs, number_objects, resolve
from tiler.storage import Location
from tiler.segmentation.worker import (
    WorkerSetup,
    clear_worker,
    init_worker,
    run_block,
    run_shared_block,
)

__all__ = ["DEFAULT_MEMORY_BUDGET", "SegmentationResult", "segment_pyramid"]

#: Working memory of a segmentation by default, in bytes (see segment_pyramid).
DEFAULT_MEMORY_BUDGET = 1 << 30
#: Global thresholds are computed on the largest pyramid level with at most this many voxels.
THRESHOLD_LEVEL_VOXELS = 1 << 22
#: The files a segmentation writes into its destination folder, and its scratch folder there.
LABELS_NAME, MEASUREMENTS_NAME = "labels.ome.zarr", "measurements.csv"
OBJECTS_NAME, SUMMARY_NAME = "objects.npy", "summary.json"
WORK_NAME = ".segmentation-work"
#: Progress: the blocks end at BLOCKS_DONE, stitching and measuring at STITCHED, the label
#: pyramid at LABELS_DONE.
BLOCKS_DONE, STITCHED, LABELS_DONE = 0.7, 0.75, 0.97
#: Blocks queued per worker process (more would hold finished results longer).
TASKS_PER_WORKER = 2
#: Start method of worker processes: never plain fork, the caller may run threads.
START_METHOD = "forkserver"
#: With processes=None, images with fewer voxels than this run in this process: starting
#: worker processes (a few seconds of imports) would take longer than the work.
POOL_MIN_VOXELS = 1 << 24

ProgressCallback = Callable[[float, str], None]


@dataclass
class SegmentationResult:
    """What segment_pyramid wrote: the summary (as in summary.json) and the files' paths."""

    summary: dict
    object_count: int
    labels_path: Path
    measurements_path: Path
    objects_path: Path
    run: dict  # how it ran (blocks, block shape, halo, processes): provenance, not a result, so not in summary.json


def segment_pyramid(pyramid_path: str | os.PathLike | Location, dest_dir: str | os.PathLike, params: dict,
                    *, memory_budget: int = DEFAULT_MEMORY_BUDGET, processes: int | None = None,
                    progress: ProgressCallback | None = None, classifier: Any = None,
                    block_shape: tuple[int, ...] | None = None,
                    scheduler: str | None = None, source_image: str | None = None) -> SegmentationResult:
    """Segment one channel of the pyramid at ``pyramid_path`` into the empty folder ``dest_dir``.

    Writes labels.ome.zarr (an NGFF label pyramid with the image's levels), measurements.csv,
    objects.npy (see tiler.segmentation.measure) and summary.json.  ``params`` are checked by
    validate_params (ParameterError).  The image is cut into blocks (with a halo where the
    method needs context) whose size follows ``memory_budget`` (bytes of working arrays; the
    interpreter and the per-object tables, a few hundred bytes an object, come on top),
    never the number of processes; ``processes`` worker processes (None: all cores, or this
    process for images under POOL_MIN_VOXELS; 1: in this process) run as many blocks at
    once as the budget holds.  Like any multiprocessing, a script calling this with several
    processes needs the ``if __name__ == "__main__":`` guard (workers start by forkserver).
    Objects cut by block faces are joined, then numbered by their first voxel in raster
    order: the same inputs give byte-identical files whatever the process count
    (how it ran is in ``SegmentationResult.run``, not in the files).  ``classifier`` is the trained classifier of the
    "classifier" method.  ``block_shape`` forces the block shape (for tests).
    ``progress(fraction, message)`` is called from this thread.  On any error the files
    written so far are removed.

    ``scheduler`` (a dask.distributed address such as "tcp://host:8786") runs the blocks as
    tasks on that cluster instead of local processes (``processes`` is then ignored), with
    byte-identical files: as many blocks at once as the cluster has threads and
    ``memory_budget`` holds (the budget spans the whole cluster: raise it for big clusters).
    The workers read the image at ``pyramid_path`` and write blocks into a scratch folder in
    ``dest_dir``, so both must be the same paths on every worker (a shared filesystem).  The
    label pyramid and the measurements are made here.  ClusterUnavailable (a TilerError)
    names an unreachable address.  ``pyramid_path`` may be a Location in an object store
    (the workers then read it from there).  ``source_image`` is the image reference written into
    the labels' ``image-label`` metadata (default: the path from the labels to the image, or
    the image's URL in an object store).
    """
    dest = Path(dest_dir)
    if not dest.is_dir():
        raise FileNotFoundError(f"destination folder {dest} does not exist")
    if any(dest.iterdir()):
        raise FileExistsError(f"destination folder {dest} is not empty")
    pyramid = open_pyramid(pyramid_path)
    params = validate_params(params, pyramid.ndim, pyramid.shape[0])
    _check_classifier(params, classifier, pyramid.ndim)
    report = _Progress(progress)
    report(0.0, "computing the threshold")
    threshold, threshold_level = _threshold(pyramid, params)
    image = ArrayReader(pyramid.level_location(0))
    per_voxel = getattr(classifier, "bytes_per_voxel", None) or BYTES_PER_VOXEL[params["method"]]
    if processes is None:
        processes = (os.cpu_count() or 1) if math.prod(image.shape) >= POOL_MIN_VOXELS else 1
    plan = plan_blocks(image.shape, image.chunk, method_halo(params, classifier), per_voxel,
                       memory_budget, max(1, processes), block_shape)
    work = dest / WORK_NAME
    try:
        (work / "faces").mkdir(parents=True)
        labels_array = _create_label_array(work / "labels.zarr", plan)
        setup = WorkerSetup(_portable(pyramid.level_location(0)), params["channel"], plan, params, threshold,
                            str(labels_array), str(work / "faces"), classifier)
        if scheduler is None:
            stats, ran_on = _run_blocks(setup, report), {"processes": plan.workers}
        else:
            stats, ran_on = _run_blocks_on_cluster(setup, report, scheduler, memory_budget)
        report(BLOCKS_DONE, "joining objects across block faces")
        counts = numpy.array([len(block["voxels"]) for block in stats], dtype=numpy.int64)
        offsets = numpy.concatenate([[0], numpy.cumsum(counts)[:-1]]).astype(numpy.int64)
        rows = {key: numpy.concatenate([block[key] for block in stats]) for key in stats[0]}
        del stats
        classes = numpy.concatenate([[0], rows["class"]]).astype(numpy.uint8)
        pairs = face_pairs(work / "faces", plan, offsets, classes,
                           params.get("connectivity", 1), overlap=params["method"] == "watershed")
        group, count = number_objects(resolve(int(counts.sum()), pairs), rows["voxels"],
                                      rows["first"], params["min_size"])
        unit = pyramid.metadata.unit
        voxel_size = tuple(pyramid.metadata.scales[0]) if unit else (1.0,) * pyramid.ndim
        table = object_table(combine_stats(rows, group, count), plan.shape, voxel_size)
        del rows
        final = numpy.concatenate([[0], numpy.where(group >= 0, group + 1, 0)]).astype(numpy.uint32)
        report(STITCHED, f"writing the label pyramid of {count} objects")
        labels = FinalLabels(ArrayReader(labels_array), plan, offsets, counts, final)
        source = source_image or _source_reference(pyramid, dest / LABELS_NAME)
        write_label_pyramid(pyramid, dest / LABELS_NAME, labels, threads=plan.workers,
                            memory_budget=memory_budget, source_image=source,
                            progress=report.part(STITCHED, LABELS_DONE))
        report(LABELS_DONE, "writing measurements")
        write_objects(dest / OBJECTS_NAME, table)
        write_csv(dest / MEASUREMENTS_NAME, table, unit)
        summary = write_json(dest / SUMMARY_NAME, _summary(
            pyramid, params, plan, table, threshold, threshold_level, voxel_size, classifier))
    except BaseException:
        for name in (OBJECTS_NAME, MEASUREMENTS_NAME, SUMMARY_NAME):
            (dest / name).unlink(missing_ok=True)
        shutil.rmtree(dest / LABELS_NAME, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(1.0, f"done: {count} objects")
    run = {"blocks": plan.count, "block_shape": list(plan.block), "halo": plan.halo, **ran_on}
    return SegmentationResult(summary, count, dest / LABELS_NAME, dest / MEASUREMENTS_NAME, dest / OBJECTS_NAME, run)


def _check_classifier(params: dict, classifier: Any, ndim: int) -> None:
    if params["method"] != "classifier":
        return
    if classifier is None:
        raise ParameterError("method 'classifier' needs a trained classifier; none was given")
    if int(getattr(classifier, "ndim", ndim)) != ndim:
        raise ParameterError(f"the classifier was trained on {classifier.ndim}D images; this "
                             f"image is {ndim}D")


def _threshold(pyramid, params: dict) -> tuple[float | None, int | None]:
    """(global threshold, level it was computed on) for the threshold and watershed methods."""
    if params["method"] not in ("threshold", "watershed"):
        return None, None
    if params["algorithm"] == "manual":
        return float(params["value"]), None
    level = next((index for index, shape in enumerate(pyramid.levels)
                  if math.prod(shape) <= THRESHOLD_LEVEL_VOXELS), len(pyramid.levels) - 1)
    reader = ArrayReader(pyramid.level_location(level))
    data = reader.read(params["channel"], tuple((0, side) for side in reader.shape))
    return global_threshold(data, params), level


def _portable(location: Location) -> str | Location:
    """What block processes open the image from: a local path, or the Location in an object store."""
    return str(location.local_path) if location.local_path is not None else location


def _absolute(image: str | Location) -> str | Location:
    return image if isinstance(image, Location) else os.path.abspath(image)


def _source_reference(pyramid, labels: Path) -> str:
    """The image a label pyramid belongs to: a path relative to it, or the image's URL in an object store."""
    local = pyramid.location.local_path
    if local is None:
        return pyramid.location.url
    return Path(os.path.relpath(local.resolve(), labels.resolve())).as_posix()


def _create_label_array(path: Path, plan: BlockPlan) -> Path:
    """The provisional label array: uint32, one shard per block (workers never share one)."""
    zarr.create_array(store=str(path), shape=(1, *plan.shape), dtype="uint32",
                      chunks=(1, *plan.chunk), shards=(1, *plan.block), fill_value=0,
                      compressors=zarr.codecs.BloscCodec(cname="lz4", clevel=1, typesize=4,
                                                         shuffle="bitshuffle"),
                      zarr_format=3)
    return path


def _run_blocks(setup: WorkerSetup, report: _Progress) -> list[dict[str, numpy.ndarray]]:
    """Every block's statistics, in block order: inline for one worker, else on a pool of
    worker processes that get the setup (and the classifier) once, then block indices."""
    plan = setup.plan
    results: list[dict[str, numpy.ndarray] | None] = [None] * plan.count

    def finished(done: int) -> None:
        report(BLOCKS_DONE * done / plan.count, f"block {done} of {plan.count}")

    if plan.workers == 1:
        init_worker(setup)
        try:
            for index in range(plan.count):
                results[index] = run_block(index)
                finished(index + 1)
        finally:
            clear_worker()
        return results  # type: ignore[return-value]
    context = multiprocessing.get_context(START_METHOD)
    context.set_forkserver_preload(["tiler.segmentation.worker"])
    pool = ProcessPoolExecutor(plan.workers, mp_context=context, initializer=init_worker,
                               initargs=(setup,))
    pending: dict[Future, int] = {}
    queue = iter(range(plan.count))
    try:
        done = 0
        while True:
            for index in queue:
                pending[pool.submit(run_block, index)] = index
                if len(pending) >= TASKS_PER_WORKER * plan.workers:
                    break
            if not pending:
                break
            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in ready:
                results[pending.pop(future)] = future.result()
                done += 1
                finished(done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results  # type: ignore[return-value]


def _run_blocks_on_cluster(setup: WorkerSetup, report: _Progress, scheduler: str,
                           memory_budget: int) -> tuple[list[dict[str, numpy.ndarray]], dict]:
    """_run_blocks as dask tasks: the setup is sent once, then block indices, as many at once
    as the cluster's threads and the budget allow (one more per thread queued when the threads
    are the limit); how it ran ("processes": blocks at once, "scheduler")."""
    plan = setup.plan
    results: list[dict[str, numpy.ndarray] | None] = [None] * plan.count
    done = 0

    def finished(index: int, stats: dict[str, numpy.ndarray]) -> None:
        nonlocal done
        results[index], done = stats, done + 1
        report(BLOCKS_DONE * done / plan.count, f"block {done} of {plan.count}")

    with connect(scheduler) as cluster:
        shared = cluster.share(replace(  # workers may run elsewhere: absolute paths
            setup, key=cluster.run_id, image_array=_absolute(setup.image_array),
            labels_array=os.path.abspath(setup.labels_array), faces=os.path.abspath(setup.faces)))
        workers = max(1, min(cluster.threads, memory_budget // max(1, plan.block_bytes),
                             plan.count))
        limit = TASKS_PER_WORKER * workers if workers >= cluster.threads else workers
        run_bounded(lambda index: cluster.submit(run_shared_block, shared, index),
                    range(plan.count), limit, finished)
    return results, {"processes": workers, "scheduler": scheduler}  # type: ignore[return-value]


def _summary(pyramid, params: dict, plan: BlockPlan, table: numpy.ndarray,
             threshold: float | None, threshold_level: int | None,
             voxel_size: tuple[float, ...], classifier: Any) -> dict[str, Any]:
    foreground = int(table["voxels"].sum())
    unit = pyramid.metadata.unit
    size_name = "pixel_size" if pyramid.ndim == 2 else "voxel_size"
    return {
        "method": params["method"],
        "params": params,
        "threshold": threshold,
        "threshold_level": threshold_level,
        "image": {"shape": list(plan.shape), "ndim": pyramid.ndim, "dtype": pyramid.dtype.name,
                  "channel": params["channel"],
                  "channel_name": pyramid.channel_names[params["channel"]]},
        "unit": unit,
        "unit_symbol": unit_suffix(unit),
        size_name: list(voxel_size) if unit else None,
        "object_count": len(table),
        "foreground_voxels": foreground,
        "foreground_fraction": foreground / math.prod(plan.shape),
        **diameter_stats(table),
        **histograms(table),
        "class_names": list(classifier.class_names) if params["method"] == "classifier"
        else ["background", "object"],
        "columns": column_names(table.dtype.names, unit),
    }


class _Progress:
    """Forwards progress to the caller, never going backwards."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback, self._last = callback, 0.0

    def __call__(self, fraction: float, message: str) -> None:
        if self._callback is not None:
            self._last = max(self._last, min(1.0, fraction))
            self._callback(self._last, message)

    def part(self, start: float, end: float) -> ProgressCallback:
        """A callback mapping 0..1 onto start..end of this one."""
        return lambda fraction, message: self(start + (end - start) * fraction, message)
