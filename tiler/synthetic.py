"""Synthetic test images made by code: gradients, blobs and text-like marks, tile by tile."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator

import numpy

__all__ = ["synthetic_image", "synthetic_region", "write_synthetic_tiff"]

#: Blobs per channel.
BLOB_COUNT = 7
#: Height of one line of "text" and size of one glyph cell, in pixels.
LINE_HEIGHT, CELL_WIDTH, DOT = 24, 12, 3
#: Rows per strip of a striped synthetic TIFF.
ROWS_PER_STRIP = 64


def synthetic_region(
    shape_yx: tuple[int, int], dtype: str | numpy.dtype, channels: int, seed: int,
    y0: int, y1: int, x0: int, x1: int,
) -> numpy.ndarray:
    """Pixels [y0:y1, x0:x1] of the synthetic image of ``shape_yx``: a (c, h, w) array.

    Any region equals the same slice of ``synthetic_image``; each pixel depends only on its
    coordinates, so huge images can be produced piece by piece.
    """
    return numpy.stack([
        _to_dtype(_channel_values(shape_yx, channel, seed, y0, y1, x0, x1), numpy.dtype(dtype))
        for channel in range(channels)
    ])


def synthetic_image(
    shape_yx: tuple[int, int], dtype: str | numpy.dtype, channels: int = 1, seed: int = 0
) -> numpy.ndarray:
    """The whole synthetic image as a (c, y, x) array (for small test images)."""
    height, width = shape_yx
    return synthetic_region(shape_yx, dtype, channels, seed, 0, height, 0, width)


def _channel_values(
    shape_yx: tuple[int, int], channel: int, seed: int, y0: int, y1: int, x0: int, x1: int
) -> numpy.ndarray:
    """Float32 values in [0, 1] for one channel of a region."""
    height, width = shape_yx
    rng = numpy.random.default_rng([seed, channel])
    ys = numpy.arange(y0, y1, dtype=numpy.float32)[:, numpy.newaxis]
    xs = numpy.arange(x0, x1, dtype=numpy.float32)[numpy.newaxis, :]
    weight = rng.uniform(0.2, 0.8)
    values = 0.3 * (weight * xs / max(width, 1) + (1 - weight) * ys / max(height, 1))
    size = min(height, width)
    for _ in range(BLOB_COUNT):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        sigma = rng.uniform(0.03, 0.15) * size + 1.0
        amplitude = rng.uniform(0.15, 0.4)
        values = values + amplitude * (
            numpy.exp(-(((ys - cy) / sigma) ** 2)) * numpy.exp(-(((xs - cx) / sigma) ** 2))
        )
    values = values + 0.3 * _text_marks(seed + channel, y0, y1, x0, x1)
    values = values + 0.03 * _hash_noise(seed + 7919 * channel, y0, y1, x0, x1)
    return numpy.clip(values, 0.0, 1.0).astype(numpy.float32)


def _hash(*parts: numpy.ndarray | int) -> numpy.ndarray:
    """A cheap deterministic integer hash of broadcast uint64 arrays (wrapping arithmetic)."""
    mixed = numpy.zeros((), dtype=numpy.uint64)
    for index, part in enumerate(parts):
        value = numpy.asarray(part, dtype=numpy.uint64)
        mixed = (mixed ^ (value * numpy.uint64(2654435761 + 40503 * index))) & numpy.uint64(
            0xFFFFFFFF
        )
        mixed = ((mixed >> numpy.uint64(15)) ^ mixed) * numpy.uint64(2246822519) & numpy.uint64(
            0xFFFFFFFF
        )
    return mixed


def _text_marks(seed: int, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
    """1.0 where a dot of a pseudo-random 3x5 glyph falls, in paragraphs of text-like lines."""
    rows = numpy.arange(y0, y1, dtype=numpy.int64)[:, numpy.newaxis]
    cols = numpy.arange(x0, x1, dtype=numpy.int64)[numpy.newaxis, :]
    line, row_in_line = rows // LINE_HEIGHT, rows % LINE_HEIGHT
    char, col_in_cell = cols // CELL_WIDTH, cols % CELL_WIDTH
    dot_row, dot_col = row_in_line // DOT, col_in_cell // DOT
    in_glyph = (dot_row < 5) & (dot_col < 3)
    in_text = ((line // 6) % 2 == 0) & ((char // 9) % 4 != 3)
    code = _hash(line, char, seed)
    bit = numpy.minimum(dot_row * 3 + dot_col, 14).astype(numpy.uint64)
    dots = ((code >> bit) & numpy.uint64(1)).astype(bool)
    return (in_glyph & in_text & dots).astype(numpy.float32)


def _hash_noise(seed: int, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
    """Deterministic per-pixel noise in [0, 1)."""
    rows = numpy.arange(y0, y1, dtype=numpy.int64)[:, numpy.newaxis]
    cols = numpy.arange(x0, x1, dtype=numpy.int64)[numpy.newaxis, :]
    return (_hash(rows, cols, seed) & numpy.uint64(0xFFFF)).astype(numpy.float32) / 65536.0


def _to_dtype(values: numpy.ndarray, dtype: numpy.dtype) -> numpy.ndarray:
    """Map [0, 1] floats onto most of the range of ``dtype``."""
    if dtype.kind == "f":
        return (values * 2.0 - 0.5).astype(dtype)
    info = numpy.iinfo(dtype)
    low, high = (info.min // 2, info.max // 2) if info.min < 0 else (info.min, info.max)
    return numpy.rint(low + values.astype(numpy.float64) * (high - low)).astype(dtype)


def write_synthetic_tiff(
    path: str | os.PathLike,
    shape_yx: tuple[int, int],
    dtype: str | numpy.dtype = "uint16",
    *,
    channels: int = 1,
    tile: int | None = 256,
    bigtiff: bool = False,
    compression: str | None = "zlib",
    pixel_size_um: float | None = None,
    rgb: bool = False,
    seed: int = 0,
    byteorder: str = "<",
) -> str | os.PathLike:
    """Write the synthetic image to a TIFF one tile (or strip) at a time; return ``path``.

    ``tile=None`` writes strips of ROWS_PER_STRIP rows; ``byteorder`` is "<" or ">".  Several
    channels are stored planar (one sample plane each) unless ``rgb`` is true, which writes
    interleaved RGB samples.
    Memory use is one tile or strip, whatever the image size.
    """
    import tifffile

    if rgb and channels != 3:
        raise ValueError("rgb=True needs channels=3")
    if tile is None and compression not in (None, "zlib"):
        raise ValueError("striped synthetic TIFFs support compression 'zlib' or None")
    dtype = numpy.dtype(dtype)
    height, width = shape_yx
    if rgb:
        shape, layout = (height, width, 3), {"photometric": "rgb", "planarconfig": "contig"}
    elif channels > 1:
        shape, layout = (channels, height, width), {"photometric": "minisblack",
                                                    "planarconfig": "separate"}
    else:
        shape, layout = (height, width), {"photometric": "minisblack"}
    planes = [None] if rgb else list(range(channels))
    if tile:
        data: Iterator = _tiles(shape_yx, dtype, channels, seed, planes, tile)
        layout["tile"] = (tile, tile)
    else:
        data = _strips(shape_yx, dtype.newbyteorder(byteorder), channels, seed, planes,
                       compression)
        layout["rowsperstrip"] = ROWS_PER_STRIP
    extra = {}
    if pixel_size_um:
        extra = {"resolution": (1e4 / pixel_size_um, 1e4 / pixel_size_um),
                 "resolutionunit": "CENTIMETER"}
    tifffile.imwrite(path, data, shape=shape, dtype=dtype, bigtiff=bigtiff,
                     compression=compression, byteorder=byteorder, metadata=None, **layout, **extra)
    return path


def _block(shape_yx, dtype, channels, seed, plane, y0, y1, x0, x1) -> numpy.ndarray:
    """One plane (y, x), or all channels interleaved (y, x, c) when ``plane`` is None."""
    if plane is None:
        return numpy.moveaxis(synthetic_region(shape_yx, dtype, channels, seed, y0, y1, x0, x1),
                              0, -1)
    return _to_dtype(_channel_values(shape_yx, plane, seed, y0, y1, x0, x1), dtype)


def _tiles(shape_yx, dtype, channels, seed, planes, tile) -> Iterator[numpy.ndarray]:
    height, width = shape_yx
    for plane in planes:
        for y0 in range(0, height, tile):
            for x0 in range(0, width, tile):
                block = _block(shape_yx, dtype, channels, seed, plane,
                               y0, min(y0 + tile, height), x0, min(x0 + tile, width))
                padding = [(0, tile - block.shape[0]), (0, tile - block.shape[1])]
                yield numpy.pad(block, padding + [(0, 0)] * (block.ndim - 2))


def _strips(shape_yx, dtype, channels, seed, planes, compression) -> Iterator[bytes]:
    height, width = shape_yx
    for plane in planes:
        for y0 in range(0, height, ROWS_PER_STRIP):
            block = _block(shape_yx, dtype, channels, seed, plane,
                           y0, min(y0 + ROWS_PER_STRIP, height), 0, width)
            raw = numpy.ascontiguousarray(block, dtype).tobytes()
            yield zlib.compress(raw) if compression == "zlib" else raw
