"""Stream an ImageSource into a sharded OME-Zarr 0.5 pyramid, published atomically."""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy
import zarr
import zarr.codecs
from PIL import Image

from tiler.display import channel_displays, to_display_pixels
from tiler.downsample import level_shapes, mean_downsample_2x
from tiler.ome_zarr_format import AXIS_NAMES, build_image_attrs, level_path
from tiler.readers.base import ImageSource

__all__ = ["THUMBNAIL_NAME", "THUMBNAIL_SIZE", "PyramidSummary", "write_pyramid"]

THUMBNAIL_NAME = "thumbnail.png"
#: Longest side of the thumbnail, in pixels.
THUMBNAIL_SIZE = 256
#: Rows of the level above read at once when downsampling (bounds memory per task).
DOWNSAMPLE_BAND_ROWS = 512
#: Share of the progress bar given to writing shards; metadata and publishing take the rest.
SHARD_PROGRESS_SHARE = 0.98

ProgressCallback = Callable[[float, str], None]


def _compressor() -> zarr.codecs.BloscCodec:
    """Lossless Blosc/zstd with bit-shuffle, the codec of every pyramid chunk."""
    return zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")


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


#: Shards are this many tiles on a side by default (2048² px for 256 px tiles): few files, bounded memory.
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
) -> PyramidSummary:
    """Convert ``source`` into an OME-Zarr pyramid at ``dest`` and return a summary.

    Level 0 is the source exactly; each further level is the 2x2 mean of the one above, until
    both sides fit in one tile.  Work goes shard by shard (each shard written once, whole) on a
    thread pool, so memory stays at a few shards per thread whatever the image size.  The
    pyramid is built under a hidden temporary name beside ``dest`` and renamed into place at the
    end; on any error the temporary directory is removed.  ``progress(fraction, message)`` is
    called from the calling thread with a non-decreasing fraction that ends at 1.0.
    """
    dest = Path(dest)
    shard_size = shard_size or tile_size * TILES_PER_SHARD_SIDE
    if tile_size < 1 or shard_size < tile_size or shard_size % tile_size:
        raise ValueError(f"shard_size {shard_size} must be a multiple of tile_size {tile_size}")
    if dest.exists():
        raise FileExistsError(f"pyramid destination already exists: {dest}")
    channels, height, width = source.shape
    shapes = level_shapes(height, width, tile_size)
    temp = dest.parent / f".{dest.name}.partial-{secrets.token_hex(6)}"
    report = _ProgressReporter(progress)
    try:
        group = zarr.open_group(str(temp), mode="w-", zarr_format=3)
        arrays = [
            group.create_array(
                level_path(level),
                shape=(channels, level_h, level_w),
                dtype=source.dtype,
                chunks=(1, tile_size, tile_size),
                shards=(1, shard_size, shard_size),
                compressors=_compressor(),
                fill_value=0,
                dimension_names=AXIS_NAMES,
            )
            for level, (level_h, level_w) in enumerate(shapes)
        ]
        _write_levels(source, arrays, shapes, report, threads)
        report(SHARD_PROGRESS_SHARE, "computing display settings and thumbnail")
        lowest = numpy.asarray(arrays[-1][...])
        displays = channel_displays(lowest, source.dtype, source.channel_names)
        group.attrs.update(build_image_attrs(len(shapes), displays, pixel_size=source.pixel_size,
                                             unit=source.unit, name=name))
        windows = [(d.start, d.end) for d in displays]
        _write_thumbnail(lowest, windows, [d.color for d in displays], temp / THUMBNAIL_NAME)
        if dest.exists():
            raise FileExistsError(f"pyramid destination already exists: {dest}")
        os.rename(temp, dest)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    report(1.0, "done")
    return PyramidSummary(
        path=str(dest), shape=(channels, height, width), dtype=numpy.dtype(source.dtype).name,
        levels=shapes, channel_names=list(source.channel_names), windows=windows,
        pixel_size=source.pixel_size, unit=source.unit, nbytes=_directory_size(dest),
    )


def _shard_boxes(array: zarr.Array) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of every shard of ``array``, row by row, clipped to the array."""
    _, height, width = array.shape
    _, shard_h, shard_w = array.shards
    return [(y0, min(y0 + shard_h, height), x0, min(x0 + shard_w, width))
            for y0 in range(0, height, shard_h) for x0 in range(0, width, shard_w)]


def _write_levels(source: ImageSource, arrays: list[zarr.Array], shapes: list[tuple[int, int]],
                  report: _ProgressReporter, threads: int | None) -> None:
    """Fill every level shard by shard, level after level, on a thread pool."""
    total_pixels = sum(h * w for h, w in shapes)
    done_pixels = 0
    workers = max(1, threads or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tiler-pyramid") as pool:
        for level, array in enumerate(arrays):
            boxes = _shard_boxes(array)
            if level == 0:
                task = _copy_source_shard
                origin: ImageSource | zarr.Array = source
            else:
                task, origin = _downsample_shard, arrays[level - 1]
            for count, box in enumerate(_run_bounded(pool, workers, task, origin, array, boxes), 1):
                done_pixels += (box[1] - box[0]) * (box[3] - box[2])
                report(SHARD_PROGRESS_SHARE * done_pixels / total_pixels,
                       f"level {level + 1} of {len(arrays)}: shard {count} of {len(boxes)}")


def _run_bounded(pool: ThreadPoolExecutor, workers: int, task: Callable, origin: object,
                 array: zarr.Array, boxes: list[tuple[int, int, int, int]]
                 ) -> Iterator[tuple[int, int, int, int]]:
    """Run ``task(origin, array, box)`` for every box, at most 2 x workers queued at once.

    Yields each box as its task completes; re-raises the first failure.
    """
    pending: dict[Future, tuple[int, int, int, int]] = {}
    queue = iter(boxes)
    try:
        while True:
            for box in queue:
                pending[pool.submit(task, origin, array, box)] = box
                if len(pending) >= 2 * workers:
                    break
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                box = pending.pop(future)
                future.result()
                yield box
    finally:
        for future in pending:
            future.cancel()


def _copy_source_shard(source: ImageSource, array: zarr.Array,
                       box: tuple[int, int, int, int]) -> None:
    """Level 0: read one shard's region from the source and write it."""
    y0, y1, x0, x1 = box
    array[:, y0:y1, x0:x1] = source.read_region(y0, y1, x0, x1)


def _downsample_shard(above: zarr.Array, array: zarr.Array,
                      box: tuple[int, int, int, int]) -> None:
    """Level n+1: build one shard from the 2x region of level n, a band of rows at a time."""
    y0, y1, x0, x1 = box
    _, above_h, above_w = above.shape
    shard = numpy.empty((array.shape[0], y1 - y0, x1 - x0), dtype=array.dtype)
    band = DOWNSAMPLE_BAND_ROWS // 2
    for out_y in range(y0, y1, band):
        out_y1 = min(out_y + band, y1)
        region = above[:, 2 * out_y:min(2 * out_y1, above_h), 2 * x0:min(2 * x1, above_w)]
        shard[:, out_y - y0:out_y1 - y0] = mean_downsample_2x(numpy.asarray(region))
    array[:, y0:y1, x0:x1] = shard


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
