"""Tiles of published pyramids (any plane of a volume) rendered to JPEG, PNG or WebP bytes."""

from __future__ import annotations

import functools
import os

from tiler.display import DisplaySettings, check_tile_format, encode_image, resolved_pixels
from tiler.errors import OutOfRange
from tiler.pyramid_reader import PLANES, VOLUME_TILE_SIZE, Pyramid

__all__ = ["OPEN_PYRAMID_CACHE_SIZE", "PLANES", "VOLUME_TILE_SIZE", "Pyramid", "open_pyramid",
           "render_tile"]

#: How many opened pyramids ``open_pyramid`` keeps.
OPEN_PYRAMID_CACHE_SIZE = 64
_DEFAULT_DISPLAY = DisplaySettings()


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
    """
    fmt = check_tile_format(fmt)
    resolved = (display or _DEFAULT_DISPLAY).resolve(pyramid.windows, pyramid.colors)
    rows, cols = pyramid.tile_grid(level, plane)
    index = pyramid.check_index(level, plane, index)
    if not (0 <= row < rows and 0 <= col < cols):
        where = f"level {level}" if plane == "xy" else f"level {level} of the {plane} plane"
        raise OutOfRange(
            f"tile row {row}, column {col} does not exist at {where}; valid rows are "
            f"0 to {rows - 1} and columns 0 to {cols - 1}"
        )
    height, width = pyramid.plane_shape(level, plane)
    size = pyramid.tile_size
    r0, c0 = row * size, col * size
    r1, c1 = min(r0 + size, height), min(c0 + size, width)
    data = pyramid.read_plane(level, plane, index, r0, r1, c0, c1, channels=resolved.channels)
    pixels = resolved_pixels(data, resolved)
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
