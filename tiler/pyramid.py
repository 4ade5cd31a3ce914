"""Stream an ImageSource into a sharded OME-Zarr 0.5 pyramid, published atomically."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import zarr
import zarr.codecs
from PIL import Image

from tiler.display import channel_displays, to_display_pixels
from tiler.downsample import level_shapes, mean_downsample_2x, nearest_downsample_2x
from tiler.ome_zarr_format import AXIS_NAMES, build_image_attrs, level_path
from tiler.publish import publishing, refuse_existing
from tiler.pyramid_build import SHARD_MEMORY_BUDGET, build_levels
from tiler.readers.base import ImageSource
from tiler.zarr_shards import ShardFileWriter

__all__ = ["DOWNSAMPLE_METHODS", "THUMBNAIL_NAME", "THUMBNAIL_SIZE", "PyramidSummary",
           "adjust_pyramid_attrs", "check_downsample", "write_pyramid"]

THUMBNAIL_NAME = "thumbnail.png"
#: Longest side of the thumbnail, in pixels.
THUMBNAIL_SIZE = 256
#: Share of the progress bar given to writing shards; metadata and publishing take the rest.
SHARD_PROGRESS_SHARE = 0.98

ProgressCallback = Callable[[float, str], None]

#: How each level is made from the one above: "mean" (images) or "nearest" (label images).
DOWNSAMPLE_METHODS = ("mean", "nearest")
_DOWNSAMPLE_2D = {"mean": mean_downsample_2x, "nearest": nearest_downsample_2x}
NEAREST_DESCRIPTION = ("first (top-left) pixel of every 2x2 (x, y) or 2x2x2 (x, y, z) block of "
                       "the level above, values unchanged (labels)")


def check_downsample(downsample: str) -> str:
    """``downsample`` if it is one of DOWNSAMPLE_METHODS, else ValueError naming them."""
    if downsample not in DOWNSAMPLE_METHODS:
        raise ValueError(f"downsample must be one of {', '.join(DOWNSAMPLE_METHODS)}, "
                         f"not {downsample!r}")
    return downsample


def adjust_pyramid_attrs(attrs: dict[str, Any], *, downsample: str,
                         image_label: dict[str, Any] | None) -> dict[str, Any]:
    """Group attributes of a pyramid made with ``downsample``; with ``image_label`` (the NGFF
    ``image-label`` block) a label image: that block instead of the ``omero`` rendering one."""
    ome = attrs["ome"]
    if downsample == "nearest":
        for multiscale in ome["multiscales"]:
            multiscale["type"] = "nearest"
            multiscale["metadata"] = {"description": NEAREST_DESCRIPTION}
    if image_label is not None:
        ome.pop("omero", None)
        ome["image-label"] = image_label
    return attrs


#: Blosc settings of every pyramid chunk: zstd at a fast level (lossless; see docs/benchmarks.md).
BLOSC_CNAME, BLOSC_CLEVEL = "zstd", 1


def _compressor(dtype: numpy.dtype | str | None = None) -> zarr.codecs.BloscCodec:
    """Lossless Blosc/zstd for pixels of ``dtype``: no shuffle for bytes, bit-shuffle otherwise.

    Byte data (uint8) compresses better unshuffled; wider types gain from bit-shuffling.
    """
    itemsize = numpy.dtype(dtype).itemsize if dtype is not None else 2
    shuffle = "noshuffle" if itemsize == 1 else "bitshuffle"
    return zarr.codecs.BloscCodec(cname=BLOSC_CNAME, clevel=BLOSC_CLEVEL, shuffle=shuffle,
                                  typesize=itemsize)


@dataclass
class PyramidSummary:
    """What was written: enough for the portal to fill in a dataset record."""

    path: str
    shape: tuple[int, int, int]
    dtype: str
    levels: list[tuple[int, int]]
    channel_names: list[str]
    windows: list[tuple[float, float]]
    pixel_size: tuple[float, float] | None
    unit: str | None
    nbytes: int


#: Shards are this many tiles on a side by default (2048² px for 256 px tiles): few files.
TILES_PER_SHARD_SIDE = 8


def write_pyramid(
    source: ImageSource,
    dest: str | os.PathLike,
    *,
    tile_size: int = 256,
    shard_size: int | None = None,
    progress: ProgressCallback | None = None,
    name: str | None = None,
    threads: int | None = None,
    downsample: str = "mean",
    image_label: dict[str, Any] | None = None,
    memory_budget: int = SHARD_MEMORY_BUDGET,
    scheduler: str | None = None,
) -> PyramidSummary:
    """Convert ``source`` into an OME-Zarr pyramid at ``dest`` and return a summary.

    Level 0 is the source exactly; each further level is the 2x2 mean of the one above, until
    both sides fit in one tile.  One pass reads each source pixel once: level-0 shards in
    Z-order on a thread pool, every lower level assembled in memory from the means of the
    shards above (``tiler.pyramid_build``), each shard encoded and written once, whole.  Memory
    stays at a few shards per thread and per level whatever the image size.  The
    pyramid is built under a hidden temporary name beside ``dest`` and renamed into place at the
    end; on any error the temporary directory is removed.  ``progress(fraction, message)`` is
    called from the calling thread with a non-decreasing fraction that ends at 1.0.

    For label images: ``downsample="nearest"`` keeps the top-left pixel of each 2x2 block
    instead of the mean; ``image_label`` (the NGFF ``image-label`` block) replaces the
    ``omero`` block and no thumbnail is written.  ``memory_budget`` bounds the bytes of shard
    data in flight (SHARD_MEMORY_BUDGET by default).

    ``scheduler`` (a dask.distributed address like "tcp://host:8786") runs the shard work
    (reading, downsampling, compressing, writing) as tasks on that cluster; the files are
    byte-identical to a local run.  The workers reopen the source file and write into the
    folder beside ``dest``, so both must have the same paths on every worker (a shared
    filesystem); ``memory_budget`` then bounds the data in flight across the cluster.
    """
    dest = Path(dest)
    downsampler = _DOWNSAMPLE_2D[check_downsample(downsample)]
    shard_size = shard_size or tile_size * TILES_PER_SHARD_SIDE
    if tile_size < 1 or shard_size < tile_size or shard_size % tile_size:
        raise ValueError(f"shard_size {shard_size} must be a multiple of tile_size {tile_size}")
    refuse_existing(dest)
    channels, height, width = source.shape
    shapes = level_shapes(height, width, tile_size)
    report = _ProgressReporter(progress)
    with publishing(dest) as temp:
        group = zarr.open_group(str(temp), mode="w-", zarr_format=3)
        arrays = [
            group.create_array(
                level_path(level),
                shape=(channels, level_h, level_w),
                dtype=source.dtype,
                chunks=(1, tile_size, tile_size),
                shards=(1, shard_size, shard_size),
                compressors=_compressor(source.dtype),
                fill_value=0,
                dimension_names=AXIS_NAMES,
            )
            for level, (level_h, level_w) in enumerate(shapes)
        ]
        lowest = _write_levels(source, arrays, temp, shapes, shard_size, report, threads,
                               downsampler, memory_budget, scheduler)
        report(SHARD_PROGRESS_SHARE, "computing display settings and thumbnail")
        displays = channel_displays(lowest, source.dtype, source.channel_names,
                                    colors=getattr(source, "channel_colors", None))
        attrs = build_image_attrs(len(shapes), displays, pixel_size=source.pixel_size,
                                  unit=source.unit, name=name)
        group.attrs.update(adjust_pyramid_attrs(attrs, downsample=downsample,
                                                image_label=image_label))
        windows = [(d.start, d.end) for d in displays]
        if image_label is None:
            _write_thumbnail(lowest, windows, [d.color for d in displays],
                             temp / THUMBNAIL_NAME)
    report(1.0, "done")
    return PyramidSummary(
        path=str(dest), shape=(channels, height, width), dtype=numpy.dtype(source.dtype).name,
        levels=shapes, channel_names=list(source.channel_names), windows=windows,
        pixel_size=source.pixel_size, unit=source.unit, nbytes=_directory_size(dest),
    )


def _write_levels(source: ImageSource, arrays: list[zarr.Array], root: Path,
                  shapes: list[tuple[int, int]], shard_size: int, report: _ProgressReporter,
                  threads: int | None, downsampler: Callable[[numpy.ndarray], numpy.ndarray],
                  memory_budget: int, scheduler: str | None) -> numpy.ndarray:
    """Fill every level in one pass over the source; return the last (smallest) level."""
    total_pixels = sum(h * w for h, w in shapes) * source.shape[0]
    done = {"pixels": 0, "shards": 0}

    def shard_done(level: int, pixels: int) -> None:
        done["pixels"] += pixels * source.shape[0]
        done["shards"] += 1
        report(SHARD_PROGRESS_SHARE * done["pixels"] / total_pixels,
               f"level {level + 1} of {len(shapes)}: {done['shards']} shards written")

    writers = [ShardFileWriter(array, os.path.abspath(root)) for array in arrays]
    workers = max(1, threads or os.cpu_count() or 1)
    return build_levels(source, writers, shapes, shard_size, workers, shard_done,
                        downsample=downsampler, memory_budget=memory_budget, scheduler=scheduler)


def _write_thumbnail(lowest: numpy.ndarray, windows: list[tuple[float, float]],
                     colors: list[str], path: Path) -> None:
    """Render the lowest level like a tile and save it with its longest side <= THUMBNAIL_SIZE."""
    image = Image.fromarray(to_display_pixels(lowest, windows, colors))
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    image.save(path, format="PNG")


def _directory_size(path: Path) -> int:
    """Bytes of all files under ``path``."""
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


class _ProgressReporter:
    """Forward progress to the caller's callback, never going backwards."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, fraction: float, message: str) -> None:
        if self._callback is None:
            return
        with self._lock:
            self._last = max(self._last, min(1.0, fraction))
            fraction = self._last
        self._callback(fraction, message)
