"""Read-ahead of object-store shards: one ranged GET covers a chunk and the chunks stored after it."""

from __future__ import annotations

import math
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy
import pytest

import tiler.shard_reader
from tiler.chunk_cache import default_chunk_cache
from tiler.errors import CorruptImage
from tiler.pyramid import write_pyramid
from tiler.pyramid_reader import Pyramid
from tiler.readers import open_image
from tiler.render import open_pyramid, render_tile
from tiler.shard_reader import RawChunkCache, ShardedArrayReader
from tiler.storage import open_store
from tiler.synthetic import write_synthetic_tiff


@pytest.fixture(scope="module")
def built_pyramid(tmp_path_factory):
    """A 1024×1024 uint8 pyramid of 128² tiles on local disk: level 0 is one shard of 8×8 chunks."""
    folder = tmp_path_factory.mktemp("read-ahead")
    source = write_synthetic_tiff(folder / "source.tif", (1024, 1024), "uint8", tile=256)
    with open_image(source) as image:
        write_pyramid(image, folder / "image.ome.zarr", tile_size=128)
    return folder / "image.ome.zarr"


@pytest.fixture
def published(built_pyramid, s3_server, tmp_path):
    """(local level-0 reader, the store, the level-0 folder in S3) for a fresh copy in a new bucket."""
    store = open_store(f"s3://{s3_server.new_bucket()}/prefix", s3_server.options())
    staged = tmp_path / "staged.ome.zarr"
    shutil.copytree(built_pyramid, staged)
    dest = store.location("pyramids/p.ome.zarr")
    dest.publish_tree(staged)
    return ShardedArrayReader(built_pyramid / "0"), store, dest / "0"


@pytest.fixture(autouse=True)
def fresh_raw_cache(monkeypatch):
    cache = RawChunkCache(tiler.shard_reader.RAW_CACHE_BYTES)
    monkeypatch.setattr(tiler.shard_reader, "raw_chunk_cache", cache)
    return cache


def _count_reads(store) -> list[tuple[str, int, int]]:
    reads: list[tuple[str, int, int]] = []
    real = store.read_range
    store.read_range = lambda key, offset, length: reads.append((key, offset, length)) or real(
        key, offset, length)
    return reads


def _index(reader: ShardedArrayReader) -> numpy.ndarray:
    path = reader.shard_path((0, 0, 0))
    fd = os.open(path, os.O_RDONLY)
    try:
        return reader._read_index(fd, path)
    finally:
        os.close(fd)


def _row_span(index: numpy.ndarray, row: int, grid: tuple[int, ...]) -> int:
    """Bytes from the first to the last byte of the chunks of one row of the shard."""
    entries = index.reshape(*grid, 2)[0, row]
    return int((entries[:, 0] + entries[:, 1]).max() - entries[:, 0].min())


@pytest.mark.parametrize("read_ahead", [1 << 20, 160 << 10])
def test_a_row_of_chunks_costs_a_few_requests_and_reads_identically(published, monkeypatch,
                                                                     fresh_raw_cache, read_ahead):
    monkeypatch.setattr(tiler.shard_reader, "READ_AHEAD_BYTES", read_ahead)
    local, store, level = published
    index = _index(local)
    stored = index[:, 0] != 2**64 - 1
    assert stored.all(), "the synthetic mosaic stores every chunk"
    assert int(index[:, 1].max()) < read_ahead, "a run holds more than one chunk"
    reads = _count_reads(store)
    remote = ShardedArrayReader(level)
    columns = remote.grid[2]
    for row in (0, 3):
        reads.clear()
        remote._indexes.clear()
        fresh_raw_cache.clear()
        for column in range(columns):
            numpy.testing.assert_array_equal(remote.read_chunk((0, row, column)),
                                             local.read_chunk((0, row, column)))
        chunk_reads = len(reads) - 1  # the first read is the shard index
        bound = math.ceil(_row_span(index, row, remote.grid) / read_ahead) + 2
        assert chunk_reads <= bound < columns, (row, reads)
        assert all(length <= read_ahead for _, _, length in reads[1:])


