"""View planes of volumes: xz/yz at physical proportions, slices by level-0 number, pixel-exact where no stretch."""

from __future__ import annotations

import math

import numpy
import pytest

from tests.tiler.test_tiler_planes import EXACT, anisotropic, decode, plane_of, volume  # noqa: F401 (fixtures)
from tiler.errors import OutOfRange
from tiler.reslice import render_view_tile, view_plane_size, view_plane_sizes


def view_image(pyramid, plane, index0, level=0):
    """Stitch every view tile of a plane at a level into one array."""
    h0, w0 = view_plane_size(pyramid, plane)
    h, w = math.ceil(h0 / 2**level), math.ceil(w0 / 2**level)
    size = pyramid.tile_size
    out = numpy.zeros((h, w), numpy.uint8)
    for row in range(math.ceil(h / size)):
        for col in range(math.ceil(w / size)):
            tile = decode(render_view_tile(pyramid, level, row, col, plane=plane, index0=index0, fmt="png",
                                           display=EXACT))
            out[row * size:row * size + tile.shape[0], col * size:col * size + tile.shape[1]] = tile
    return out


@pytest.mark.parametrize("plane,index0", [("xy", 7), ("xz", 13), ("yz", 69)])
def test_isotropic_view_planes_are_the_voxels(volume, plane, index0):  # noqa: F811
    pyramid, data = volume
    assert numpy.array_equal(view_image(pyramid, plane, index0), plane_of(data, plane, index0)[0])


def test_anisotropic_side_planes_are_stretched_to_physical_proportions(anisotropic):  # noqa: F811
    pyramid, data = anisotropic
    assert view_plane_sizes(pyramid) == {"xy": [50, 70], "xz": [48, 70], "yz": [48, 50]}  # 12 z × (2.0 / 0.5)
    image = view_image(pyramid, "xz", 20)
    expected = numpy.repeat(plane_of(data, "xz", 20)[0], 4, axis=0)  # each 2 µm voxel spans four 0.5 µm rows
    assert numpy.array_equal(image, expected)


def test_lower_levels_and_level0_slice_numbers(volume):  # noqa: F811
    pyramid, _data = volume
    image = view_image(pyramid, "xz", 13, level=1)
    assert image.shape == tuple(math.ceil(n / 2) for n in view_plane_size(pyramid, "xz"))
    level1 = pyramid.read_plane(1, "xz", pyramid.level_slice(1, "xz", 13), 0, *pyramid.plane_shape(1, "xz")[:1],
                                0, pyramid.plane_shape(1, "xz")[1])
    assert numpy.array_equal(image, level1[0])


def test_view_tiles_outside_the_plane_are_refused(volume):  # noqa: F811
    pyramid, _data = volume
    with pytest.raises(OutOfRange, match="valid rows"):
        render_view_tile(pyramid, 0, 9, 0, plane="xz", index0=0)
    with pytest.raises(OutOfRange, match="valid slices"):
        render_view_tile(pyramid, 0, 0, 0, plane="yz", index0=70)
