"""The decoded-chunk LRU: budget, eviction, threads, and pyramid reads that decode each chunk once."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy
import pytest

from tests.tiler.test_tiler_planes import ArrayVolume
from tiler.chunk_cache import (
    DEFAULT_CHUNK_CACHE_BYTES,
    ChunkCache,
    configure_chunk_cache,
    default_chunk_cache,
)
from tiler.render import Pyramid, configure_tile_cache, render_tile
from tiler.volume_pyramid import write_volume_pyramid


@pytest.fixture
def fresh_cache():
    """A new default cache for the test; the standard one afterwards."""
    configure_chunk_cache(64 << 20)
    configure_tile_cache(0)  # the portal may have switched on encoded-tile caching in this process
    yield default_chunk_cache()
    configure_chunk_cache(DEFAULT_CHUNK_CACHE_BYTES)


def block(value: int, size: int = 100) -> numpy.ndarray:
    return numpy.full(size, value, dtype=numpy.uint8)


def test_lru_with_a_byte_budget() -> None:
    cache = ChunkCache(300)
    for key in "abc":
        cache.get_or_load(key, lambda key=key: block(ord(key)))
    assert cache.stats.bytes == 300 and cache.stats.misses == 3
    assert cache.get_or_load("a", lambda: block(0))[0] == ord("a")  # hit: "a" is now newest
    cache.get_or_load("d", lambda: block(1))  # evicts "b", the least recently used
    assert cache.get_or_load("b", lambda: block(2))[0] == 2
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.entries) == (1, 5, 3) and stats.bytes <= 300
    cache.get_or_load("huge", lambda: block(3, 1000))  # larger than the budget: not kept
    assert cache.stats.bytes <= 300 and cache.get_or_load("a", lambda: block(9))[0] == ord("a")
    with pytest.raises(ValueError, match="read-only"):
        cache.get_or_load("a", lambda: block(0))[0] = 1


def test_one_load_for_many_concurrent_askers() -> None:
    cache, calls = ChunkCache(1 << 20), []

    def slow() -> numpy.ndarray:
        calls.append(1)
        time.sleep(0.05)
        return block(7)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: cache.get_or_load("k", slow), range(16)))
    assert len(calls) == 1 and all(result is results[0] for result in results)


def test_budget_holds_under_concurrent_use() -> None:
    cache = ChunkCache(2000)
    rng = numpy.random.default_rng(3)
    keys = rng.integers(0, 60, 2000).tolist()
    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda k: cache.get_or_load(k, lambda: block(k, 100))[0], keys))
    assert values == keys
    stats = cache.stats
    assert stats.bytes <= 2000 and stats.entries <= 20 and stats.hits + stats.misses >= 2000


def test_failed_load_is_not_cached() -> None:
    cache = ChunkCache(1000)
    with pytest.raises(RuntimeError):
        cache.get_or_load("k", lambda: (_ for _ in ()).throw(RuntimeError("disk gone")))
    assert cache.get_or_load("k", lambda: block(1))[0] == 1


@pytest.fixture(scope="module")
def cube(tmp_path_factory: pytest.TempPathFactory):
    """A 128-cube uint16 volume in 16-cubed chunks: an xz tile touches 64 of them."""
    rng = numpy.random.default_rng(5)
    data = rng.integers(0, 4000, (1, 128, 128, 128), dtype=numpy.uint16)
    dest = tmp_path_factory.mktemp("cache") / "cube.ome.zarr"
    write_volume_pyramid(ArrayVolume(data), dest, chunk=16)
    return Pyramid.open(dest, tile_size=128), data


def test_xz_tiles_decode_each_chunk_once(cube, fresh_cache) -> None:
    pyramid, data = cube
    render_tile(pyramid, 0, 0, 0, plane="xz", index=40)
    assert (fresh_cache.stats.misses, fresh_cache.stats.hits) == (64, 0)
    for index in range(32, 48):  # the same layer of chunks
        render_tile(pyramid, 0, 0, 0, plane="xz", index=index)
    assert fresh_cache.stats.misses == 64 and fresh_cache.stats.hits == 15 * 64 + 64
    assert fresh_cache.stats.bytes == 128 * 16 * 128 * 2
    numpy.testing.assert_array_equal(pyramid.read_plane(0, "yz", 50, 0, 128, 0, 128),
                                     data[:, :, :, 50])


def test_warm_xz_tiles_are_much_faster(cube) -> None:
    pyramid, _ = cube
    try:
        colds, warms = [], []
        for index in (8, 40, 72, 104):
            configure_chunk_cache(64 << 20)
            start = time.perf_counter()
            render_tile(pyramid, 0, 0, 0, plane="xz", index=index)
            colds.append(time.perf_counter() - start)
            for _ in range(3):
                start = time.perf_counter()
                render_tile(pyramid, 0, 0, 0, plane="xz", index=index + 1)
                warms.append(time.perf_counter() - start)
        assert min(colds) > 2 * min(warms), (colds, warms)
    finally:
        configure_chunk_cache(DEFAULT_CHUNK_CACHE_BYTES)


def test_disabled_cache_reads_directly(cube) -> None:
    pyramid, data = cube
    try:
        configure_chunk_cache(0)
        assert default_chunk_cache() is None
        numpy.testing.assert_array_equal(
            pyramid.read_plane(0, "xz", 3, 0, 128, 5, 9, channels=[0]), data[:, :, 3, 5:9])
    finally:
        configure_chunk_cache(DEFAULT_CHUNK_CACHE_BYTES)


def test_republished_pyramid_is_not_served_from_stale_chunks(tmp_path: Path,
                                                             fresh_cache) -> None:
    dest = tmp_path / "same.ome.zarr"
    old = numpy.full((1, 8, 20, 20), 3, dtype=numpy.uint8)
    write_volume_pyramid(ArrayVolume(old), dest, chunk=8)
    assert Pyramid.open(dest).read_plane(0, "xy", 2, 0, 20, 0, 20).max() == 3
    shutil.rmtree(dest)
    write_volume_pyramid(ArrayVolume(old + 4), dest, chunk=8)
    assert Pyramid.open(dest).read_plane(0, "xy", 2, 0, 20, 0, 20).max() == 7


def test_concurrent_tiles_of_one_pyramid(cube, fresh_cache) -> None:
    pyramid, data = cube
    barrier = threading.Barrier(4)

    def read(index: int) -> bool:
        barrier.wait()
        plane = pyramid.read_plane(0, "xz", index, 0, 128, 0, 128)
        return numpy.array_equal(plane, data[:, :, index])

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(read, [60, 61, 62, 63]))
    assert fresh_cache.stats.misses == 64
