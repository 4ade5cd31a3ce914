"""The storage contract, run on a local folder and on a real S3-compatible server on loopback (moto)."""

from __future__ import annotations

import pickle

import numpy
import pytest

from tiler.checksum import tree_checksum
from tiler.chunk_cache import default_chunk_cache
from tiler.errors import CorruptImage
from tiler.pyramid import write_pyramid
from tiler.pyramid_reader import Pyramid
from tiler.render import open_pyramid, render_tile
from tiler.object_store import ObjectStore
from tiler.storage import LocalStore, as_location, open_store
from tiler.synthetic import write_synthetic_tiff
from tiler.readers import open_image


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return open_store(tmp_path / "store")
    server = request.getfixturevalue("s3_server")
    return open_store(f"s3://{server.new_bucket()}/some/prefix", server.options())


@pytest.fixture(scope="module")
def built_pyramid(tmp_path_factory):
    """A 1000×700 two-channel uint16 pyramid on local disk, built once."""
    folder = tmp_path_factory.mktemp("pyramid")
    source = write_synthetic_tiff(folder / "source.tif", (700, 1000), "uint16", channels=2, tile=256)
    with open_image(source) as image:
        write_pyramid(image, folder / "image.ome.zarr", tile_size=128)
    return folder / "image.ome.zarr"


