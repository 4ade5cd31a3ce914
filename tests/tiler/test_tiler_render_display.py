"""Display parameters: channels on/off, windows, colours, colormaps, gamma, invert; the web-query form."""

from __future__ import annotations

import io
from pathlib import Path

import numpy
import pytest
from PIL import Image

from tiler.colormaps import COLORMAPS, colormap_table
from tiler.display import (
    DisplaySettings,
    _window_values,
    parse_display,
    to_display_pixels,
    window_to_8bit,
)
from tiler.errors import InvalidParameter, TilerError
from tiler.pyramid import write_pyramid
from tiler.render import Pyramid, render_tile

RAMP = numpy.arange(256, dtype=numpy.uint8).reshape(1, 16, 16)


def decode(tile: bytes) -> numpy.ndarray:
    return numpy.asarray(Image.open(io.BytesIO(tile)))


@pytest.fixture(scope="module")
def two_channels(tmp_path_factory: pytest.TempPathFactory, array_source):
    """uint16 channels: 0 is a ramp 0..2550 across x, 1 is 1000 in the top half."""
    data = numpy.zeros((2, 20, 30), dtype=numpy.uint16)
    data[0] = (numpy.arange(30, dtype=numpy.uint16) * 10)[None, :] * 8.5
    data[1, :10] = 1000
    dest = tmp_path_factory.mktemp("display") / "two.ome.zarr"
    write_pyramid(array_source(data=data), dest)
    return Pyramid.open(dest), data


@pytest.fixture(scope="module")
def ramp(tmp_path_factory: pytest.TempPathFactory, array_source):
    dest = tmp_path_factory.mktemp("display") / "ramp.ome.zarr"
    write_pyramid(array_source(data=RAMP.copy()), dest)
    return Pyramid.open(dest)


def test_default_display_is_the_old_rendering(two_channels) -> None:
    pyramid, _ = two_channels
    old = render_tile(pyramid, 0, 0, 0, fmt="png")
    assert render_tile(pyramid, 0, 0, 0, fmt="png", display=DisplaySettings()) == old
    assert DisplaySettings().key() == "default"


def test_window_gamma_invert_on_a_ramp(ramp) -> None:
    exact = DisplaySettings(windows=((0, 255),))
    numpy.testing.assert_array_equal(decode(render_tile(ramp, 0, 0, 0, fmt="png",
                                                        display=exact)), RAMP[0])
    inverted = decode(render_tile(ramp, 0, 0, 0, fmt="png",
                                  display=DisplaySettings(windows=((0, 255),), invert=True)))
    numpy.testing.assert_array_equal(inverted, 255 - RAMP[0])
    bent = decode(render_tile(ramp, 0, 0, 0, fmt="png",
                              display=DisplaySettings(windows=((0, 255),), gamma=2.0)))
    expected = numpy.rint(255 * (RAMP[0] / 255.0) ** 2)
    assert numpy.abs(bent - expected).max() <= 1
    assert bent[8, 0] == 64 and bent.flat[0] == 0 and bent.flat[-1] == 255
    narrow = decode(render_tile(ramp, 0, 0, 0, fmt="png",
                                display=DisplaySettings(windows=((100, 200),))))
    assert narrow.flat[100] == 0 and narrow.flat[150] == 128 and narrow.flat[200] == 255


@pytest.mark.parametrize("name", COLORMAPS)
def test_colormaps_map_the_windowed_value(ramp, name) -> None:
    tile = decode(render_tile(ramp, 0, 0, 0, fmt="png",
                              display=DisplaySettings(windows=((0, 255),), colormap=name)))
    if name == "grey":
        numpy.testing.assert_array_equal(tile, RAMP[0])
    else:
        numpy.testing.assert_array_equal(tile, colormap_table(name)[RAMP[0]])


