"""Direct shard reads (tiler.shard_reader): equal to zarr's, empty chunks, corruption, fallback."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy
import pytest
import zarr
import zarr.codecs

import tiler.pyramid_reader
import tiler.render
from tiler.chunk_cache import default_chunk_cache
from tiler.errors import CorruptImage
from tiler.pyramid import write_pyramid
from tiler.readers.volume_base import VolumeSource
from tiler.render import DEFAULT_TILE_CACHE_BYTES, Pyramid, configure_tile_cache, render_tile
from tiler.shard_reader import ShardedArrayReader, open_shard_reader
from tiler.synthetic import synthetic_image
from tiler.volume_pyramid import write_volume_pyramid


class _Volume(VolumeSource):
    """An in-memory (c, z, y, x) VolumeSource."""

    format_name = "ARRAY"

    def __init__(self, data: numpy.ndarray) -> None:
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        self.channel_names = [f"channel {i}" for i in range(data.shape[0])]
        self.voxel_size, self.unit, self.metadata = None, None, {}
        self.random_access = True

    def _read_block(self, z0, z1, y0, y1, x0, x1) -> numpy.ndarray:
        return self.data[:, z0:z1, y0:y1, x0:x1].copy()


def _image(shape, dtype: str, channels: int = 1) -> numpy.ndarray:
    data = synthetic_image(shape, dtype, channels)
    data[:, :70, :140] = 0  # whole empty chunks, and at tile 32 / shard 64 an absent shard file
    data[:, 96:128, :32] = 0  # an empty chunk in a shard that is stored
    return data


def _write_2d(folder: Path, array_source, shape, dtype: str, channels: int = 1) -> Path:
    dest = folder / f"{dtype}-{channels}.ome.zarr"
    write_pyramid(array_source(data=_image(shape, dtype, channels)), dest, tile_size=32,
                  shard_size=64)
    return dest


def _chunks_match_zarr(pyramid: Pyramid) -> int:
    """Check every chunk of every level against zarr; return how many were empty."""
    empty = 0
    for level, array in enumerate(pyramid._arrays):
        reader = pyramid._shard_readers[level]
        assert reader is not None
        for chunk in itertools.product(*(range(n) for n in reader.chunk_grid)):
            region = tuple(slice(i * side, min((i + 1) * side, size)) for i, side, size in
                           zip(chunk, reader.chunk_shape, array.shape, strict=True))
            expected = numpy.asarray(array[region])
            got = reader.read_chunk(chunk)
            assert got.shape == reader.chunk_shape and got.dtype == expected.dtype
            numpy.testing.assert_array_equal(got[tuple(slice(0, n) for n in expected.shape)],
                                             expected)
            empty += not got.any()
    return empty


@pytest.mark.parametrize(("shape", "dtype", "channels"), [
    ((150, 219), "uint8", 1), ((150, 219), "uint16", 1), ((97, 130), "uint8", 3),
    ((128, 192), "float32", 2),
])
def test_2d_chunks_equal_zarrs(tmp_path: Path, array_source, shape, dtype, channels) -> None:
    pyramid = Pyramid.open(_write_2d(tmp_path, array_source, shape, dtype, channels))
    assert _chunks_match_zarr(pyramid) > 0
    assert not (pyramid.path / "0" / "c" / "0" / "0" / "0").exists()  # an all-empty shard


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_3d_chunks_equal_zarrs(tmp_path: Path, dtype: str) -> None:
    rng = numpy.random.default_rng(3)
    data = (rng.random((1, 37, 45, 50)) * 200).astype(dtype)
    data[:, :16, :16, :16] = 0
    dest = tmp_path / "v.ome.zarr"
    write_volume_pyramid(_Volume(data), dest, chunk=8, shard_chunks=2, threads=1)
    pyramid = Pyramid.open(dest)
    assert _chunks_match_zarr(pyramid) > 0
    numpy.testing.assert_array_equal(pyramid.read_plane(0, "xz", 20, 0, 37, 3, 50),
                                     data[:, :, 20, 3:50])


def test_empty_chunks_read_as_fill_value(tmp_path: Path, array_source) -> None:
    pyramid = Pyramid.open(_write_2d(tmp_path, array_source, (150, 219), "uint16"))
    reader = pyramid._shard_readers[0]
    assert not reader.read_chunk((0, 0, 0)).any()  # its shard file does not exist
    assert (pyramid.path / "0" / "c" / "0" / "1" / "0").is_file()
    assert not reader.read_chunk((0, 3, 0)).any()  # not stored in a shard that exists
    assert reader.read_chunk((0, 2, 0)).any() and reader.read_chunk((0, 3, 1)).any()
    with pytest.raises(IndexError):
        reader.read_chunk((0, 5, 0))


def test_corrupted_index_is_corrupt_image(tmp_path: Path, array_source) -> None:
    dest = _write_2d(tmp_path, array_source, (150, 219), "uint16")
    shard = dest / "0" / "c" / "0" / "1" / "1"
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF  # inside the index
    shard.write_bytes(bytes(raw))
    pyramid = Pyramid.open(dest)
    default_chunk_cache().clear()
    with pytest.raises(CorruptImage, match="crc32c"):
        pyramid._shard_readers[0].read_chunk((0, 2, 2))
    with pytest.raises(CorruptImage, match="crc32c"):
        pyramid.read_region(0, 64, 96, 64, 96)


def test_damaged_chunk_and_truncated_shard_are_corrupt_image(tmp_path: Path,
                                                              array_source) -> None:
    dest = _write_2d(tmp_path, array_source, (150, 219), "uint16")
    shard = dest / "0" / "c" / "0" / "1" / "1"
    raw = bytearray(shard.read_bytes())
    raw[4:8] = b"\0\0\0\0"  # the first chunk's blosc header: wrong decoded size
    shard.write_bytes(bytes(raw))
    reader = open_shard_reader(dest / "0")
    with pytest.raises(CorruptImage, match="does not decode"):
        for chunk in itertools.product([0], (2, 3), (2, 3)):
            reader.read_chunk(chunk)
    shard.write_bytes(bytes(raw[:10]))
    with pytest.raises(CorruptImage, match="too short"):
        open_shard_reader(dest / "0").read_chunk((0, 2, 2))


def _rewrite_level(dest: Path, level: str, **options) -> None:
    """Replace a level's array with the same pixels in another zarr layout."""
    data = zarr.open_array(str(dest / level), mode="r")[...]
    shutil.rmtree(dest / level)
    group = zarr.open_group(str(dest), mode="r+")
    array = group.create_array(level, shape=data.shape, dtype=data.dtype, fill_value=0,
                               dimension_names=("c", "y", "x"), **options)
    array[...] = data


