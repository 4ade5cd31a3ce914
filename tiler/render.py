"""Reading published pyramids: regions by level, and tiles rendered to JPEG, PNG or WebP bytes."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy
import zarr

from tiler.display import check_tile_format, default_colors, encode_image, to_display_pixels
from tiler.errors import CorruptImage, OutOfRange
from tiler.ome_zarr_format import ImageMetadata, parse_image_attrs
from tiler.readers.base import default_channel_names

__all__ = ["OPEN_PYRAMID_CACHE_SIZE", "Pyramid", "open_pyramid", "render_tile"]

#: How many opened pyramids ``open_pyramid`` keeps.
OPEN_PYRAMID_CACHE_SIZE = 64


class Pyramid:
    """An opened OME-Zarr pyramid: metadata read once, level arrays kept open for reading.

    Attributes mirror ImageSource: ``shape`` (c, y, x) and ``dtype`` of level 0,
    ``levels`` [(height, width), ...], ``channel_names``, display ``windows`` [(start, end)]
    and ``colors`` (hex) per channel, ``pixel_size`` (y, x) and ``unit`` of level 0, and
    ``tile_size`` (the chunk side).
    """

    def __init__(self, path: Path, metadata: ImageMetadata, arrays: list[zarr.Array]) -> None:
        self.path = path
        self.metadata = metadata
        self._arrays = arrays
        first = arrays[0]
        self.shape: tuple[int, int, int] = tuple(first.shape)  # type: ignore[assignment]
        self.dtype = numpy.dtype(first.dtype)
        self.levels = [(int(a.shape[1]), int(a.shape[2])) for a in arrays]
        self.tile_size = int(first.chunks[-1])
        channels = self.shape[0]
        if len(metadata.channels) == channels:
            self.channel_names = [c.label for c in metadata.channels]
            self.windows = [(c.start, c.end) for c in metadata.channels]
            self.colors = [c.color for c in metadata.channels]
        else:  # no usable omero block: fall back on the dtype's range
            self.channel_names = default_channel_names(channels)
            if self.dtype.kind in "iu":
                info = numpy.iinfo(self.dtype)
                self.windows = [(float(info.min), float(info.max))] * channels
            else:
                self.windows = [(0.0, 1.0)] * channels
            self.colors = default_colors(self.channel_names)
        self.pixel_size = metadata.pixel_size
        self.unit = metadata.unit

    @classmethod
    def open(cls, path: str | os.PathLike) -> Pyramid:
        """Open the pyramid at ``path``; FileNotFoundError if absent, CorruptImage if unreadable."""
        path = Path(path)
        if not (path / "zarr.json").is_file():
            raise FileNotFoundError(f"no pyramid at {path}")
        try:
            group = zarr.open_group(str(path), mode="r", zarr_format=3)
            metadata = parse_image_attrs(group.attrs.asdict())
            arrays = [group[level] for level in metadata.level_paths]
        except (KeyError, ValueError, TypeError) as error:
            raise CorruptImage(f"cannot open pyramid {path.name}: {error}") from error
        if not all(isinstance(array, zarr.Array) and array.ndim == 3 for array in arrays):
            raise CorruptImage(f"pyramid {path.name} levels are not (c, y, x) arrays")
        return cls(path, metadata, arrays)  # type: ignore[arg-type]

    def _check_level(self, level: int) -> tuple[int, int]:
        if not 0 <= level < len(self.levels):
            raise OutOfRange(
                f"level {level} does not exist; valid levels are 0 to {len(self.levels) - 1}"
            )
        return self.levels[level]

    def tile_grid(self, level: int) -> tuple[int, int]:
        """(rows, columns) of tiles at ``level``."""
        height, width = self._check_level(level)
        return math.ceil(height / self.tile_size), math.ceil(width / self.tile_size)

    def read_region(self, level: int, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        """Pixels [y0:y1, x0:x1] of every channel at ``level`` as a (c, h, w) array."""
        height, width = self._check_level(level)
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise OutOfRange(
                f"region y {y0}:{y1}, x {x0}:{x1} is outside level {level} "
                f"(valid: 0 <= y0 < y1 <= {height}, 0 <= x0 < x1 <= {width})"
            )
        return numpy.asarray(self._arrays[level][:, y0:y1, x0:x1])

    def __repr__(self) -> str:
        return (f"<Pyramid {self.path} shape={self.shape} dtype={self.dtype.name} "
                f"levels={len(self.levels)}>")


def render_tile(
    pyramid: Pyramid, level: int, row: int, col: int, *, fmt: str = "jpeg", quality: int = 85
) -> bytes:
    """Encode tile (row, col) of ``level``: tile_size square, smaller at the right/bottom edges.

    Each channel is windowed linearly to 8 bits; one channel gives grey, several an additive
    colour composite (so RGB images come out as RGB).  Raises UnsupportedTileFormat for an
    unknown ``fmt`` and OutOfRange (message gives the valid range) for a missing tile.
    """
    fmt = check_tile_format(fmt)
    rows, cols = pyramid.tile_grid(level)
    if not (0 <= row < rows and 0 <= col < cols):
        raise OutOfRange(
            f"tile row {row}, column {col} does not exist at level {level}; valid rows are "
            f"0 to {rows - 1} and columns 0 to {cols - 1}"
        )
    height, width = pyramid.levels[level]
    size = pyramid.tile_size
    y0, x0 = row * size, col * size
    data = pyramid.read_region(level, y0, min(y0 + size, height), x0, min(x0 + size, width))
    pixels = to_display_pixels(data, pyramid.windows, pyramid.colors)
    return encode_image(pixels, fmt, quality=quality)


@functools.lru_cache(maxsize=OPEN_PYRAMID_CACHE_SIZE)
def _open_cached(path: str) -> Pyramid:
    return Pyramid.open(path)


def open_pyramid(path: str | os.PathLike) -> Pyramid:
    """``Pyramid.open`` with an LRU cache keyed by the path string (pyramids are immutable).

    ``open_pyramid.cache_clear()`` forgets every cached pyramid (e.g. after one is deleted).
    """
    return _open_cached(os.fspath(path))


open_pyramid.cache_clear = _open_cached.cache_clear  # type: ignore[attr-defined]
