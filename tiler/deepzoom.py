"""Deep Zoom (DZI): the XML descriptor and tiles addressed by DZI level, column and row (a volume's xy slices)."""

from __future__ import annotations

import math

from tiler.errors import OutOfRange
from tiler.iiif import ImageRequest, image_size, render_request
from tiler.render import Pyramid, render_tile

DZI_NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"


def max_dzi_level(pyramid: Pyramid) -> int:
    """DZI counts levels up from a 1×1 image; the full-resolution level is this one."""
    width, height = image_size(pyramid)
    return max(0, math.ceil(math.log2(max(width, height))))


def dzi_xml(pyramid: Pyramid, fmt: str = "jpg") -> str:
    """The .dzi descriptor (of each xy slice, for a volume)."""
    width, height = image_size(pyramid)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Image xmlns="{DZI_NAMESPACE}" Format="{fmt}" Overlap="0" '
            f'TileSize="{pyramid.tile_size}"><Size Width="{width}" Height="{height}"/></Image>\n')


def dzi_tile(pyramid: Pyramid, dzi_level: int, col: int, row: int, fmt: str = "jpeg", *,
             index: int | None = None) -> bytes:
    """A DZI tile: a pyramid tile where the pyramid has that level, else resampled from the smallest level.

    For a volume the image is xy slice ``index`` of level 0 (default: the middle slice).
    """
    top = max_dzi_level(pyramid)
    if not 0 <= dzi_level <= top:
        raise OutOfRange(f"DZI level {dzi_level} does not exist; valid levels are 0 to {top}")
    if index is None:
        index = pyramid.plane_count(0, "xy") // 2
    level = top - dzi_level
    if level < len(pyramid.levels):
        return render_tile(pyramid, level, row, col, fmt=fmt, index=pyramid.level_slice(level, "xy", index))
    width, height = image_size(pyramid)
    out_w, out_h = math.ceil(width / 2**level), math.ceil(height / 2**level)  # smaller than one tile
    if (row, col) != (0, 0):
        raise OutOfRange(f"DZI level {dzi_level} has a single tile (0, 0)")
    request = ImageRequest(0, 0, width, height, out_w, out_h, 0, False, "default", fmt)
    return render_request(pyramid, request, index=index)
