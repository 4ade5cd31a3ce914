"""segment_pyramid as a job runs it: determinism, worker processes, memory, progress, failures."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy
import pytest
from scipy import ndimage

from tiler.checksum import tree_checksum
from tiler.pyramid_reader import Pyramid
from tiler.segmentation import ParameterError, segment_pyramid
from tiler.segmentation.synthetic import draw_objects, grid_objects, write_array_pyramid

SHAPE = (700, 640)
OUTPUTS = ("labels.ome.zarr", "measurements.csv", "objects.npy")


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    objects = grid_objects(SHAPE, (4.0, 12.0), gap=1, fill=0.9, seed=21)
    objects += [((200.0, 140.0), 14.0), ((200.0, 162.0), 14.0)]  # touching, on a block face
    pixels = draw_objects(SHAPE, objects, seed=22)
    folder = tmp_path_factory.mktemp("run")
    return write_array_pyramid(pixels, folder / "image.ome.zarr", pixel_size=(0.2, 0.2),
                               unit="micrometer", tile_size=64)


def _run(image: Path, folder: Path, params: dict, **options):
    folder.mkdir()
    options.setdefault("processes", 1)
    return segment_pyramid(image, folder, params, **options)


WATERSHED = {"method": "watershed", "min_distance": 5, "max_object_radius": 15}


def test_same_inputs_give_byte_identical_files(image, tmp_path) -> None:
    first = _run(image, tmp_path / "a", WATERSHED, block_shape=(128, 192))
    second = _run(image, tmp_path / "b", WATERSHED, block_shape=(128, 192))
    assert first.object_count == second.object_count > 100
    assert tree_checksum(tmp_path / "a") == tree_checksum(tmp_path / "b")


def test_worker_processes_change_nothing_but_the_count(image, tmp_path) -> None:
    inline = _run(image, tmp_path / "one", WATERSHED, block_shape=(128, 192))
    pooled = _run(image, tmp_path / "two", WATERSHED, block_shape=(128, 192), processes=2)
    assert pooled.run["processes"] == 2 and inline.run["processes"] == 1
    for name in OUTPUTS:
        assert tree_checksum(tmp_path / "one" / name) == tree_checksum(tmp_path / "two" / name)
    assert pooled.summary == inline.summary


def test_numbering_does_not_depend_on_the_blocks(image, tmp_path) -> None:
    params = {"method": "threshold", "connectivity": "full"}
    runs = [_run(image, tmp_path / f"run{number}", params, block_shape=shape)
            for number, shape in enumerate([(128, 128), (192, 64), (700, 640), None])]
    assert [run.run["blocks"] for run in runs] == [30, 40, 1, 1]
    for name in OUTPUTS:
        assert len({tree_checksum(run.labels_path.parent / name) for run in runs}) == 1, name


class BrightClasses:
    """A picklable stand-in for TrainedClassifier: class 1 above 100, after a 3x3 mean."""

    class_names = ["background", "bright"]
    ndim = 2
    halo = 1

    def classify_block(self, block: numpy.ndarray) -> numpy.ndarray:
        return (ndimage.uniform_filter(block, 3, mode="reflect") > 100).astype(numpy.uint8)


def test_classifier_goes_to_worker_processes_once(image, tmp_path) -> None:
    params = {"method": "classifier", "class_names": ["background", "bright"]}
    pooled = _run(image, tmp_path / "two", params, classifier=BrightClasses(), processes=2,
                  block_shape=(256, 256))
    inline = _run(image, tmp_path / "one", params, classifier=BrightClasses(),
                  block_shape=(256, 256))
    assert pooled.object_count == inline.object_count > 100
    for name in OUTPUTS:
        assert tree_checksum(tmp_path / "one" / name) == tree_checksum(tmp_path / "two" / name)


def test_memory_stays_within_the_budget(image, tmp_path) -> None:
    shape = (1500, 1500)  # its labels alone (int32) take 9 MB; threshold_local's floats 18 MB
    pixels = draw_objects(shape, grid_objects(shape, (3.0, 9.0), seed=23), seed=24)
    path = write_array_pyramid(pixels, tmp_path / "big.ome.zarr", tile_size=64)
    budget = 6 << 20
    params = {"method": "local", "block_size": 21, "offset": -20}
    _run(image, tmp_path / "warm-up", params)  # imports are not working memory
    (tmp_path / "out").mkdir()
    tracemalloc.start()
    try:
        result = segment_pyramid(path, tmp_path / "out", params, memory_budget=budget,
                                 processes=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.run["blocks"] > 4 and result.object_count > 1000
    assert numpy.prod(result.run["block_shape"]) * 4 < budget
    assert peak < budget, f"peak {peak / 2**20:.1f} MiB over a {budget / 2**20:.0f} MiB budget"


def test_progress_goes_forward_to_one(image, tmp_path) -> None:
    calls: list[tuple[float, str]] = []
    _run(image, tmp_path / "out", {"method": "threshold"}, block_shape=(256, 256),
         progress=lambda fraction, message: calls.append((fraction, message)))
    fractions = [fraction for fraction, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(calls) > 9
    assert any(message == "block 9 of 9" for _, message in calls)
    assert calls[-1][1].startswith("done: ")


def test_channel_picks_the_segmented_channel(tmp_path) -> None:
    first = draw_objects((200, 300), [((50.0, 50.0), 10.0)], noise=0)
    second = draw_objects((200, 300), [((100.0, 100.0), 20.0), ((150, 250), 9.0)], noise=0)
    path = write_array_pyramid(numpy.stack([first, second]), tmp_path / "two.ome.zarr")
    result = _run(path, tmp_path / "out", {"method": "threshold", "channel": 1})
    assert result.object_count == 2 and result.summary["image"]["channel_name"] == "channel 1"
    assert numpy.load(result.objects_path)["voxels"][0] == (second[:, :200] > 100).sum()


def test_bad_destination_or_params_write_nothing(image, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        segment_pyramid(image, tmp_path / "missing", {"method": "threshold"})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="is not empty"):
        segment_pyramid(image, tmp_path / "full", {"method": "threshold"})
    (tmp_path / "out").mkdir()
    with pytest.raises(ParameterError, match="threshold.min_size must be an integer >= 0"):
        segment_pyramid(image, tmp_path / "out", {"method": "threshold", "min_size": -1})
    with pytest.raises(ParameterError, match="needs a trained classifier"):
        segment_pyramid(image, tmp_path / "out", {"method": "classifier"})
    volume_classifier = BrightClasses()
    volume_classifier.ndim = 3
    with pytest.raises(ParameterError, match="trained on 3D images; this image is 2D"):
        segment_pyramid(image, tmp_path / "out", {"method": "classifier"},
                        classifier=volume_classifier)
    assert list((tmp_path / "out").iterdir()) == []


class FailingClassifier(BrightClasses):
    def classify_block(self, block: numpy.ndarray) -> numpy.ndarray:
        if block.shape[0] < 256:  # the last row of blocks
            raise RuntimeError("simulated failure")
        return super().classify_block(block)


def test_a_failure_leaves_the_folder_empty(image, tmp_path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(RuntimeError, match="simulated failure"):
        segment_pyramid(image, tmp_path / "out", {"method": "classifier"}, processes=1,
                        classifier=FailingClassifier(), block_shape=(256, 256))
    assert list((tmp_path / "out").iterdir()) == []


def test_summary_file_is_the_returned_summary(image, tmp_path) -> None:
    result = _run(image, tmp_path / "out", {"method": "threshold", "min_size": 30})
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == result.summary
    labels = Pyramid.open(result.labels_path).read_level(0)[0]
    assert result.summary["object_count"] == result.object_count == labels.max()
    assert result.summary["params"]["min_size"] == 30
    assert result.summary["size_histogram"]["edges"][0] == pytest.approx(
        numpy.load(result.objects_path)["equivalent_diameter"].min())


def test_an_image_without_objects(tmp_path) -> None:
    path = write_array_pyramid(numpy.full((300, 200), 7, numpy.uint8), tmp_path / "flat.ome.zarr",
                               tile_size=64)
    for method in ("threshold", "watershed", "local"):
        result = _run(path, tmp_path / method, {"method": method}, block_shape=(64, 64))
        assert result.object_count == 0 and numpy.load(result.objects_path).shape == (0,)
        assert result.measurements_path.read_text().count("\n") == 1  # the header
        assert Pyramid.open(result.labels_path).read_level(0).max() == 0
        assert result.summary["size_histogram"] == {"edges": [], "counts": []}
        assert result.summary["foreground_fraction"] == 0.0


def test_a_trained_classifier_segments_the_disks(tmp_path) -> None:
    from tiler.segmentation.classifier import train_classifier

    disks = [((60.0, 60.0), 18.0), ((60.0, 190.0), 14.0), ((180.0, 120.0), 22.0)]
    pixels = draw_objects((256, 256), disks, background=40, foreground=170, noise=30, seed=25)
    path = write_array_pyramid(pixels, tmp_path / "disks.ome.zarr", tile_size=64)
    scribbles = [{"class": 0, "points": [[5, 128], [250, 128]], "radius": 2},
                 {"class": 1, "points": [[50, 60], [70, 60]], "radius": 3}]
    trained = train_classifier(Pyramid.open(path), scribbles, ["background", "disk"])
    params = {"method": "classifier", "scribbles": scribbles,
              "class_names": ["background", "disk"], "min_size": 50}
    result = _run(path, tmp_path / "out", params, classifier=trained, block_shape=(128, 128))
    assert result.object_count == 3
    objects = numpy.load(result.objects_path)
    expected = [numpy.pi * radius**2 for _, radius in disks]
    numpy.testing.assert_allclose(objects["voxels"], expected, rtol=0.1)
    assert result.run["halo"] == trained.halo
