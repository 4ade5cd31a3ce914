"""Conversions and segmentations on a multi-process dask LocalCluster: the same files as locally."""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import numpy
import pytest

from tiler.cluster import ClusterUnavailable, SourceRecipe
from tiler.convert import build_pyramid
from tiler.errors import TilerError
from tiler.readers import open_image, open_raw_volume
from tiler.segmentation import segment_pyramid
from tiler.segmentation.synthetic import draw_objects, grid_objects, write_array_pyramid
from tiler.synthetic import write_synthetic_tiff
from tiler.synthetic_volume import write_synthetic_raw, write_synthetic_tiff_stack
from tiler.volume_pyramid import write_volume_pyramid

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler() -> str:
    """The address of a LocalCluster of two worker processes, one thread each."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path) and the sha256 of its bytes."""
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _tasks_run(scheduler: str) -> int:
    """How many tiler tasks the cluster has run so far (the scheduler keeps counts by prefix)."""
    with distributed.Client(scheduler, set_as_default=False) as client:
        return client.run_on_scheduler(_count_tiler_tasks)


def _count_tiler_tasks(dask_scheduler) -> int:
    prefix = dask_scheduler.task_prefixes.get("tiler")
    return 0 if prefix is None else int(prefix.state_counts["forgotten"]
                                        + prefix.state_counts["memory"])


def test_2d_conversion_is_byte_identical(scheduler: str, tmp_path: Path) -> None:
    image = tmp_path / "image.tif"
    write_synthetic_tiff(image, (2000, 2300), dtype="uint16", channels=2, tile=256)
    before = _tasks_run(scheduler)
    progress: list[float] = []
    with open_image(image) as source:
        local = build_pyramid(source, tmp_path / "local.ome.zarr", threads=2)
    with open_image(image) as source:
        remote = build_pyramid(source, tmp_path / "cluster.ome.zarr", scheduler=scheduler,
                               progress=lambda fraction, message: progress.append(fraction))
    # 1 level-0 shard of 2048² would be one task: the default shard size, 1 x 2 shards
    assert _tasks_run(scheduler) - before >= 3
    assert progress[-1] == 1.0 and progress == sorted(progress) and len(progress) > 3
    files = _files(tmp_path / "local.ome.zarr")
    assert len(files) > 8 and "zarr.json" in files and "thumbnail.png" in files
    assert _files(tmp_path / "cluster.ome.zarr") == files
    assert remote.levels == local.levels and remote.windows == local.windows


def test_2d_conversion_with_many_shards_and_rgb(scheduler: str, tmp_path: Path) -> None:
    """Small shards: 16 level-0 tasks and parents made from up to 4 children's means."""
    image = tmp_path / "rgb.tif"
    write_synthetic_tiff(image, (1900, 2048), dtype="uint8", channels=3, rgb=True, tile=128)
    from tiler.pyramid import write_pyramid

    before = _tasks_run(scheduler)
    with open_image(image) as source:
        write_pyramid(source, tmp_path / "local", shard_size=512, threads=2)
        write_pyramid(source, tmp_path / "cluster", shard_size=512, scheduler=scheduler)
    assert _tasks_run(scheduler) - before >= 16 + 4 + 1
    assert _files(tmp_path / "cluster") == _files(tmp_path / "local")


@pytest.mark.parametrize("kind", ["tiff-stack", "raw-nearest"])
def test_3d_conversion_is_byte_identical(scheduler: str, tmp_path: Path, kind: str) -> None:
    shape = (100, 128, 136) if kind == "tiff-stack" else (40, 100, 100)
    if kind == "tiff-stack":  # reopened from its path on the workers
        path = tmp_path / "stack.tif"
        write_synthetic_tiff_stack(path, shape, dtype="uint16", compression="zlib",
                                   voxel_size_um=(1.0, 0.5, 0.5))
        options = {"chunk": 16, "shard_chunks": 2}  # 64 units; a level of shared shards
        source_of = lambda: open_image(path)
    else:  # pickled to the workers; levels below the in-memory ones made shard by shard
        path = tmp_path / "volume.raw"
        write_synthetic_raw(path, shape, dtype="uint16")
        options = {"chunk": 20, "shard_chunks": 1, "downsample": "nearest"}  # 50 units
        source_of = lambda: open_raw_volume(path, shape, "uint16")
    before = _tasks_run(scheduler)
    with source_of() as source:
        local = write_volume_pyramid(source, tmp_path / "local", threads=2, **options)
    with source_of() as source:
        remote = write_volume_pyramid(source, tmp_path / "cluster", scheduler=scheduler,
                                      threads=2, **options)
    assert _tasks_run(scheduler) - before >= 8
    files = _files(tmp_path / "local")
    assert len(files) > 20 and len(local.levels) >= 4
    assert _files(tmp_path / "cluster") == files
    assert remote.levels == local.levels


@pytest.fixture(scope="module")
def image_2d(tmp_path_factory) -> Path:
    shape = (700, 640)
    objects = grid_objects(shape, (4.0, 12.0), gap=1, fill=0.9, seed=21)
    objects += [((200.0, 140.0), 14.0), ((200.0, 162.0), 14.0)]  # touching, on a block face
    folder = tmp_path_factory.mktemp("dask-2d")
    return write_array_pyramid(draw_objects(shape, objects, seed=22), folder / "image.ome.zarr",
                               pixel_size=(0.2, 0.2), unit="micrometer", tile_size=64)


