"""Shard files written by the pyramid writers: byte-identical to zarr's, streamed, bounded."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy
import pytest
import zarr
import zarr.codecs
from zarr.core.indexing import morton_order_iter

from tiler.downsample import mean_downsample_2x
from tiler.pyramid import _compressor
from tiler.pyramid_build import _Builder, max_tasks_in_flight
from tiler.zarr_shards import ShardFileWriter, morton_order


def make_array(folder: Path, dtype: str, shape=(2, 100, 130), chunks=(1, 16, 16),
               shards=(1, 64, 64)) -> zarr.Array:
    group = zarr.open_group(str(folder), mode="w", zarr_format=3)
    return group.create_array("0", shape=shape, dtype=dtype, chunks=chunks, shards=shards,
                              compressors=_compressor(dtype), fill_value=0)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", ">u2"])
def test_shards_are_byte_identical_to_zarrs(tmp_path: Path, dtype: str) -> None:
    rng = numpy.random.default_rng(5)
    data = (rng.random((2, 100, 130)) * 1000).astype(dtype)
    data[:, :40, :40] = 0  # whole empty chunks are left out of the shard
    data[1] = 0  # and a whole empty channel writes no shard files at all
    by_zarr, by_us = make_array(tmp_path / "zarr", dtype), make_array(tmp_path / "ours", dtype)
    by_zarr[...] = data
    writer = ShardFileWriter(by_us, tmp_path / "ours")
    for y0 in range(0, 100, 64):
        for x0 in range(0, 130, 64):
            writer.write((0, y0, x0), data[:, y0:y0 + 64, x0:x0 + 64])
    difference = subprocess.run(["diff", "-r", str(tmp_path / "zarr"), str(tmp_path / "ours")],
                                capture_output=True, text=True)
    assert difference.returncode == 0, difference.stdout
    numpy.testing.assert_array_equal(zarr.open_array(str(tmp_path / "ours" / "0"))[...], data)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_streamed_shards_read_back_as_written(tmp_path: Path, dtype: str) -> None:
    """The same writer streams shards slab by slab (the 3D writer's way), index at the end."""
    rng = numpy.random.default_rng(6)
    data = (rng.random((2, 100, 130)) * 1000).astype(dtype)
    data[:, 16:48] = 0  # all-zero chunks are left out
    array = make_array(tmp_path, dtype)
    writer = ShardFileWriter(array, tmp_path)
    for box in [(0, 64, 0, 130), (64, 100, 0, 130)]:  # two shards across each
        stream = writer.stream(box)
        with pytest.raises(ValueError, match="does not continue"):
            stream.write_layer(box[0] + 16, data[:, box[0] + 16:box[0] + 32])
        for low in range(box[0], box[1], 16):
            stream.write_layer(low, data[:, low:min(low + 16, box[1])])
        stream.close()
    numpy.testing.assert_array_equal(zarr.open_array(str(tmp_path / "0"))[...], data)


def test_negative_zero_is_kept(tmp_path: Path) -> None:
    data = numpy.full((1, 16, 16), -0.0, dtype=numpy.float32)
    array = make_array(tmp_path, "float32", shape=(1, 16, 16), shards=(1, 16, 16))
    ShardFileWriter(array, tmp_path).write((0, 0, 0), data)
    assert numpy.signbit(zarr.open_array(str(tmp_path / "0"))[...]).all()


def test_writer_refuses_off_grid_blocks_and_wrong_shapes(tmp_path: Path) -> None:
    writer = ShardFileWriter(make_array(tmp_path, "uint8"), tmp_path)
    with pytest.raises(ValueError, match="not on the shard grid"):
        writer.write((0, 8, 0), numpy.zeros((2, 64, 64), numpy.uint8))
    with pytest.raises(ValueError, match="expected"):
        writer.write((0, 64, 64), numpy.zeros((2, 30, 66), numpy.uint8))


def test_writer_refuses_other_codecs(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path), mode="w", zarr_format=3)
    array = group.create_array("0", shape=(1, 64, 64), dtype="uint8", chunks=(1, 16, 16),
                               shards=(1, 64, 64), compressors=zarr.codecs.ZstdCodec())
    with pytest.raises(ValueError, match="needs sharding"):
        ShardFileWriter(array, tmp_path)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 5, 7), (1, 1, 4), (2, 3)])
def test_morton_order_is_zarrs(shape: tuple[int, ...]) -> None:
    assert morton_order(shape) == list(morton_order_iter(shape))


def test_open_parents_stay_few_on_a_big_grid(tmp_path: Path, array_source) -> None:
    """Z-order keeps a handful of partial shards per level, not a row of the grid."""
    data = numpy.random.default_rng(2).integers(0, 255, size=(1, 256, 256), dtype=numpy.uint8)
    source = array_source(data=data)
    shapes = [(256 >> level, 256 >> level) for level in range(8)]  # down to 2 x 2
    folder = tmp_path / "p"
    group = zarr.open_group(str(folder), mode="w", zarr_format=3)
    writers = [ShardFileWriter(group.create_array(
        str(level), shape=(1, h, w), dtype="uint8", chunks=(1, 2, 2), shards=(1, 8, 8),
        compressors=_compressor("uint8"), fill_value=0), folder)
        for level, (h, w) in enumerate(shapes)]
    builder = _Builder(source, writers, shapes, 8)
    most_open = 0
    original = builder._deliver

    def deliver(*args):
        nonlocal most_open
        parent = original(*args)
        most_open = max(most_open, len(builder.parents))
        return parent

    builder._deliver = deliver  # type: ignore[method-assign]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=3) as pool:
        lowest = builder.run(pool, limit=6, shard_done=lambda level, pixels: None)
    assert builder.grids[0] == (32, 32)  # 1024 level-0 shards
    assert most_open <= 12, most_open  # a row-by-row order would hold 16 + 8 + 4 + ...
    expected = data
    for _ in shapes[1:]:
        expected = mean_downsample_2x(expected)
    numpy.testing.assert_array_equal(lowest, expected)
    top = zarr.open_array(str(folder / "5"))  # 8 x 8: one shard, written from 4 children
    numpy.testing.assert_array_equal(top[...], mean_downsample_2x(mean_downsample_2x(
        mean_downsample_2x(mean_downsample_2x(mean_downsample_2x(data))))))


def test_tasks_in_flight_shrink_for_big_shards() -> None:
    assert max_tasks_in_flight(4, 4 * 2**20) == 8
    assert max_tasks_in_flight(64, 4 * 2**20) == 16  # 192 MiB budget / (3 x 4 MiB)
    assert max_tasks_in_flight(8, 2**30) == 1