def test_colormap_tables() -> None:
    viridis, fire = colormap_table("viridis"), colormap_table("fire")
    assert viridis[0].tolist() == [68, 1, 84] and viridis[255].tolist() == [253, 231, 37]
    assert fire[0].tolist() == [0, 0, 0] and fire[128].tolist() == [240, 79, 0]
    assert fire[255].tolist() == [255, 255, 255] and colormap_table("gray")[7].tolist() == [7] * 3
    assert not viridis.flags.writeable


def test_channels_off_and_colours(two_channels) -> None:
    pyramid, _ = two_channels
    both = decode(render_tile(pyramid, 0, 0, 0, fmt="png"))
    assert both[5, 0].tolist() == [255, 0, 255] and both[15, 0].tolist() == [0, 0, 0]
    only_second = decode(render_tile(pyramid, 0, 0, 0, fmt="png",
                                     display=DisplaySettings(channels=(1,))))
    assert only_second[5, 29].tolist() == [255, 0, 255] and only_second[15, 29].tolist() == [0] * 3
    red = DisplaySettings(channels=(1,), colors=("00FF00", "#ff0000"))
    assert decode(render_tile(pyramid, 0, 0, 0, fmt="png", display=red))[5, 3].tolist() == [
        255, 0, 0]
    white = DisplaySettings(channels=(0,), colors=("FFFFFF", "FF0000"), windows=((0, 2550),
                                                                                None))
    grey = decode(render_tile(pyramid, 0, 0, 0, fmt="png", display=white))
    assert grey.ndim == 2 and grey[0, 10] == 85 and grey[0, 29] == 246
    dark = decode(render_tile(pyramid, 0, 0, 0, fmt="png", display=DisplaySettings(channels=())))
    assert dark.shape == (20, 30) and not dark.any()


def test_integer_lookup_tables_match_the_arithmetic() -> None:
    rng = numpy.random.default_rng(0)
    for dtype in ("uint8", "int8", "uint16", "int16"):
        info = numpy.iinfo(dtype)
        plane = rng.integers(info.min, info.max, (40, 50), dtype=dtype, endpoint=True)
        for gamma, invert, rounded in ((1.0, False, True), (0.5, True, True), (2.5, False, False)):
            fast = window_to_8bit(plane, -100, 2000, gamma=gamma, invert=invert, rounded=rounded)
            slow = _window_values(plane, -100, 2000, gamma, invert, rounded)
            numpy.testing.assert_array_equal(fast, slow)
    floats = numpy.array([[numpy.nan, -1.0, 0.5, 2.0, numpy.inf]], dtype=numpy.float32)
    assert window_to_8bit(floats, 0, 1).tolist() == [[0, 0, 128, 255, 255]]


def test_to_display_pixels_keeps_its_positional_form() -> None:
    data = numpy.array([[[0, 255]], [[255, 0]]], dtype=numpy.uint8)
    pixels = to_display_pixels(data, [(0, 255), (0, 255)], ["FF0000", "0000FF"])
    assert pixels.tolist() == [[[0, 0, 255], [255, 0, 0]]]
    pixels = to_display_pixels(data[:1], [(0, 255)], ["FFFFFF"], colormap="magma")
    assert pixels.shape == (1, 2, 3) and pixels[0, 1].tolist() == [252, 253, 191]
    with pytest.raises(ValueError, match="exactly one channel"):
        to_display_pixels(data, [(0, 255)] * 2, ["FF0000", "viridis"])


def test_parse_display_reads_every_parameter() -> None:
    settings = parse_display({"c": "2,0", "w": "0:1000,auto,-5.5:1e3", "color": "ff0000,#00FF00,"
                              "0000FF", "gamma": "0.8", "invert": "1", "v": "3", "t": "x"}, 3)
    assert settings == DisplaySettings(channels=(0, 2), windows=((0.0, 1000.0), None,
                                                                  (-5.5, 1000.0)),
                                       colors=("FF0000", "00FF00", "0000FF"), gamma=0.8,
                                       invert=True)
    assert parse_display({"v": "7", "t": "token"}, 2) == DisplaySettings()
    assert parse_display({"c": ""}, 2).channels == ()
    assert parse_display({"cmap": "Viridis"}, 1).colormap == "viridis"
    assert parse_display({"c": "1", "cmap": "fire"}, 3).colormap == "fire"
    assert parse_display({"color": "gray"}, 1).colors == ("grey",)
    assert parse_display({"invert": "0"}, 1).invert is False


