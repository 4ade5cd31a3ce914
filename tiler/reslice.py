"""Planes of a volume as a viewer shows them: xz and yz stretched to physical proportions, slices by level-0 number."""

# A viewer wants every plane to behave like a 2D pyramid whose levels halve both sides. For xy that is
# the pyramid itself. For xz and yz the rows are z, whose voxels may be longer (or shorter) than x and
# y, and whose pyramid levels may not halve; so the "view image" of such a plane has
# round(z · z-spacing / column-spacing) rows, and each view row takes the nearest voxel row of the
# pyramid level that has the right column resolution.

from __future__ import annotations

import math

import numpy

from tiler.display import check_tile_format, encode_image, resolved_pixels
from tiler.display_settings import DisplaySettings
from tiler.errors import OutOfRange
from tiler.pyramid_reader import Pyramid
from tiler.render import render_tile

_DEFAULT_DISPLAY = DisplaySettings()
_COLUMN_AXIS = {"xz": 2, "yz": 1}  # index into (z, y, x) of the column axis of each side plane


def view_plane_size(pyramid: Pyramid, plane: str) -> tuple[int, int]:
    """(height, width) at level 0 of the view image of `plane`."""
    if pyramid.check_plane(plane) == "xy":
        return pyramid.plane_shape(0, "xy")
    rows, cols = pyramid.plane_shape(0, plane)
    row_size, col_size = pyramid.plane_scale(0, plane)
    return max(1, round(rows * row_size / col_size)), cols


def view_plane_sizes(pyramid: Pyramid) -> dict[str, list[int]]:
    planes = ("xy", "xz", "yz") if pyramid.ndim == 3 else ("xy",)
    return {plane: list(view_plane_size(pyramid, plane)) for plane in planes}


def _nearest(view_start: int, view_stop: int, view_level0: int, voxels_level0: int, level_factor: int,
             view_factor: int, voxels_here: int) -> numpy.ndarray:
    """Voxel indices at a pyramid level for view pixels [start, stop) of a view level (nearest neighbour)."""
    centres = (numpy.arange(view_start, view_stop) + 0.5) * view_factor * (voxels_level0 / view_level0)
    return numpy.minimum(numpy.floor(centres).astype(numpy.int64) // level_factor, voxels_here - 1)


def render_view_tile(pyramid: Pyramid, level: int, row: int, col: int, *, plane: str = "xy", index0: int = 0,
                     fmt: str = "jpeg", quality: int = 85, display: DisplaySettings | None = None) -> bytes:
    """Tile (row, col) at view level `level` of the view image of `plane` through level-0 slice `index0`."""
    if pyramid.check_plane(plane) == "xy":
        index = pyramid.level_slice(level, "xy", index0) if pyramid.ndim == 3 else 0
        return render_tile(pyramid, level, row, col, fmt=fmt, quality=quality, plane="xy", index=index,
                           display=display)
    fmt = check_tile_format(fmt)
    resolved = (display or _DEFAULT_DISPLAY).resolve(pyramid.windows, pyramid.colors)
    data = view_tile_data(pyramid, level, row, col, plane=plane, index0=index0, channels=resolved.channels)
    return encode_image(resolved_pixels(data, resolved), fmt, quality=quality)


def view_tile_data(pyramid: Pyramid, level: int, row: int, col: int, *, plane: str = "xy", index0: int = 0,
                   channels=None) -> numpy.ndarray:
    """The stored values (c, h, w) under view tile (row, col) of `plane` at view level `level`, nearest neighbour."""
    if pyramid.check_plane(plane) == "xy":
        index = pyramid.check_index(level, "xy", pyramid.level_slice(level, "xy", index0) if pyramid.ndim == 3 else 0)
        height, width = pyramid.plane_shape(level, "xy")
        rows, cols = pyramid.tile_grid(level, "xy")
        _check_tile(level, row, col, rows, cols, plane)
        size = pyramid.tile_size
        r0, c0 = row * size, col * size
        return pyramid.read_plane(level, "xy", index, r0, min(r0 + size, height), c0, min(c0 + size, width),
                                  channels=channels)
    slice_here = pyramid.level_slice(level, plane, index0)
    view_h0, view_w0 = view_plane_size(pyramid, plane)
    factor = 2**level
    view_h, view_w = math.ceil(view_h0 / factor), math.ceil(view_w0 / factor)
    size = pyramid.tile_size
    _check_tile(level, row, col, math.ceil(view_h / size), math.ceil(view_w / size), plane)
    r0, c0 = row * size, col * size
    r1, c1 = min(r0 + size, view_h), min(c0 + size, view_w)
    voxel_rows0, voxel_cols0 = pyramid.plane_shape(0, plane)
    voxel_rows, voxel_cols = pyramid.plane_shape(level, plane)
    factors = pyramid.level_factors(level)
    z_index = _nearest(r0, r1, view_h0, voxel_rows0, factors[0], factor, voxel_rows)
    c_index = _nearest(c0, c1, view_w0, voxel_cols0, factors[_COLUMN_AXIS[plane]], factor, voxel_cols)
    data = pyramid.read_plane(level, plane, slice_here, int(z_index.min()), int(z_index.max()) + 1,
                              int(c_index.min()), int(c_index.max()) + 1, channels=channels)
    return data[:, z_index - z_index.min()][:, :, c_index - c_index.min()]


def _check_tile(level: int, row: int, col: int, rows: int, cols: int, plane: str) -> None:
    if not (0 <= row < rows and 0 <= col < cols):
        where = f"level {level}" if plane == "xy" else f"level {level} of the {plane} plane"
        raise OutOfRange(f"tile row {row}, column {col} does not exist at {where}; valid rows are "
                         f"0 to {rows - 1} and columns 0 to {cols - 1}")