@pytest.fixture(scope="module")
def image_3d(tmp_path_factory) -> Path:
    shape = (48, 72, 80)
    pixels = draw_objects(shape, grid_objects(shape, (3.0, 7.0), gap=1, fill=0.8, seed=5), seed=6)
    folder = tmp_path_factory.mktemp("dask-3d")
    return write_array_pyramid(pixels[numpy.newaxis], folder / "volume.ome.zarr",
                               pixel_size=(1.0, 0.5, 0.5), unit="micrometer", chunk=16)


SEGMENTATIONS = {
    "2d-threshold": ("image_2d", {"method": "threshold", "connectivity": "full"}, (128, 192)),
    "2d-watershed": ("image_2d", {"method": "watershed", "min_distance": 5,
                                  "max_object_radius": 15}, (128, 192)),
    "3d-threshold": ("image_3d", {"method": "threshold"}, (16, 32, 32)),
}


@pytest.mark.parametrize("case", list(SEGMENTATIONS))
def test_segmentation_is_byte_identical(scheduler: str, tmp_path: Path, case: str,
                                        request) -> None:
    fixture, params, block_shape = SEGMENTATIONS[case]
    image = request.getfixturevalue(fixture)
    (tmp_path / "local").mkdir()
    (tmp_path / "cluster").mkdir()
    local = segment_pyramid(image, tmp_path / "local", params, processes=1,
                            block_shape=block_shape)
    progress: list[float] = []
    remote = segment_pyramid(image, tmp_path / "cluster", params, block_shape=block_shape,
                             scheduler=scheduler,
                             progress=lambda fraction, message: progress.append(fraction))
    assert remote.run["blocks"] == local.run["blocks"] >= 12
    assert remote.run["scheduler"] == scheduler and remote.run["processes"] == 2
    assert progress[-1] == 1.0 and progress == sorted(progress)
    assert local.object_count == remote.object_count > 20
    files = _files(tmp_path / "local")
    for name in ("measurements.csv", "objects.npy", "summary.json",
                 "labels.ome.zarr/zarr.json", "labels.ome.zarr/0/zarr.json"):
        assert name in files
    assert _files(tmp_path / "cluster") == files


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:{port}", "127.0.0.1:{port}",
                                     "not an address", "http://127.0.0.1:{port}"])
def test_a_bad_scheduler_fails_fast_and_clearly(image_2d: Path, tmp_path: Path,
                                                address: str) -> None:
    address = address.format(port=_closed_port())
    dest = tmp_path / "results"
    dest.mkdir()
    started = time.monotonic()
    with pytest.raises(ClusterUnavailable) as error:
        segment_pyramid(image_2d, dest, {"method": "threshold"}, scheduler=address)
    assert address in str(error.value)
    assert list(dest.iterdir()) == []  # scratch folder removed
    image = tmp_path / "small.tif"
    write_synthetic_tiff(image, (300, 400))
    with open_image(image) as source, pytest.raises(ClusterUnavailable, match="scheduler"):
        build_pyramid(source, tmp_path / "pyramid", scheduler=address)
    assert not (tmp_path / "pyramid").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["results", "small.tif"]
    assert time.monotonic() - started < 2 * 10 + 5, "gave up within the connect timeout, not hanging"


class SlowBright:
    """A picklable classifier (class 1 above 100) taking SLOW_BLOCK_SECONDS a block."""

    class_names = ("background", "bright")
    ndim = 2
    halo = 0

    def classify_block(self, block: numpy.ndarray) -> numpy.ndarray:
        time.sleep(SLOW_BLOCK_SECONDS)
        return (block > 100).astype(numpy.uint8)


SLOW_BLOCK_SECONDS = 1.0


def test_a_failing_progress_callback_cancels_the_cluster_run(scheduler: str, image_2d: Path,
                                                            tmp_path: Path) -> None:
    """The caller stops the run: outstanding blocks are cancelled, the running ones waited
    for, and nothing is left behind or written afterwards."""

    class Stop(Exception):
        pass

    seen: list[str] = []

    def progress(fraction: float, message: str) -> None:
        seen.append(message)
        if message.startswith("block 3 of"):
            raise Stop

    dest = tmp_path / "results"
    dest.mkdir()
    params = {"method": "classifier", "class_names": ["background", "bright"]}
    started = time.monotonic()
    with pytest.raises(Stop):
        segment_pyramid(image_2d, dest, params, block_shape=(128, 128), scheduler=scheduler,
                        classifier=SlowBright(), progress=progress)
    assert "block 3 of 30" in seen and not any(m.startswith("block 4 of") for m in seen)
    assert time.monotonic() - started < 12 * SLOW_BLOCK_SECONDS  # not 15: the rest never ran
    assert list(dest.iterdir()) == []
    time.sleep(2 * SLOW_BLOCK_SECONDS)  # a block still running would write its scratch now
    assert list(dest.iterdir()) == []


def test_a_worker_that_cannot_see_the_source_says_it_needs_the_shared_folder(tmp_path: Path) -> None:
    recipe = SourceRecipe("run-x:source", "TiffImage", path=str(tmp_path / "scratch" / "job" / "original.tif"))
    with pytest.raises(TilerError, match="cannot see .*original.tif: dask workers need the job's data folder"):
        recipe.open()