def test_rendered_tiles_of_a_row_are_identical_with_fewer_requests(published, built_pyramid):
    _, store, _level = published
    reads = _count_reads(store)
    open_pyramid.cache_clear()
    default_chunk_cache().clear()
    remote, local = open_pyramid(store.location("pyramids/p.ome.zarr")), Pyramid.open(built_pyramid)
    columns = remote.tile_grid(0)[1]
    for column in range(columns):
        assert render_tile(remote, 0, 2, column, fmt="png") == render_tile(local, 0, 2, column,
                                                                           fmt="png")
    shard_reads = [read for read in reads if "/0/c/" in read[0]]
    assert len(shard_reads) <= 1 + 2, shard_reads  # the index, then one run (the shard < 1 MiB)
    assert len(shard_reads) < 1 + columns


def test_read_ahead_stays_within_the_raw_cache_budget(published, monkeypatch):
    local, _store, level = published
    budget = 100 << 10
    cache = RawChunkCache(budget)
    monkeypatch.setattr(tiler.shard_reader, "raw_chunk_cache", cache)
    real_put = cache.put_many
    peaks = []

    def put_many(items):
        real_put(items)
        peaks.append(cache.nbytes)

    cache.put_many = put_many
    remote = ShardedArrayReader(level)
    for row in range(remote.grid[1]):
        for column in range(remote.grid[2]):
            numpy.testing.assert_array_equal(remote.read_chunk((0, row, column)),
                                             local.read_chunk((0, row, column)))
            assert cache.nbytes <= budget
            assert cache.nbytes == sum(len(data) for data in cache._entries.values())
    assert peaks and max(peaks) <= budget and max(peaks) > budget // 2, "the cache was used"


def test_a_damaged_chunk_fetched_ahead_is_reported_when_asked_for(built_pyramid, s3_server,
                                                                 tmp_path):
    staged = tmp_path / "staged.ome.zarr"
    shutil.copytree(built_pyramid, staged)
    local = ShardedArrayReader(staged / "0")
    index = _index(local)
    # the chunk stored right after chunk (0, 0): the first read fetches it ahead
    second = int(numpy.argsort(index[:, 0])[1])
    offset, length = (int(n) for n in index[second])
    shard = staged / "0" / "c" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[offset:offset + length] = bytes(length)  # zeroes: not a blosc chunk any more
    shard.write_bytes(bytes(data))
    store = open_store(f"s3://{s3_server.new_bucket()}/prefix", s3_server.options())
    dest = store.location("pyramids/broken.ome.zarr")
    dest.publish_tree(staged)
    reads = _count_reads(store)
    remote = ShardedArrayReader(dest / "0")
    remote.read_chunk((0, 0, 0))
    assert len(reads) == 2 and reads[1][2] > length, "chunk (0, 0) came with its neighbours"
    position = numpy.unravel_index(second, remote.grid)
    with pytest.raises(CorruptImage):
        remote.read_chunk(tuple(int(i) for i in position))
    assert len(reads) == 2, "the damaged chunk came from the read-ahead, not a new request"


def test_eight_threads_read_identical_chunks(published):
    local, _store, level = published
    remote = ShardedArrayReader(level)
    chunks = [(0, row, column) for row in range(remote.grid[1]) for column in range(remote.grid[2])]
    expected = {chunk: local.read_chunk(chunk) for chunk in chunks}
    start = threading.Barrier(8)

    def read_all(seed: int) -> dict:
        start.wait()
        order = list(chunks)
        numpy.random.default_rng(seed).shuffle(order)
        return {chunk: remote.read_chunk(chunk) for chunk in order}

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(read_all, range(8)))
    for result in results:
        for chunk, data in result.items():
            numpy.testing.assert_array_equal(data, expected[chunk])


def test_local_shards_make_no_read_ahead(built_pyramid, fresh_raw_cache):
    local = ShardedArrayReader(built_pyramid / "0")
    for column in range(local.grid[2]):
        local.read_chunk((0, 0, column))
    assert len(fresh_raw_cache) == 0
