"""Stream a VolumeSource into a sharded 3D OME-Zarr 0.5 pyramid in bounded memory, atomically."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy
import zarr
import zarr.codecs
from PIL import Image

from tiler.display import channel_displays, to_display_pixels
from tiler.ome_zarr_format import VOLUME_AXIS_NAMES, build_volume_attrs, level_path
from tiler.publish import publishing, refuse_existing
from tiler.pyramid import (
    THUMBNAIL_NAME,
    THUMBNAIL_SIZE,
    PyramidSummary,
    adjust_pyramid_attrs,
    check_downsample,
)
from tiler.readers.volume_base import VolumeSource
from tiler.volume_levels import VolumeLevel, nearest_downsample_3d, plan_volume_levels
from tiler.volume_units import Box, LevelWriter, UnitPlan

__all__ = ["DEFAULT_MEMORY_BUDGET", "UNIT_MEMORY_FACTOR", "NearestLevelWriter", "VolumeSummary",
           "plan_units", "write_volume_pyramid"]

#: Working memory a conversion may use by default, in bytes.
DEFAULT_MEMORY_BUDGET = 1 << 30
#: Memory a unit of work needs, in chunk layers of its voxels: the layer read, its compressed
#: chunks, downsampling temporaries and the partial layers of the levels below.
UNIT_MEMORY_FACTOR = 4
#: Blosc block size: a whole 64^3 chunk of 16-bit voxels (blosc clips it to the chunk).
BLOSC_BLOCK_BYTES = 1 << 19
#: Share of the progress bar given to writing levels; metadata and publishing take the rest.
LEVEL_PROGRESS_SHARE = 0.98

ProgressCallback = Callable[[float, str], None]


@dataclass
class VolumeSummary(PyramidSummary):
    """PyramidSummary of a volume: ``shape`` is (c, z, y, x), ``levels`` are (z, y, x) tuples.

    ``pixel_size`` stays the (y, x) voxel size so 2D-minded callers keep working; the full
    (z, y, x) size is ``voxel_size``.  ``chunks`` are the (z, y, x) chunk shapes per level.
    """

    voxel_size: tuple[float, float, float] | None = None
    chunks: list[tuple[int, int, int]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    file_count: int = 0


def _compressor(dtype: numpy.dtype) -> zarr.codecs.BloscCodec:
    """Lossless Blosc/zstd level 1, shuffled as for 2D pyramids, in blocks of a whole chunk.

    Level 1 encodes ~4x faster than level 5.  In the small blocks blosc picks for level 1
    (tens of KiB) bit-shuffled 16-bit volumes compress ~40 % worse; in BLOSC_BLOCK_BYTES
    blocks as well as at level 5 (docs/benchmarks.md).
    """
    itemsize = numpy.dtype(dtype).itemsize
    return zarr.codecs.BloscCodec(cname="zstd", clevel=1, typesize=itemsize,
                                  shuffle="noshuffle" if itemsize == 1 else "bitshuffle",
                                  blocksize=BLOSC_BLOCK_BYTES)


def write_volume_pyramid(
    source: VolumeSource,
    dest: str | os.PathLike,
    *,
    chunk: int = 64,
    shard_chunks: int = 8,
    progress: ProgressCallback | None = None,
    name: str | None = None,
    threads: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    downsample: str = "mean",
    image_label: dict[str, Any] | None = None,
    scheduler: str | None = None,
) -> VolumeSummary:
    """Convert ``source`` into a 3D OME-Zarr pyramid at ``dest`` and return a summary.

    Level 0 is the source exactly; each further level is the mean of 2x2 (y, x) or 2x2x2
    voxels of the one above (see ``plan_volume_levels``), until every side is <= ``chunk``.
    Chunks are near-isotropic in physical units; shards are ``shard_chunks`` chunks a side
    (fewer only if ``memory_budget``, bytes of working memory, cannot hold one chunk layer of
    a shard).  Work goes by units of whole level-0 shards, read once, one chunk layer at a
    time: each layer is compressed straight into its shard files and halved into the levels
    below, so memory stays within the budget whatever the volume size.  The pyramid is
    built under a hidden temporary name beside ``dest`` and renamed into place at the end; on
    any error it is removed.  ``progress(fraction, message)`` is called from the calling thread
    with a non-decreasing fraction that ends at 1.0.

    For label volumes: ``downsample="nearest"`` keeps the first voxel of each 2x2(x2) block
    instead of the mean; ``image_label`` (the NGFF ``image-label`` block) replaces the
    ``omero`` block and no thumbnail is written.

    ``scheduler`` (a dask.distributed address like "tcp://host:8786") runs the units and the
    shards below them as tasks on that cluster (tiler.volume_cluster); the files are
    byte-identical to a local run with the same ``threads``.  The workers reopen the source
    and write into the folder beside ``dest``, so both must have the same paths on every worker
    (a shared filesystem); ``memory_budget`` then bounds the units in flight on the cluster.
    """
    dest = Path(dest)
    nearest = check_downsample(downsample) == "nearest"
    writer_class = NearestLevelWriter if nearest else LevelWriter
    refuse_existing(dest)
    threads = max(1, threads or os.cpu_count() or 1)
    plan = plan_units(source, chunk, shard_chunks, memory_budget, threads)
    report = _ProgressReporter(progress)
    with publishing(dest) as temp:
        group = zarr.open_group(str(temp), mode="w-", zarr_format=3)
        arrays = [
            group.create_array(
                level_path(index), shape=(source.shape[0], *level.shape), dtype=source.dtype,
                chunks=(1, *level.chunks), shards=(1, *level.shards),
                compressors=_compressor(source.dtype),
                fill_value=0, dimension_names=VOLUME_AXIS_NAMES,
            )
            for index, level in enumerate(plan.levels)
        ]
        total, done = sum(math.prod(level.shape) for level in plan.levels), [0]

        def advance(voxels: int, message: str) -> None:
            done[0] += voxels
            report(LEVEL_PROGRESS_SHARE * done[0] / total, message)

        if scheduler is not None:
            from tiler.volume_cluster import fill_on_cluster  # imports this module

            fill_on_cluster(scheduler, source, arrays, temp, plan, nearest=nearest,
                            memory_budget=memory_budget, advance=advance)
        else:
            with ThreadPoolExecutor(plan.workers, thread_name_prefix="tiler-volume") as outer, \
                    ThreadPoolExecutor(threads, thread_name_prefix="tiler-volume-io") as inner:
                writer_class(source, arrays, temp, plan, inner, threads, advance).run(outer)
        report(LEVEL_PROGRESS_SHARE, "computing display settings and thumbnail")
        lowest = numpy.asarray(arrays[-1][...])
        displays = channel_displays(lowest, source.dtype, source.channel_names)
        unit = source.unit if source.voxel_size else None
        attrs = build_volume_attrs([level.scale for level in plan.levels], displays,
                                   unit=unit, name=name)
        group.attrs.update(adjust_pyramid_attrs(attrs, downsample=downsample,
                                                image_label=image_label))
        windows = [(d.start, d.end) for d in displays]
        if image_label is None:
            _write_thumbnail(arrays, plan.levels, windows, [d.color for d in displays],
                             temp / THUMBNAIL_NAME)
    report(1.0, "done")
    files = [entry for entry in dest.rglob("*") if entry.is_file()]
    return VolumeSummary(
        path=str(dest), shape=tuple(source.shape), dtype=numpy.dtype(source.dtype).name,
        levels=[level.shape for level in plan.levels], channel_names=list(source.channel_names),
        windows=windows, pixel_size=source.pixel_size, unit=source.unit,
        nbytes=sum(entry.stat().st_size for entry in files),
        voxel_size=source.voxel_size, chunks=[level.chunks for level in plan.levels],
        metadata=dict(source.metadata), file_count=len(files),
    )


def plan_units(source: VolumeSource, chunk: int, shard_chunks: int, budget: int,
               threads: int) -> UnitPlan:
    """Levels, shards and units of work for ``source`` within ``budget`` bytes of memory.

    A unit is one level-0 shard, or several shards across for sources that decode whole slices
    (``random_access`` False) or read whole rows best (``whole_rows`` True: as many shards in
    x as leave room for two units at once).  It is processed one chunk layer at a time, so it
    needs about UNIT_MEMORY_FACTOR layers of memory; shards are halved only if even one layer
    does not fit.
    """
    voxel_bytes = source.shape[0] * numpy.dtype(source.dtype).itemsize
    shape = tuple(source.shape[1:])
    while True:
        levels = plan_volume_levels(shape, source.voxel_size, chunk=chunk,  # type: ignore[arg-type]
                                    shard_chunks=shard_chunks)
        chunk_z, shard_y, shard_x = levels[0].chunks[0], *levels[0].shards[1:]
        cost = UNIT_MEMORY_FACTOR * chunk_z * shard_y * shard_x * voxel_bytes
        if cost <= budget:
            break
        if shard_chunks == 1:
            raise ValueError(f"memory_budget of {budget} bytes is too small: one chunk layer "
                             f"of {levels[0].shards} voxels needs about {cost} bytes")
        shard_chunks //= 2
    shard = unit = levels[0].shards
    if not getattr(source, "random_access", True):  # whole slices are decoded: wide units
        across_x = min(math.ceil(shape[2] / unit[2]), max(1, budget // cost))
        across_y = min(math.ceil(shape[1] / unit[1]), max(1, budget // (cost * across_x)))
        unit = (unit[0], unit[1] * across_y, unit[2] * across_x)
    elif getattr(source, "whole_rows", False):  # rows read whole: units as wide as leaves room
        across_x = min(math.ceil(shape[2] / unit[2]), max(1, budget // (cost * min(threads, 2))))
        unit = (unit[0], unit[1], unit[2] * across_x)
    layer_cost = UNIT_MEMORY_FACTOR * chunk_z * unit[1] * unit[2] * voxel_bytes
    workers = max(1, min(threads, budget // layer_cost))
    in_pass = _in_pass_levels(levels, shard, unit)
    levels, streamable = _shards_below(levels, shard, unit, in_pass)
    return UnitPlan(levels, unit, workers, in_pass, streamable)


def _in_pass_levels(levels: list[VolumeLevel], shard: tuple[int, int, int],
                    unit: tuple[int, int, int]) -> int:
    """How many levels below 0 can be made unit by unit (shard edges stay on even voxels)."""
    single = [size >= whole for size, whole in zip(unit, levels[0].shape, strict=True)]
    sizes = list(shard)
    for count, level in enumerate(levels[1:]):
        if any(factor == 2 and not alone and size % 2
               for factor, alone, size in zip(level.factor, single, sizes, strict=True)):
            return count
        sizes = [-(-size // factor) for size, factor in zip(sizes, level.factor, strict=True)]
    return len(levels) - 1


def _shards_below(levels: list[VolumeLevel], shard: tuple[int, int, int],
                  unit: tuple[int, int, int], in_pass: int
                  ) -> tuple[list[VolumeLevel], list[bool]]:
    """Levels 1..in_pass get the level-0 shard shrunk like the level (whole chunks, >= 1 chunk).

    Where that shrunk shard is whole chunks, units write whole shards of the level (streamed,
    no read-modify-write) and the level has as many shard files as level 0; deeper levels
    (less than a chunk per unit) get one-chunk shards written through zarr.
    """
    single = [size >= whole for size, whole in zip(unit, levels[0].shape, strict=True)]
    result, streamable, sizes = [levels[0]], [True], list(shard)
    for index, level in enumerate(levels[1:], 1):
        if index > in_pass:
            result.append(level)
            streamable.append(True)
            continue
        sizes = [-(-size // factor) for size, factor in zip(sizes, level.factor, strict=True)]
        shards = tuple(min(max(side, -(-size // side) * side), -(-whole // side) * side)
                       for size, side, whole in zip(sizes, level.chunks, level.shape, strict=True))
        result.append(replace(level, shards=shards))  # type: ignore[arg-type]
        streamable.append(all(alone or (size % side == 0 and size >= side)
                              for alone, size, side in zip(single, sizes, level.chunks,
                                                           strict=True)))
    return result, streamable


def _write_thumbnail(arrays: list[zarr.Array], levels: list[VolumeLevel],
                     windows: list[tuple[float, float]], colors: list[str], path: Path) -> None:
    """The middle z slice of the smallest level still >= THUMBNAIL_SIZE across, as a PNG."""
    index = max([i for i, level in enumerate(levels)
                 if max(level.shape[1:]) >= THUMBNAIL_SIZE] or [0])
    depth = levels[index].shape[0]
    plane = numpy.asarray(arrays[index][:, depth // 2])
    image = Image.fromarray(to_display_pixels(plane, windows, colors))
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    image.save(path, format="PNG")


class NearestLevelWriter(LevelWriter):
    """A LevelWriter whose levels keep the first voxel of each 2x2(x2) block (label volumes)."""

    def _downsample(self, block: numpy.ndarray, factor_z: int) -> numpy.ndarray:
        return nearest_downsample_3d(block, factor_z)

    def _downsample_shard(self, index: int, box: Box) -> int:
        """Make one shard of level ``index`` from the stored level above, layer by layer."""
        above, level = self.arrays[index - 1], self.plan.levels[index]
        z0, z1, y0, y1, x0, x1 = box
        fz, fy, fx = level.factor
        stream = self.writers[index].stream(box)
        for low in range(z0, z1, level.chunks[0]):
            high = min(low + level.chunks[0], z1)
            region = above[:, low * fz:high * fz:fz, y0 * fy:y1 * fy:fy, x0 * fx:x1 * fx:fx]
            stream.write_layer(low, numpy.asarray(region))
        stream.close()
        return (z1 - z0) * (y1 - y0) * (x1 - x0)


class _ProgressReporter:
    """Forward progress to the caller's callback, never going backwards."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._last = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        if self._callback is not None:
            self._last = max(self._last, min(1.0, fraction))
            self._callback(self._last, message)