@pytest.mark.parametrize("options", [
    {"chunks": (1, 32, 32)},  # no sharding
    {"chunks": (1, 32, 32), "shards": (1, 64, 64), "compressors": zarr.codecs.GzipCodec()},
    {"chunks": (1, 32, 32), "shards": (1, 64, 64), "compressors": None},
    {"chunks": (1, 32, 32), "shards": (1, 64, 64), "serializer": zarr.codecs.ShardingCodec(
        chunk_shape=(1, 32, 32), index_location="start",
        codecs=[zarr.codecs.BytesCodec(), zarr.codecs.BloscCodec()]), "compressors": None},
    {"chunks": (1, 32, 32), "shards": (1, 64, 64), "filters": [
        zarr.codecs.TransposeCodec(order=(0, 2, 1))]},
], ids=["unsharded", "gzip", "uncompressed", "index-at-start", "transpose"])
def test_other_layouts_fall_back_to_zarr(tmp_path: Path, array_source, options) -> None:
    dest = _write_2d(tmp_path, array_source, (150, 219), "uint16")
    expected = Pyramid.open(dest).read_region(0, 0, 150, 0, 219)
    if "serializer" in options:
        options = {key: value for key, value in options.items() if key != "shards"}
        options["chunks"] = (1, 64, 64)
    _rewrite_level(dest, "0", **options)
    assert not ShardedArrayReader.supports(dest / "0")
    assert ShardedArrayReader.supports(dest / "1")
    pyramid = Pyramid.open(dest)
    assert pyramid._shard_readers[0] is None and pyramid._shard_readers[1] is not None
    default_chunk_cache().clear()
    numpy.testing.assert_array_equal(pyramid.read_region(0, 0, 150, 0, 219), expected)
    assert render_tile(pyramid, 0, 4, 6, fmt="png")


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_tiles_identical_to_zarr_path(tmp_path: Path, array_source, monkeypatch,
                                      fmt: str) -> None:
    pyramids = [Pyramid.open(_write_2d(tmp_path, array_source, (150, 219), "uint16")),
                Pyramid.open(_write_2d(tmp_path, array_source, (97, 130), "uint8", 3))]
    data = (numpy.random.default_rng(4).random((2, 20, 70, 45)) * 900).astype("uint16")
    write_volume_pyramid(_Volume(data), tmp_path / "v.ome.zarr", chunk=8, shard_chunks=2,
                         threads=1)
    pyramids.append(Pyramid.open(tmp_path / "v.ome.zarr", tile_size=16))

    def render_all() -> list[bytes]:
        default_chunk_cache().clear()
        tiles = []
        for pyramid in pyramids:
            planes = ("xy", "xz", "yz") if pyramid.ndim == 3 else ("xy",)
            for level, plane in itertools.product(range(len(pyramid.levels)), planes):
                rows, cols = pyramid.tile_grid(level, plane)
                count = pyramid.plane_count(level, plane)
                for index in {0, count // 2, count - 1}:
                    tiles += [render_tile(pyramid, level, row, col, fmt=fmt, plane=plane,
                                          index=index)
                              for row in range(rows) for col in range(cols)]
        return tiles

    configure_tile_cache(1 << 20)  # the comparison must not be served from the tile cache
    monkeypatch.setattr(tiler.render, "_tile_cache", None)
    fast = render_all()
    monkeypatch.setattr(tiler.pyramid_reader, "FAST_SHARD_READS", False)
    assert render_all() == fast


def test_reads_without_chunk_cache(tmp_path: Path, array_source, monkeypatch) -> None:
    dest = _write_2d(tmp_path, array_source, (150, 219), "uint16")
    pyramid = Pyramid.open(dest)
    monkeypatch.setattr(tiler.pyramid_reader, "default_chunk_cache", lambda: None)
    numpy.testing.assert_array_equal(pyramid.read_region(0, 10, 140, 5, 200),
                                     _image((150, 219), "uint16")[:, 10:140, 5:200])


def test_encoded_tile_cache(tmp_path: Path, array_source, monkeypatch) -> None:
    from tiler.display import DisplaySettings
    dest = _write_2d(tmp_path, array_source, (150, 219), "uint16", 2)
    pyramid = Pyramid.open(dest)
    try:
        configure_tile_cache(1 << 20)
        first = render_tile(pyramid, 0, 2, 3)
        calls = []
        original = tiler.render.encode_image
        monkeypatch.setattr(tiler.render, "encode_image",
                            lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
        assert render_tile(pyramid, 0, 2, 3) is first and not calls
        other = render_tile(pyramid, 0, 2, 3, display=DisplaySettings(channels=(1,)))
        assert other != first and len(calls) == 1
        assert render_tile(pyramid, 0, 2, 3, fmt="png") != first and len(calls) == 2
        assert render_tile(pyramid, 0, 2, 3, quality=50) != first and len(calls) == 3
        assert render_tile(Pyramid.open(dest, tile_size=64), 0, 2, 3) != first  # 4th call
        configure_tile_cache(len(first) // 2)  # too small to hold a tile
        render_tile(pyramid, 0, 2, 3)
        render_tile(pyramid, 0, 2, 3)
        assert len(calls) == 6
        configure_tile_cache(0)
        assert tiler.render._tile_cache is None
        with pytest.raises(ValueError):
            configure_tile_cache(-1)
    finally:
        configure_tile_cache(DEFAULT_TILE_CACHE_BYTES)


def test_republished_pyramid_gets_fresh_tiles(tmp_path: Path, array_source) -> None:
    assert tiler.render._tile_cache is None  # off by default
    dest = tmp_path / "same.ome.zarr"
    ramp = numpy.arange(1600, dtype="uint16").reshape(1, 40, 40)
    try:
        configure_tile_cache(1 << 20)
        write_pyramid(array_source(data=ramp), dest)
        old = render_tile(Pyramid.open(dest), 0, 0, 0, fmt="png")
        shutil.rmtree(dest)
        write_pyramid(array_source(data=ramp[:, ::-1].copy()), dest)
        assert render_tile(Pyramid.open(dest), 0, 0, 0, fmt="png") != old
    finally:
        configure_tile_cache(DEFAULT_TILE_CACHE_BYTES)
