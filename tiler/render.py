"""Tiles of published pyramids (any plane of a volume) rendered to JPEG, PNG or WebP bytes."""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable

from tiler import pyramid_reader
from tiler.chunk_cache import read_chunk_view
from tiler.display import (
    DisplaySettings,
    ResolvedDisplay,
    check_tile_format,
    encode_image,
    resolved_pixels,
)
from tiler.errors import OutOfRange
from tiler.pyramid_reader import PLANES, VOLUME_TILE_SIZE, Pyramid
from tiler.storage import Location

__all__ = ["DEFAULT_TILE_CACHE_BYTES", "OPEN_PYRAMID_CACHE_SIZE", "PLANES", "VOLUME_TILE_SIZE",
           "Pyramid", "configure_tile_cache", "open_pyramid", "render_tile"]

#: How many opened pyramids ``open_pyramid`` keeps.
OPEN_PYRAMID_CACHE_SIZE = 64
_DEFAULT_DISPLAY = DisplaySettings()
#: Byte budget of the encoded-tile LRU until ``configure_tile_cache`` says otherwise: off
#: (0) by default; e.g. 32 << 20 holds about 2000 JPEG tiles.
DEFAULT_TILE_CACHE_BYTES = 0


class _TileCache:
    """Encoded tiles (bytes) in a thread-safe LRU under a byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            if (old := self._entries.pop(key, None)) is not None:
                self._bytes -= len(old)
            self._entries[key] = value
            self._bytes += len(value)
            while self._bytes > self.max_bytes:
                self._bytes -= len(self._entries.popitem(last=False)[1])


_tile_cache: _TileCache | None = None  # DEFAULT_TILE_CACHE_BYTES


def configure_tile_cache(max_bytes: int) -> None:
    """Replace the encoded-tile cache of ``render_tile`` with an empty one of ``max_bytes``;
    0 disables it (every call then renders)."""
    global _tile_cache
    if max_bytes < 0:
        raise ValueError("max_bytes must be >= 0")
    _tile_cache = _TileCache(max_bytes) if max_bytes else None


def render_tile(
    pyramid: Pyramid, level: int, row: int, col: int, *, fmt: str = "jpeg", quality: int = 85,
    plane: str = "xy", index: int = 0, display: DisplaySettings | None = None,
) -> bytes:
    """Encode tile (row, col) of slice ``index`` of ``plane`` at ``level``: tile_size square,
    smaller at the right/bottom edges.

    ``index`` counts slices at that level along the plane's normal (z for xy, y for xz, x for
    yz; 0 for images).  xz/yz tiles are in voxel units, not resampled for anisotropic voxels
    (``Pyramid.plane_scale`` says how to stretch them).  ``display`` picks channels, windows,
    colours or a colormap, gamma and invert (default: the pyramid's own settings); each channel
    is windowed to 8 bits, one channel gives grey, several an additive colour composite.  Raises
    UnsupportedTileFormat for an unknown ``fmt``, InvalidParameter for a bad plane or display
    setting and OutOfRange (message gives the valid range) for a missing level, slice or tile.
    Once ``configure_tile_cache`` enables it, encoded tiles are kept in an LRU keyed by the
    pyramid's files (path, inode, mtime), the tile and all of these arguments.
    """
    fmt = check_tile_format(fmt)
    display = display or _DEFAULT_DISPLAY
    resolved = _resolve(display, pyramid)
    rows, cols = pyramid.tile_grid(level, plane)
    index = pyramid.check_index(level, plane, index)
    if not (0 <= row < rows and 0 <= col < cols):
        where = f"level {level}" if plane == "xy" else f"level {level} of the {plane} plane"
        raise OutOfRange(
            f"tile row {row}, column {col} does not exist at {where}; valid rows are "
            f"0 to {rows - 1} and columns 0 to {cols - 1}"
        )
    cache = _tile_cache if pyramid._cache_prefix[1] is not None else None
    if cache is not None:
        key = (pyramid._cache_prefix, pyramid.tile_size, level, plane, index, row, col, fmt,
               quality, display)
        if (tile := cache.get(key)) is not None:
            return tile
    height, width = pyramid.plane_shape(level, plane)
    size = pyramid.tile_size
    r0, c0 = row * size, col * size
    r1, c1 = min(r0 + size, height), min(c0 + size, width)
    data = _tile_data(pyramid, level, plane, index, r0, r1, c0, c1, resolved.channels)
    pixels = resolved_pixels(data, resolved)
    tile = encode_image(pixels, fmt, quality=quality)
    if cache is not None:
        cache.put(key, tile)
    return tile


def _tile_data(pyramid: Pyramid, level: int, plane: str, index: int, r0: int, r1: int, c0: int,
               c1: int, channels: tuple[int, ...]):
    """``pyramid.read_plane`` of the tile; when the tile lies in one chunk of an xy plane read
    directly from its shards, a read-only view of that cached chunk instead of a copy."""
    reader = pyramid._shard_readers[level] if pyramid_reader.FAST_SHARD_READS else None
    if reader is not None and plane == "xy":
        box = ((r0, r1), (c0, c1)) if pyramid.ndim == 2 else ((index, index + 1), (r0, r1),
                                                               (c0, c1))
        view = read_chunk_view(reader, (*pyramid._cache_prefix, level), channels, box,
                               pyramid_reader.default_chunk_cache())
        if view is not None:
            return view.reshape(len(channels), r1 - r0, c1 - c0)
    return pyramid.read_plane(level, plane, index, r0, r1, c0, c1, channels=channels)


@functools.lru_cache(maxsize=256)
def _resolve_cached(display: DisplaySettings, windows: tuple,
                    colors: tuple) -> ResolvedDisplay:
    return display.resolve(windows, colors)


def _resolve(display: DisplaySettings, pyramid: Pyramid) -> ResolvedDisplay:
    """``display.resolve`` with the pyramid's defaults, remembered for repeated settings."""
    try:
        return _resolve_cached(display, tuple(pyramid.windows), tuple(pyramid.colors))
    except TypeError:  # unhashable settings: resolve (and validate) them every time
        return display.resolve(pyramid.windows, pyramid.colors)


@functools.lru_cache(maxsize=OPEN_PYRAMID_CACHE_SIZE)
def _open_cached(path: str | Location) -> Pyramid:
    return Pyramid.open(path)


def open_pyramid(path: str | os.PathLike | Location) -> Pyramid:
    """``Pyramid.open`` with an LRU cache keyed by the path string or the storage Location's URL
    (pyramids are immutable).

    ``open_pyramid.cache_clear()`` forgets every cached pyramid (e.g. after one is deleted).
    """
    return _open_cached(path if isinstance(path, Location) else os.fspath(path))


open_pyramid.cache_clear = _open_cached.cache_clear  # type: ignore[attr-defined]
