"""Deep Zoom (DZI): the XML descriptor and tiles addressed by DZI level, column and row."""

from __future__ import annotations

import math

from tiler.errors import OutOfRange
from tiler.iiif import ImageRequest, render_request
from tiler.render import Pyramid, render_tile

DZI_NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"


def max_dzi_level(pyramid: Pyramid) -> int:
    """DZI counts levels up from a 1×1 image; the full-resolution level is this one."""
    height, width = pyramid.levels[0]
    return max(0, math.ceil(math.log2(max(width, height))))


def dzi_xml(pyramid: Pyramid, fmt: str = "jpg") -> str:
    height, width = pyramid.levels[0]
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Image xmlns="{DZI_NAMESPACE}" Format="{fmt}" Overlap="0" '
            f'TileSize="{pyramid.tile_size}"><Size Width="{width}" Height="{height}"/></Image>\n')


def dzi_tile(pyramid: Pyramid, dzi_level: int, col: int, row: int, fmt: str = "jpeg") -> bytes:
    """A DZI tile: a pyramid tile where the pyramid has that level, else resampled from the smallest level."""
    top = max_dzi_level(pyramid)
    if not 0 <= dzi_level <= top:
        raise OutOfRange(f"DZI level {dzi_level} does not exist; valid levels are 0 to {top}")
    level = top - dzi_level
    if level < len(pyramid.levels):
        return render_tile(pyramid, level, row, col, fmt=fmt)
    height, width = pyramid.levels[0]
    out_w, out_h = math.ceil(width / 2**level), math.ceil(height / 2**level)  # smaller than one tile
    if (row, col) != (0, 0):
        raise OutOfRange(f"DZI level {dzi_level} has a single tile (0, 0)")
    request = ImageRequest(0, 0, width, height, out_w, out_h, 0, False, "default", fmt)
    return render_request(pyramid, request)
