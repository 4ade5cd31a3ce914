"""Pyramid writer mechanics on small in-memory arrays: mean values, shards, atomicity, options."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest

from tiler.downsample import level_shapes, mean_downsample_2x
from tiler.pyramid import write_pyramid
from tiler.render import Pyramid


def test_mean_downsample_of_a_known_array() -> None:
    block = numpy.arange(15, dtype=numpy.uint16).reshape(1, 3, 5)
    # [[0 1 2 3 4] [5 6 7 8 9] [10 11 12 13 14]] -> 2x2 means; the odd last column and row
    # average the 2 (or 1) pixels that exist; halves round to even (6.5 -> 6, 10.5 -> 10)
    result = mean_downsample_2x(block)
    assert result.dtype == numpy.uint16
    assert result.tolist() == [[[3, 5, 6], [10, 12, 14]]]


def test_mean_downsample_values_and_types() -> None:
    ints = numpy.array([[[1, 2, 3], [4, 6, 9]]], dtype=numpy.int16)
    numpy.testing.assert_array_equal(mean_downsample_2x(ints), [[[3, 6]]])  # 13/4=3.25, 12/2
    negative = numpy.array([[[-3, -4], [-5, -6]]], dtype=numpy.int16)
    assert mean_downsample_2x(negative).tolist() == [[[-4]]]  # -4.5 rounds to even
    floats = numpy.array([[[0.5, 1.0], [2.0, 4.0]], [[1, 1], [1, 1]]], dtype=numpy.float32)
    result = mean_downsample_2x(floats)
    assert result.dtype == numpy.float32 and result.tolist() == [[[1.875]], [[1.0]]]
    big = numpy.full((1, 2, 2), 65535, dtype=numpy.uint16)
    assert mean_downsample_2x(big).tolist() == [[[65535]]]  # no overflow
    single = numpy.array([[[7]]], dtype=numpy.uint8)
    assert mean_downsample_2x(single).tolist() == [[[7]]]


def test_level_shapes() -> None:
    assert level_shapes(1000, 1300, 256) == [(1000, 1300), (500, 650), (250, 325), (125, 163)]
    assert level_shapes(256, 256, 256) == [(256, 256)]
    assert level_shapes(257, 3, 256) == [(257, 3), (129, 2)]
    with pytest.raises(ValueError):
        level_shapes(0, 10, 256)


def test_levels_are_means_of_the_level_above(tmp_path: Path, array_source) -> None:
    rng = numpy.random.default_rng(3)
    data = rng.integers(0, 60000, size=(2, 37, 53), dtype=numpy.uint16)
    summary = write_pyramid(array_source(data=data), tmp_path / "p.ome.zarr", tile_size=4,
                            shard_size=8, threads=3)
    pyramid = Pyramid.open(summary.path)
    assert pyramid.tile_size == 4
    above = data
    for level, (height, width) in enumerate(summary.levels):
        stored = pyramid.read_region(level, 0, height, 0, width)
        numpy.testing.assert_array_equal(stored, above)
        above = mean_downsample_2x(above)
    assert summary.levels[-1] == (3, 4)


def test_file_count_is_small_thanks_to_sharding(tmp_path: Path, array_source) -> None:
    data = numpy.ones((1, 1000, 1300), dtype=numpy.uint8)
    data[0, ::7, ::5] = 200  # no chunk is empty
    summary = write_pyramid(array_source(data=data), tmp_path / "p.ome.zarr", tile_size=64,
                            shard_size=512)
    files = [p for p in Path(summary.path).rglob("*") if p.is_file()]
    shard_files = [p for p in files if "c" in p.relative_to(summary.path).parts]
    # level 0: 2 x 3 shards of 512, level 1 (500 x 650): 1 x 2, then one shard per level
    expected_shards = 6 + 2 + (len(summary.levels) - 2)
    assert len(shard_files) == expected_shards
    assert len(files) == expected_shards + len(summary.levels) + 2  # + zarr.json's + thumbnail
    chunk_count = sum(-(-h // 64) * -(-w // 64) for h, w in summary.levels)
    assert len(files) < chunk_count / 10


def test_source_read_whole_shards_once(tmp_path: Path, array_source) -> None:
    source = array_source(data=numpy.zeros((1, 600, 700), dtype=numpy.uint8))
    write_pyramid(source, tmp_path / "p.ome.zarr", tile_size=100, shard_size=300)
    assert sorted(source.regions_read) == [
        (y0, y0 + 300, x0, min(x0 + 300, 700)) for y0 in (0, 300) for x0 in (0, 300, 600)
    ]


def test_existing_destination_is_refused_and_untouched(tmp_path: Path, array_source) -> None:
    dest = tmp_path / "p.ome.zarr"
    dest.mkdir()
    (dest / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="already exists"):
        write_pyramid(array_source(data=numpy.zeros((1, 8, 8), numpy.uint8)), dest)
    assert (dest / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.ome.zarr"]


def test_failure_leaves_nothing_behind(tmp_path: Path, array_source) -> None:
    source = array_source(data=numpy.zeros((1, 600, 700), numpy.uint16), fail_at=(300, 300))
    with pytest.raises(RuntimeError, match="simulated read failure"):
        write_pyramid(source, tmp_path / "p.ome.zarr", tile_size=100, shard_size=300, threads=2)
    assert list(tmp_path.iterdir()) == []


def test_failing_progress_callback_also_cleans_up(tmp_path: Path, array_source) -> None:
    def cancel(fraction: float, message: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_pyramid(array_source(data=numpy.zeros((1, 600, 600), numpy.uint8)),
                      tmp_path / "p.ome.zarr", tile_size=100, shard_size=200, progress=cancel)
    assert list(tmp_path.iterdir()) == []


def test_bad_tile_and_shard_sizes(tmp_path: Path, array_source) -> None:
    source = array_source(data=numpy.zeros((1, 8, 8), numpy.uint8))
    with pytest.raises(ValueError, match="multiple"):
        write_pyramid(source, tmp_path / "a", tile_size=256, shard_size=300)
    with pytest.raises(ValueError, match="multiple"):
        write_pyramid(source, tmp_path / "b", tile_size=256, shard_size=128)


def test_flat_and_float_images(tmp_path: Path, array_source) -> None:
    flat = write_pyramid(array_source(data=numpy.full((1, 50, 60), 7, numpy.uint8)),
                         tmp_path / "flat.ome.zarr")
    assert flat.windows == [(7.0, 8.0)]
    data = numpy.linspace(-1, 1, 50 * 60, dtype=numpy.float32).reshape(1, 50, 60)
    data[0, 0, 0] = numpy.nan
    floats = write_pyramid(array_source(data=data), tmp_path / "float.ome.zarr")
    (start, end), = floats.windows
    assert -1 < start < -0.99 and 0.99 < end < 1
    stored = Pyramid.open(floats.path).read_region(0, 0, 50, 0, 60)
    numpy.testing.assert_array_equal(stored, data)  # NaN survives, bit for bit


def naive_mean_2x(block: numpy.ndarray) -> numpy.ndarray:
    """The 2x2 mean written the obvious way: float64 sums over the pixels that exist, rint."""
    channels, height, width = block.shape
    out = numpy.empty((channels, -(-height // 2), -(-width // 2)), dtype=numpy.float64)
    for y in range(out.shape[1]):
        for x in range(out.shape[2]):
            out[:, y, x] = block[:, 2 * y:2 * y + 2, 2 * x:2 * x + 2].astype(numpy.float64).mean(
                axis=(1, 2))
    return numpy.rint(out).astype(block.dtype) if block.dtype.kind in "iu" else out.astype(
        block.dtype)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32", ">u2"])
def test_integer_mean_matches_the_naive_definition(dtype: str) -> None:
    rng = numpy.random.default_rng(7)
    info = numpy.iinfo(numpy.dtype(dtype))
    for shape in [(2, 9, 11), (1, 1, 1), (1, 1, 6), (3, 5, 1), (1, 8, 8)]:
        for low, high in [(info.min, info.max), (info.min, info.min + 3), (info.max - 3, info.max)]:
            block = rng.integers(low, high, size=shape, endpoint=True).astype(dtype)
            result = mean_downsample_2x(block)
            assert result.dtype == numpy.dtype(dtype).newbyteorder("=")
            numpy.testing.assert_array_equal(result, naive_mean_2x(block))


@pytest.mark.parametrize("dtype, channels, shape, tile, shard, threads", [
    ("uint8", 1, (61, 67), 4, 8, 1),  # 8 x 9 level-0 shards: partial parents on both edges
    ("uint16", 2, (64, 64), 4, 16, 3),  # powers of two throughout
    ("int16", 1, (130, 17), 2, 4, 2),  # tall and thin: many levels of one-column shards
    ("float32", 3, (45, 100), 8, 16, 4),
    ("uint8", 1, (5, 300), 4, 32, 2),  # shallow: levels stop by width
])
def test_every_level_equals_a_reference_from_the_whole_array(
        tmp_path: Path, array_source, dtype, channels, shape, tile, shard, threads) -> None:
    rng = numpy.random.default_rng(11)
    data = rng.integers(-100, 30000, size=(channels, *shape)).astype(dtype)
    summary = write_pyramid(array_source(data=data), tmp_path / "p.ome.zarr", tile_size=tile,
                            shard_size=shard, threads=threads)
    assert summary.levels == level_shapes(*shape, tile)
    pyramid = Pyramid.open(summary.path)
    expected = data
    for level, (height, width) in enumerate(summary.levels):
        numpy.testing.assert_array_equal(pyramid.read_region(level, 0, height, 0, width),
                                         expected, err_msg=f"level {level}")
        expected = naive_mean_2x(expected)
