"""The fast tile path: libjpeg-turbo JPEGs equal Pillow's, paired LUTs, chunk views equal copies."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy
import pytest
from PIL import Image

import tiler.pyramid_reader
import tiler.render
from tiler.chunk_cache import ChunkCache, default_chunk_cache, read_chunk_view
from tiler.display import DisplaySettings, _window_values, encode_image, window_to_8bit
from tiler.pyramid import write_pyramid
from tiler.render import Pyramid, render_tile
from tiler.synthetic import synthetic_image


def _pillow_jpeg(pixels: numpy.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.mark.parametrize("shape", [(256, 256), (20, 232), (1, 1), (97, 130, 3), (256, 255, 3)])
@pytest.mark.parametrize("quality", [1, 50, 85, 100, -1])
def test_jpeg_bytes_equal_pillows(shape, quality: int) -> None:
    rng = numpy.random.default_rng(sum(shape))
    smooth = numpy.linspace(0, 200, shape[0] * shape[1]).reshape(shape[:2])
    if len(shape) == 3:
        smooth = smooth[..., None] * numpy.array([1.0, 0.6, 0.2])
    pixels = (smooth + rng.normal(0, 9, shape)).clip(0, 255).astype(numpy.uint8)
    assert encode_image(pixels, "jpeg", quality=quality) == _pillow_jpeg(pixels, quality)
    strided = numpy.zeros((shape[0], shape[1] + 7, *shape[2:]), numpy.uint8)[:, 3:3 + shape[1]]
    strided[...] = pixels
    assert encode_image(strided, "jpeg", quality=quality) == _pillow_jpeg(pixels, quality)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_paired_lookup_equals_the_arithmetic(dtype: str) -> None:
    info = numpy.iinfo(dtype)
    rng = numpy.random.default_rng(1)
    image = rng.integers(info.min, info.max, (40, 51), dtype=dtype, endpoint=True)
    planes = [image[:, :50], image[:, :51], image[:, 1:51], image[::2, :50], image[:, ::2],
              image[0, :2], image[:0, :0]]
    for plane, (start, end, gamma, invert) in itertools.product(
            planes, [(-100, 200, 1.0, False), (10, 60, 0.5, True), (0, 255, 2.0, False)]):
        fast = window_to_8bit(plane, start, end, gamma=gamma, invert=invert)
        assert fast.dtype == numpy.uint8 and fast.shape == plane.shape
        numpy.testing.assert_array_equal(fast, _window_values(plane, start, end, gamma, invert,
                                                              True))


def test_identity_window_returns_the_plane_uncopied() -> None:
    plane = numpy.arange(256, dtype=numpy.uint8).reshape(16, 16)
    assert window_to_8bit(plane, 0, 255) is plane
    assert window_to_8bit(plane, 0, 255, invert=True) is not plane
    numpy.testing.assert_array_equal(window_to_8bit(plane, 0, 255, invert=True), 255 - plane)


@pytest.fixture(scope="module")
def three_channels(tmp_path_factory: pytest.TempPathFactory, array_source) -> Pyramid:
    data = synthetic_image((150, 219), "uint16", 3)
    dest = tmp_path_factory.mktemp("fast") / "three.ome.zarr"
    write_pyramid(array_source(data=data), dest, tile_size=32, shard_size=64)
    return Pyramid.open(dest)


def test_chunk_views_equal_read_plane(three_channels: Pyramid) -> None:
    pyramid = three_channels
    reader = pyramid._shard_readers[0]
    for channels, box in itertools.product(
            [(0,), (1, 2), (0, 2), (2, 0), (0, 1, 2)],
            [((0, 32), (0, 32)), ((128, 150), (192, 219)), ((40, 50), (70, 90))]):
        for cache in (ChunkCache(1 << 20), None):
            view = read_chunk_view(reader, ("test", 0), channels, box, cache)
            if len({channel // reader.chunk_shape[0] for channel in channels}) > 1:
                assert view is None  # channels in different chunks
                continue
            expected = pyramid.read_plane(0, "xy", 0, *box[0], *box[1], channels=channels)
            assert not view.flags.writeable
            numpy.testing.assert_array_equal(view, expected)
    assert read_chunk_view(reader, ("test", 0), (0,), ((0, 33), (0, 32)), None) is None
    assert read_chunk_view(reader, ("test", 0), (), ((0, 32), (0, 32)), None) is None


def test_tiles_equal_through_every_read_path(three_channels: Pyramid, monkeypatch,
                                             tmp_path: Path) -> None:
    pyramids = [three_channels, Pyramid.open(three_channels.path, tile_size=64)]
    displays = [None, DisplaySettings(channels=(1,)), DisplaySettings(channels=(0, 2),
                                                                      gamma=0.7, invert=True)]
    monkeypatch.setattr(tiler.render, "_tile_cache", None)

    def render_all() -> list[bytes]:
        default_chunk_cache().clear()
        return [render_tile(pyramid, level, row, col, fmt=fmt, display=display)
                for pyramid in pyramids for level in range(len(pyramid.levels))
                for row, col in itertools.product(*map(range, pyramid.tile_grid(level)))
                for fmt in ("jpeg", "png") for display in displays]

    fast = render_all()
    monkeypatch.setattr(tiler.pyramid_reader, "default_chunk_cache", lambda: None)
    assert render_all() == fast
    monkeypatch.setattr(tiler.pyramid_reader, "FAST_SHARD_READS", False)
    assert render_all() == fast


def test_channels_sharing_a_chunk(tmp_path: Path, array_source, monkeypatch) -> None:
    import zarr.codecs

    from tests.tiler.test_tiler_shard_reader import _rewrite_level

    dest = tmp_path / "rgb.ome.zarr"
    write_pyramid(array_source(data=synthetic_image((150, 219), "uint16", 3)), dest, tile_size=32,
                  shard_size=64)
    _rewrite_level(dest, "0", chunks=(3, 32, 32), shards=(3, 64, 64),
                   compressors=zarr.codecs.BloscCodec(cname="zstd", shuffle="noshuffle"))
    pyramid = Pyramid.open(dest)
    reader = pyramid._shard_readers[0]
    assert reader is not None and reader.chunk_shape == (3, 32, 32)
    for channels in [(0,), (1, 2), (0, 2), (2, 0), (0, 1, 2)]:
        view = read_chunk_view(reader, ("rgb", 0), channels, ((40, 50), (70, 90)), None)
        numpy.testing.assert_array_equal(
            view, pyramid.read_plane(0, "xy", 0, 40, 50, 70, 90, channels=channels))
    monkeypatch.setattr(tiler.render, "_tile_cache", None)
    displays = [None, DisplaySettings(channels=(0, 2)), DisplaySettings(channels=(1,))]
    fast = [render_tile(pyramid, 0, 2, 3, display=display) for display in displays]
    monkeypatch.setattr(tiler.pyramid_reader, "FAST_SHARD_READS", False)
    default_chunk_cache().clear()
    assert [render_tile(pyramid, 0, 2, 3, display=display) for display in displays] == fast