def test_keys_are_short_stable_and_distinct() -> None:
    one = parse_display({"c": "0", "w": "0:10,auto"}, 2)
    same = DisplaySettings(channels=[0], windows=[(0, 10), None])
    assert one.key() == same.key() and len(one.key()) == 16
    assert one.key() != parse_display({"c": "0", "w": "0:11,auto"}, 2).key()
    assert DisplaySettings(channels=(2, 0, 2)).key() == DisplaySettings(channels=[0, 2]).key()
    assert one.key() == "5b44cf94211c967f"  # the same in every process and version


@pytest.mark.parametrize(("query", "message"), [
    ({"c": "9"}, "channel 9 does not exist; valid channels are 0 to 2"),
    ({"c": "a"}, "channel 'a' is not a channel number; valid channels are 0 to 2"),
    ({"w": "a:b,auto,auto"}, r"window 'a:b' for channel 0 is not start:end .*e\.g\. 0:1000"),
    ({"w": "5:1,auto,auto"}, "start < end"),
    ({"w": "0:1"}, "w has 1 windows but the image has 3 channels"),
    ({"w": "nan:1,auto,auto"}, "is not start:end"),
    ({"color": "XYZ,FF0000,FF0000"}, r"colour 'XYZ' for channel 0 is not a hex RRGGBB colour"),
    ({"color": "FF0000"}, "color has 1 colours but the image has 3 channels"),
    ({"cmap": "jet", "c": "0"}, "unknown colormap 'jet'; use one of grey, viridis, magma, "
                                "inferno, fire"),
    ({"cmap": "viridis"}, "a colormap shows exactly one channel, but 3 are on"),
    ({"color": "viridis,FF0000,FF0000"}, "a colormap shows exactly one channel"),
    ({"gamma": "0"}, "gamma 0.0 is out of range; use a number from 0.1 to 10"),
    ({"gamma": "11"}, "out of range"),
    ({"gamma": "x"}, "gamma is not a number from 0.1 to 10"),
    ({"invert": "maybe"}, "invert must be 1 or 0"),
])
def test_parse_display_rejects_bad_values(query, message) -> None:
    with pytest.raises(InvalidParameter, match=message) as caught:
        parse_display(query, 3)
    assert isinstance(caught.value, TilerError) and isinstance(caught.value, ValueError)


def test_render_tile_validates_display_settings(two_channels) -> None:
    pyramid, _ = two_channels
    for settings, message in [(DisplaySettings(channels=(9,)), "valid channels are 0 to 1"),
                              (DisplaySettings(gamma=0), "gamma"),
                              (DisplaySettings(windows=((0, 1),)), "one per channel"),
                              (DisplaySettings(colors=("red", "FF0000")), "hex RRGGBB")]:
        with pytest.raises(InvalidParameter, match=message):
            render_tile(pyramid, 0, 0, 0, display=settings)


def test_display_settings_render_volumes_too(tmp_path: Path) -> None:
    from tests.tiler.test_tiler_planes import ArrayVolume
    from tiler.volume_pyramid import write_volume_pyramid

    data = numpy.broadcast_to(RAMP[:, None], (1, 4, 16, 16)).copy()
    write_volume_pyramid(ArrayVolume(data), tmp_path / "v.ome.zarr", chunk=8)
    pyramid = Pyramid.open(tmp_path / "v.ome.zarr")
    tile = decode(render_tile(pyramid, 0, 0, 0, fmt="png", plane="xz", index=3,
                              display=DisplaySettings(windows=((0, 255),), invert=True)))
    numpy.testing.assert_array_equal(tile, 255 - data[0, :, 3, :])