def _file(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_files_are_written_whole_read_by_range_and_replaced(store, tmp_path):
    place = store.location("originals/ab/abc")
    assert not place.exists() and not place.is_file()
    place.put_file(_file(tmp_path, "a", b"hello, world"))
    assert place.is_file() and place.size() == 12 and place.read_bytes() == b"hello, world"
    assert place.read_range(7, 5) == b"world" and place.read_range(0, 0) == b""
    assert store.location("originals").is_dir() and store.location("originals/ab").is_dir()
    before = place.stamp()
    place.put_file(_file(tmp_path, "b", b"replaced"))
    assert place.read_bytes() == b"replaced" and place.stamp() != before
    copy = place.copy_to(tmp_path / "copy")
    assert copy.read_bytes() == b"replaced" and not list(tmp_path.glob(".copy.partial-*"))


def test_a_missing_file_says_so(store):
    missing = store.location("nothing/here")
    assert not missing.exists()
    with pytest.raises(FileNotFoundError):
        missing.size()
    with pytest.raises(FileNotFoundError):
        missing.read_bytes()
    missing.delete()  # deleting what is not there is not an error


def test_keys_cannot_leave_the_store(store):
    for key in ("../x", "a/../../b", "/etc/passwd", "a\\b"):
        with pytest.raises(ValueError):
            store.location(key)
    with pytest.raises(ValueError):
        store.location("a") / "../../b"
    assert store.location("a/./b//c").key == "a/b/c"
    for root in ("", ".", "./"):
        with pytest.raises(ValueError, match="whole store"):
            store.location(root).delete()


def test_a_tree_is_published_once_listed_and_deleted(store, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "zarr.json").write_text("{}")
    (tree / "sub" / "c").write_bytes(b"\0" * 1000)
    checksum = tree_checksum(tree)
    dest = store.location("pyramids/x.ome.zarr")
    dest.publish_tree(tree)
    assert not tree.exists(), "the local tree is moved, not left behind"
    assert dest.files() == [("sub/c", 1000), ("zarr.json", 2)]
    assert tree_checksum(dest) == checksum
    again = tmp_path / "again"
    again.mkdir()
    (again / "zarr.json").write_text("{}")
    with pytest.raises(FileExistsError):
        dest.publish_tree(again)
    assert again.exists(), "a refused publish leaves its source alone"
    dest.delete()
    assert not dest.exists() and dest.files() == []


def test_locations_survive_pickling_for_worker_processes(store, tmp_path):
    place = store.location("p/q")
    place.put_file(_file(tmp_path, "a", b"payload"))
    copy = pickle.loads(pickle.dumps(place))
    assert copy == place and hash(copy) == hash(place) and copy.read_bytes() == b"payload"


def test_a_stored_pyramid_reads_exactly_like_the_local_one(store, built_pyramid, tmp_path):
    import shutil

    staged = tmp_path / "staged.ome.zarr"
    shutil.copytree(built_pyramid, staged)
    dest = store.location("pyramids/d1.ome.zarr")
    dest.publish_tree(staged)
    local, stored = Pyramid.open(built_pyramid), Pyramid.open(dest)
    assert stored.levels == local.levels and stored.dtype == local.dtype
    assert all(reader is not None for reader in stored._shard_readers), "direct shard reads, not zarr's"
    for level in range(len(local.levels)):
        height, width = local.levels[level]
        numpy.testing.assert_array_equal(stored.read_region(level, 0, height, 0, width),
                                         local.read_region(level, 0, height, 0, width))
    assert tree_checksum(dest) == tree_checksum(built_pyramid)
    with pytest.raises(FileNotFoundError):
        Pyramid.open(store.location("pyramids/none.ome.zarr"))


def test_tiles_from_the_store_are_served_from_the_chunk_cache_when_warm(store, built_pyramid, tmp_path):
    import shutil

    staged = tmp_path / "staged.ome.zarr"
    shutil.copytree(built_pyramid, staged)
    dest = store.location("pyramids/d2.ome.zarr")
    dest.publish_tree(staged)
    reads = []
    real = store.read_range if isinstance(store, ObjectStore) else None
    if real is not None:
        store.read_range = lambda key, offset, length: reads.append(key) or real(key, offset, length)
    open_pyramid.cache_clear()
    default_chunk_cache().clear()
    pyramid = open_pyramid(dest)
    first = render_tile(pyramid, 0, 1, 2, fmt="png")
    cold = len(reads)
    second = render_tile(open_pyramid(dest), 0, 1, 2, fmt="png")
    assert first == second
    assert len(reads) == cold, "a warm tile makes no request to the store"
    assert render_tile(Pyramid.open(built_pyramid), 0, 1, 2, fmt="png") == first
    if real is not None:
        assert cold >= 2, "the cold tile was read from S3 (shard index + chunk)"


def test_a_damaged_stored_shard_is_reported_not_served(store, built_pyramid, tmp_path):
    import shutil

    staged = tmp_path / "staged.ome.zarr"
    shutil.copytree(built_pyramid, staged)
    shard = next(p for p in sorted((staged / "0").rglob("*")) if p.is_file() and p.name != "zarr.json")
    shard.write_bytes(shard.read_bytes()[:50])
    dest = store.location("pyramids/broken.ome.zarr")
    dest.publish_tree(staged)
    open_pyramid.cache_clear()
    default_chunk_cache().clear()
    with pytest.raises(CorruptImage):
        Pyramid.open(dest).read_region(0, 0, 128, 0, 128)


def test_store_urls():
    assert isinstance(open_store("s3://bucket/a/b/"), ObjectStore)
    assert open_store("s3://bucket/a/b/").url == "s3://bucket/a/b"
    assert isinstance(open_store("file:///tmp/x"), LocalStore)
    assert isinstance(open_store("/tmp/x"), LocalStore)
    for bad in ("s3://", "gopher://host/x"):
        with pytest.raises(ValueError):
            open_store(bad)
    assert as_location("/tmp/x/y.ome.zarr").local_path.as_posix() == "/tmp/x/y.ome.zarr"


def test_an_unreachable_store_says_so_quickly_instead_of_claiming_files_are_missing(tmp_path):
    import socket
    import time

    from tiler.errors import StorageUnavailable

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe is closed
    dead = open_store("s3://bucket/prefix", {"endpoint_url": f"http://127.0.0.1:{port}", "key": "k", "secret": "s"})
    for operation in (lambda: dead.location("a").is_file(), lambda: dead.location("a").size(),
                      lambda: dead.location("a").read_range(0, 1), lambda: dead.location("a").files(),
                      lambda: Pyramid.open(dead.location("p.ome.zarr")),
                      lambda: dead.location("b").put_file(_file(tmp_path, "x", b"x"))):
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match=f"s3://bucket/prefix cannot be used"):
            operation()
        # a few retries with backoff (3-5 s here), not the minute a plain s3fs connect could hang
        assert time.monotonic() - started < 25, "each operation gives up within seconds"
