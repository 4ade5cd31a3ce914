"""Tile rendering: exact pixels, edge tile sizes, formats, colour composites and range errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy
import pytest
from PIL import Image

from tiler.errors import OutOfRange, TilerError, UnsupportedTileFormat
from tiler.pyramid import write_pyramid
from tiler.render import Pyramid, open_pyramid, render_tile
from tiler.synthetic import synthetic_image


@pytest.fixture(scope="module")
def grey_uint8(tmp_path_factory: pytest.TempPathFactory, array_source):
    """A 1000 x 1300 uint8 pyramid whose default window is exactly 0..255, and its pixels."""
    data = synthetic_image((1000, 1300), "uint8")
    data[0, :120, :120] = 0  # big enough to survive to the lowest level: window 0..255
    data[0, -120:, -120:] = 255
    dest = tmp_path_factory.mktemp("render") / "grey.ome.zarr"
    write_pyramid(array_source(data=data), dest)
    return Pyramid.open(dest), data


def decode(tile: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(tile))
    image.load()
    return image


def test_png_tile_is_pixel_exact(grey_uint8) -> None:
    pyramid, data = grey_uint8
    assert pyramid.windows == [(0.0, 255.0)]
    for row, col in [(0, 0), (1, 2), (3, 5)]:
        image = decode(render_tile(pyramid, 0, row, col, fmt="png"))
        assert image.format == "PNG" and image.mode == "L"
        expected = data[0, row * 256:(row + 1) * 256, col * 256:(col + 1) * 256]
        numpy.testing.assert_array_equal(numpy.asarray(image), expected)


def test_lower_level_tiles_show_the_downsampled_level(grey_uint8) -> None:
    pyramid, _ = grey_uint8
    image = decode(render_tile(pyramid, 2, 0, 1, fmt="png"))
    expected = pyramid.read_region(2, 0, 250, 256, 325)[0]
    numpy.testing.assert_array_equal(numpy.asarray(image), expected)


@pytest.mark.parametrize(
    ("level", "row", "col", "size"),
    [(0, 0, 0, (256, 256)), (0, 3, 5, (20, 232)), (0, 3, 0, (256, 232)), (0, 0, 5, (20, 256)),
     (1, 1, 2, (138, 244)), (3, 0, 0, (163, 125))],
)
def test_edge_tiles_are_smaller_not_padded(grey_uint8, level, row, col, size) -> None:
    pyramid, _ = grey_uint8
    assert decode(render_tile(pyramid, level, row, col, fmt="png")).size == size


@pytest.mark.parametrize(("fmt", "pil_format"), [("jpeg", "JPEG"), ("JPEG", "JPEG"),
                                                 ("webp", "WEBP"), ("png", "PNG")])
def test_formats_decode(grey_uint8, fmt, pil_format) -> None:
    pyramid, data = grey_uint8
    image = decode(render_tile(pyramid, 0, 1, 1, fmt=fmt, quality=90))
    assert image.format == pil_format and image.size == (256, 256)
    grey = numpy.asarray(image.convert("L"), dtype=float)  # WebP is always decoded as RGB
    error = numpy.abs(grey - data[0, 256:512, 256:512])
    assert error.mean() < 4


def test_jpeg_is_the_default(grey_uint8) -> None:
    pyramid, _ = grey_uint8
    assert render_tile(pyramid, 0, 0, 0)[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize(
    ("level", "row", "col", "message"),
    [(99, 0, 0, "valid levels are 0 to 3"), (-1, 0, 0, "valid levels are 0 to 3"),
     (0, -1, 0, "valid rows are 0 to 3 and columns 0 to 5"),
     (0, 0, 6, "valid rows are 0 to 3 and columns 0 to 5"),
     (0, 4, 0, "valid rows are 0 to 3"), (3, 0, 1, "valid rows are 0 to 0 and columns 0 to 0")],
)
def test_out_of_range(grey_uint8, level, row, col, message) -> None:
    pyramid, _ = grey_uint8
    with pytest.raises(OutOfRange, match=message):
        render_tile(pyramid, level, row, col)


def test_unknown_format_is_rejected(grey_uint8) -> None:
    pyramid, _ = grey_uint8
    with pytest.raises(UnsupportedTileFormat, match="use one of jpeg, png, webp") as caught:
        render_tile(pyramid, 0, 0, 0, fmt="gif")
    assert isinstance(caught.value, TilerError) and isinstance(caught.value, ValueError)


def test_read_region_bounds(grey_uint8) -> None:
    pyramid, data = grey_uint8
    numpy.testing.assert_array_equal(pyramid.read_region(0, 990, 1000, 1290, 1300),
                                     data[:, 990:, 1290:])
    with pytest.raises(OutOfRange, match="valid: 0 <= y0 < y1 <= 500, 0 <= x0 < x1 <= 650"):
        pyramid.read_region(1, 0, 501, 0, 10)
    with pytest.raises(OutOfRange, match="level 4 does not exist"):
        pyramid.read_region(4, 0, 1, 0, 1)


def test_rgb_pyramid_renders_in_colour(tmp_path: Path, array_source) -> None:
    data = numpy.zeros((3, 40, 50), dtype=numpy.uint8)
    data[0, :, :10], data[1, :, 10:20], data[2, :, 20:30] = 255, 255, 255
    data[:, :, 30:] = 128
    data[:, :2, :2] = 0
    write_pyramid(array_source(data=data, channel_names=["red", "green", "blue"]),
                  tmp_path / "rgb.ome.zarr")
    pyramid = Pyramid.open(tmp_path / "rgb.ome.zarr")
    assert pyramid.colors == ["FF0000", "00FF00", "0000FF"]
    assert pyramid.windows == [(0.0, 255.0)] * 3
    image = decode(render_tile(pyramid, 0, 0, 0, fmt="png"))
    assert image.mode == "RGB"
    numpy.testing.assert_array_equal(numpy.asarray(image), numpy.moveaxis(data, 0, -1))


def test_multichannel_composite_adds_colours(tmp_path: Path, array_source) -> None:
    data = numpy.zeros((2, 20, 20), dtype=numpy.uint16)
    data[0, :, :10] = 1000  # channel 0 -> green, channel 1 -> magenta
    data[1, :10, :] = 1000
    write_pyramid(array_source(data=data), tmp_path / "two.ome.zarr")
    pyramid = Pyramid.open(tmp_path / "two.ome.zarr")
    assert pyramid.colors == ["00FF00", "FF00FF"]
    pixels = numpy.asarray(decode(render_tile(pyramid, 0, 0, 0, fmt="png")))
    assert pixels[15, 5].tolist() == [0, 255, 0]
    assert pixels[5, 15].tolist() == [255, 0, 255]
    assert pixels[5, 5].tolist() == [255, 255, 255]
    assert pixels[15, 15].tolist() == [0, 0, 0]


def test_open_pyramid_caches_by_path(grey_uint8, tmp_path: Path) -> None:
    pyramid, _ = grey_uint8
    first = open_pyramid(pyramid.path)
    assert open_pyramid(str(pyramid.path)) is first
    open_pyramid.cache_clear()
    assert open_pyramid(pyramid.path) is not first
    with pytest.raises(FileNotFoundError):
        open_pyramid(tmp_path / "missing.ome.zarr")
