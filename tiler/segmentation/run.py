"""segment_pyramid: blockwise segmentation of an OME-Zarr pyramid in bounded memory, all cores."""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import zarr
import zarr.codecs

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
from tiler.segmentation.worker import WorkerSetup, clear_worker, init_worker, run_block

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


def segment_pyramid(pyramid_path: str | os.PathLike, dest_dir: str | os.PathLike, params: dict,
                    *, memory_budget: int = DEFAULT_MEMORY_BUDGET, processes: int | None = None,
                    progress: ProgressCallback | None = None, classifier: Any = None,
                    block_shape: tuple[int, ...] | None = None) -> SegmentationResult:
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
    image = ArrayReader(Path(pyramid.path) / pyramid.metadata.level_paths[0])
    per_voxel = getattr(classifier, "bytes_per_voxel", None) or BYTES_PER_VOXEL[params["method"]]
    if processes is None:
        processes = (os.cpu_count() or 1) if math.prod(image.shape) >= POOL_MIN_VOXELS else 1
    plan = plan_blocks(image.shape, image.chunk, method_halo(params, classifier), per_voxel,
                       memory_budget, max(1, processes), block_shape)
    work = dest / WORK_NAME
    try:
        (work / "faces").mkdir(parents=True)
        labels_array = _create_label_array(work / "labels.zarr", plan)
        setup = WorkerSetup(str(image.path), params["channel"], plan, params, threshold,
                            str(labels_array), str(work / "faces"), classifier)
        stats = _run_blocks(setup, report)
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
        source = Path(os.path.relpath(Path(pyramid.path).resolve(),
                                      (dest / LABELS_NAME).resolve())).as_posix()
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
    run = {"blocks": plan.count, "block_shape": list(plan.block), "halo": plan.halo, "processes": plan.workers}
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
    reader = ArrayReader(Path(pyramid.path) / pyramid.metadata.level_paths[level])
    data = reader.read(params["channel"], tuple((0, side) for side in reader.shape))
    return global_threshold(data, params), level


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
