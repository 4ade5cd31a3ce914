"""Pixel classifier: scribble checks, features, training on scribbles, blockwise classification."""

from __future__ import annotations

import itertools
import pickle
import tracemalloc
from pathlib import Path

import numpy
import pytest
from skimage.feature import multiscale_basic_features
from sklearn.ensemble import RandomForestClassifier

from tiler.errors import CorruptImage, InvalidParameter
from tiler.pyramid import write_pyramid
from tiler.readers.volume_base import VolumeSource
from tiler.render import Pyramid
from tiler.segmentation import classifier
from tiler.segmentation.classifier import (
    DEFAULT_FEATURES,
    TrainedClassifier,
    compute_features,
    load_classifier,
    save_classifier,
    train_classifier,
    validate_scribbles,
)
from tiler.synthetic import synthetic_image
from tiler.volume_pyramid import write_volume_pyramid

#: Disk centres (y, x) and radii of the 2D sample: a 4 x 4 grid, jittered.
DISKS = [(64 + 128 * row + 7 * ((row + col) % 3 - 1), 64 + 128 * col + 5 * ((row * col) % 3 - 1),
          30 + 4 * ((row + 2 * col) % 4)) for row in range(4) for col in range(4)]
#: Background strokes run between the rows of disks; object strokes cross disks 0, 6 and 13.
SCRIBBLES_2D = [
    {"class": 0, "points": [[10, 128], [250, 128], [500, 130]], "radius": 3},
    {"class": 0, "points": [[20, 384], [480, 380]], "radius": 2},
    {"class": 0, "points": [[256, 5], [256, 60], [255, 240]], "radius": 3},
    *({"class": 1, "points": [[x - r // 2, y], [x + r // 2, y + 3]], "radius": 4}
      for y, x, r in (DISKS[0], DISKS[6], DISKS[13])),
]
CLASSES = ["background", "cell"]


def textured_disks(shape=(512, 512), seed=7) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Bright textured disks on a darker noisy background: (1, y, x) uint16 and the truth."""
    rng = numpy.random.default_rng(seed)
    yy, xx = numpy.indices(shape)
    truth = numpy.zeros(shape, dtype=bool)
    for y, x, radius in DISKS:
        truth |= (yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2
    background = 900 + rng.normal(0, 150, shape)
    inside = 2300 + 600 * numpy.sin(xx / 2.5) * numpy.cos(yy / 3.5) + rng.normal(0, 200, shape)
    pixels = numpy.where(truth, inside, background).clip(0, 65535).astype(numpy.uint16)
    return pixels[numpy.newaxis], truth


def balls_volume(size=64, seed=3) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Bright noisy balls in a darker noisy volume: (1, z, y, x) uint8 and the truth."""
    rng = numpy.random.default_rng(seed)
    zz, yy, xx = numpy.indices((size,) * 3)
    truth = numpy.zeros((size,) * 3, dtype=bool)
    for z, y, x, radius in [(16, 16, 18, 10), (40, 20, 44, 12), (22, 46, 30, 9), (48, 48, 12, 8)]:
        truth |= (zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2
    pixels = numpy.where(truth, 170, 70) + rng.normal(0, 25, truth.shape)
    return pixels.clip(0, 255).astype(numpy.uint8)[numpy.newaxis], truth


class ArrayVolume(VolumeSource):
    """An in-memory (c, z, y, x) VolumeSource."""

    format_name = "ARRAY"

    def __init__(self, data: numpy.ndarray) -> None:
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        self.channel_names = ["channel 0"]
        self.voxel_size, self.unit, self.metadata = None, None, {}

    def _read_block(self, z0, z1, y0, y1, x0, x1) -> numpy.ndarray:
        return self.data[:, z0:z1, y0:y1, x0:x1].copy()


class RecordingForest(RandomForestClassifier):
    """A random forest that keeps the inputs it was trained on."""

    inputs: list[numpy.ndarray] = []

    def fit(self, X, y, sample_weight=None):  # noqa: N803 (scikit-learn's names)
        self.inputs.append(numpy.array(X))
        return super().fit(X, y, sample_weight=sample_weight)


class RecordingPyramid:
    """A Pyramid stand-in that records every level-0 box read through it."""

    def __init__(self, pyramid: Pyramid) -> None:
        self.pyramid, self.boxes = pyramid, []
        self.ndim, self.shape, self.windows = pyramid.ndim, pyramid.shape, pyramid.windows

    def read_region(self, level, y0, y1, x0, x1, **options):
        self.boxes.append((level, y0, y1, x0, x1))
        return self.pyramid.read_region(level, y0, y1, x0, x1, **options)


def classify_in_blocks(model: TrainedClassifier, image: numpy.ndarray, side: int) -> numpy.ndarray:
    """Classify ``image`` block by block, as the engine does: halo clipped to the image."""
    labels = numpy.zeros(image.shape, dtype=numpy.uint8)
    for starts in itertools.product(*(range(0, extent, side) for extent in image.shape)):
        core = tuple(slice(s, min(s + side, n)) for s, n in zip(starts, image.shape, strict=True))
        read = tuple(slice(max(0, c.start - model.halo), min(n, c.stop + model.halo))
                     for c, n in zip(core, image.shape, strict=True))
        block = model.classify_block(image[read])
        assert block.dtype == numpy.uint8 and block.shape == image[read].shape
        labels[core] = block[tuple(slice(c.start - r.start, c.stop - r.start)
                                   for c, r in zip(core, read, strict=True))]
    return labels


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory, array_source):
    """The 2D sample pyramid (128 px tiles), its pixels and truth."""
    data, truth = textured_disks()
    dest = tmp_path_factory.mktemp("classifier") / "disks.ome.zarr"
    write_pyramid(array_source(data=data), dest, tile_size=128)
    return Pyramid.open(dest), data[0], truth


@pytest.fixture(scope="module")
def trained(disks) -> TrainedClassifier:
    return train_classifier(disks[0], SCRIBBLES_2D, CLASSES)


@pytest.fixture(scope="module")
def whole_image_labels(disks, trained) -> numpy.ndarray:
    return classify_in_blocks(trained, disks[1], 512)


def test_classifies_a_2d_image_accurately(disks, trained, whole_image_labels) -> None:
    _, _, truth = disks
    accuracy = (whole_image_labels == truth).mean()
    assert accuracy > 0.95, accuracy
    assert trained.class_names == CLASSES and trained.ndim == 2 and trained.channel == 0
    assert trained.halo == 34  # 4 * sigma_max 8 + 2 for the second derivatives
    report = trained.training_report
    assert report["feature_count"] == 20 and report["oob_accuracy"] > 0.95
    assert report["samples_per_class"] == report["pixels_per_class"]  # under the cap
    assert report["pixels_per_class"]["cell"] > 200 and report["windows_read"] == 1


def test_bytes_per_voxel_covers_the_peak_memory_of_a_block(disks, trained) -> None:
    block = disks[1][:400, :400]
    tracemalloc.start()
    try:
        trained.classify_block(block)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / block.size <= trained.bytes_per_voxel <= 2 * peak / block.size


def test_a_pixel_gets_the_same_class_in_any_block(disks, trained, whole_image_labels) -> None:
    for side in (150, 61):
        numpy.testing.assert_array_equal(classify_in_blocks(trained, disks[1], side),
                                         whole_image_labels)


def test_training_is_deterministic_and_survives_saving(disks, trained, whole_image_labels,
                                                       tmp_path: Path) -> None:
    again = train_classifier(disks[0], SCRIBBLES_2D, CLASSES)
    first, second = tmp_path / "first.classifier", tmp_path / "second.classifier"
    save_classifier(trained, first)
    save_classifier(again, second)
    assert first.read_bytes() == second.read_bytes()
    loaded = load_classifier(first)
    assert loaded.training_report == trained.training_report and loaded.halo == trained.halo
    numpy.testing.assert_array_equal(classify_in_blocks(loaded, disks[1], 200),
                                     whole_image_labels)
    assert sorted(tmp_path.iterdir()) == [first, second]  # no temporary file left behind


def test_samples_are_capped_and_drawn_with_the_random_state(disks, trained, monkeypatch) -> None:
    monkeypatch.setattr(classifier, "SAMPLES_PER_CLASS", 300)
    monkeypatch.setattr(classifier, "RandomForestClassifier", RecordingForest)
    RecordingForest.inputs.clear()
    capped = train_classifier(disks[0], SCRIBBLES_2D, CLASSES, random_state=0)
    assert capped.training_report["samples_per_class"] == {"background": 300, "cell": 300}
    assert capped.training_report["pixels_per_class"] == trained.training_report[
        "pixels_per_class"]
    monkeypatch.setitem(classifier.TRAINING_WINDOW, 2, 128)  # other windows, same sample
    again = train_classifier(disks[0], SCRIBBLES_2D, CLASSES, random_state=0)
    assert again.training_report["windows_read"] > capped.training_report["windows_read"]
    train_classifier(disks[0], SCRIBBLES_2D, CLASSES, random_state=5)
    first, second, other = RecordingForest.inputs
    numpy.testing.assert_array_equal(first, second)
    assert pickle.dumps(again.model) == pickle.dumps(capped.model)
    assert first.shape == other.shape and not numpy.array_equal(first, other)


def test_training_reads_only_around_the_scribbles(tmp_path: Path, array_source) -> None:
    data = synthetic_image((1100, 1300), "uint16")
    write_pyramid(array_source(data=data), tmp_path / "big.ome.zarr")
    recording = RecordingPyramid(Pyramid.open(tmp_path / "big.ome.zarr"))
    scribbles = [{"class": 0, "points": [[700, 600], [760, 610]], "radius": 3},
                 {"class": 1, "points": [[1030, 900]], "radius": 2}]
    model = train_classifier(recording, scribbles, ["a", "b"], features={"sigma_max": 2.0})
    halo = model.halo
    assert sorted(recording.boxes) == [(0, 512 - halo, 1024 + halo, 512 - halo, 1024 + halo),
                                       (0, 512 - halo, 1024 + halo, 1024 - halo, 1300)]
    painted = model.training_report["pixels_per_class"]
    assert painted["b"] == 13 and 61 * 5 < painted["a"] < 67 * 7


def test_later_scribbles_paint_over_earlier_ones(disks) -> None:
    scribbles = [{"class": 0, "points": [[100, 100]], "radius": 2},
                 {"class": 1, "points": [[100, 100]], "radius": 5},
                 {"class": 1, "points": [[300, 300]], "radius": 1}]
    with pytest.raises(InvalidParameter, match="class 'background' has no pixels left"):
        train_classifier(disks[0], scribbles, CLASSES)


def test_volumes_are_classified_in_3d(tmp_path: Path) -> None:
    data, truth = balls_volume()
    write_volume_pyramid(ArrayVolume(data), tmp_path / "balls.ome.zarr", chunk=32, threads=1)
    pyramid = Pyramid.open(tmp_path / "balls.ome.zarr")
    scribbles = [{"class": 1, "points": [[14, 16], [22, 16]], "radius": 3, "z": 16},
                 {"class": 1, "points": [[40, 20], [48, 21]], "radius": 3, "z": 40},
                 {"class": 0, "points": [[2, 2], [60, 2], [60, 30]], "radius": 2, "z": 30},
                 {"class": 0, "points": [[5, 62], [60, 34]], "radius": 2, "z": 10}]
    model = train_classifier(pyramid, scribbles, ["matrix", "pore"],
                             features={"sigma_max": 2.0})
    assert model.ndim == 3 and model.halo == 10 and model.training_report["feature_count"] == 15
    labels = classify_in_blocks(model, data[0], 64)
    assert (labels == truth).mean() > 0.95
    numpy.testing.assert_array_equal(classify_in_blocks(model, data[0], 40), labels)
    with pytest.raises(InvalidParameter, match=r"needs \(z, y, x\) blocks"):
        model.classify_block(data[0, 0])
    assert model.classify_block(data[0, :1, :20, :30]).shape == (1, 20, 30)  # a one-slice block


@pytest.mark.parametrize("shape", [(60, 70), (20, 24, 22)])
def test_features_are_skimage_multiscale_basic_features(shape) -> None:
    image = numpy.random.default_rng(0).random(shape, dtype=numpy.float32)
    settings = classifier.check_features({"sigma_max": 4.0})
    features = compute_features(image, settings)
    expected = multiscale_basic_features(image, sigma_min=0.5, sigma_max=4.0, workers=1)
    numpy.testing.assert_array_equal(features, expected)
    if len(shape) == 3:  # training computes one slice from a thin slab: the same values
        for z in (0, 1, 10, shape[0] - 1):
            numpy.testing.assert_array_equal(compute_features(image, settings, keep_z=z)[0],
                                             expected[z])


def test_the_halo_is_exactly_the_context_features_need() -> None:
    image = numpy.random.default_rng(1).random((150, 160), dtype=numpy.float32)
    settings = classifier.check_features({"sigma_min": 1.0, "sigma_max": 6.0})
    halo = classifier.feature_halo(settings)
    assert halo == 26
    whole = compute_features(image, settings)
    core = (slice(60, 90), slice(60, 100))
    for context, same in ((halo, True), (halo - 1, False)):
        crop = image[60 - context:90 + context, 60 - context:100 + context]
        inner = compute_features(crop, settings)[context:-context, context:-context]
        assert numpy.array_equal(inner, whole[core]) is same


def test_training_reports_progress(disks) -> None:
    calls = []
    train_classifier(disks[0], SCRIBBLES_2D, CLASSES, progress=lambda *call: calls.append(call))
    fractions = [fraction for fraction, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(calls) >= 3


def test_default_features_are_documented_and_checked() -> None:
    assert classifier.check_features(None) == {**DEFAULT_FEATURES, "sigma_min": 0.5,
                                               "sigma_max": 8.0}
    assert classifier.check_features({"window": (0, 4095)})["window"] == [0.0, 4095.0]


@pytest.mark.parametrize(("features", "message"), [
    ({"sigmas": [1, 2]}, "unknown feature setting 'sigmas'; valid settings are intensity, "),
    ({"sigma_max": 40}, "sigma_max 40 is out of range; use a number from 0.3 to 16"),
    ({"sigma_min": 0}, "sigma_min 0 is out of range"),
    ({"sigma_min": 4, "sigma_max": 2}, "sigma_min 4 is larger than sigma_max 2"),
    ({"intensity": False, "edges": False, "texture": False}, "at least one of the intensity"),
    ({"texture": "yes"}, "feature setting texture must be a boolean"),
    ({"num_sigma": 3}, "unknown feature setting .num_sigma."),
    ({"window": [5, 5]}, r"window \[5, 5\] must be two numbers \[low, high\] with low < high"),
    ("fast", "features must be an object"),
])
def test_bad_features_are_refused(features, message) -> None:
    with pytest.raises(InvalidParameter, match=message):
        classifier.check_features(features)


def test_training_refuses_a_bad_channel_or_features(disks) -> None:
    with pytest.raises(InvalidParameter, match="channel 1 does not exist; valid channels are 0 "):
        train_classifier(disks[0], SCRIBBLES_2D, CLASSES, channel=1)
    with pytest.raises(InvalidParameter, match="unknown feature setting 'colour'"):
        train_classifier(disks[0], SCRIBBLES_2D, CLASSES, features={"colour": True})


def test_scribbles_are_normalised() -> None:
    raw = [{"class": 0, "points": [[10.7, 3.2], [20, 30]], "radius": 2, "id": "stroke-1"},
           {"class": 1, "points": [(0, 0)], "radius": 1.5, "z": None}]
    scribbles, names = validate_scribbles(raw, [" background ", "cell"], ndim=2,
                                          shape_zyx_or_yx=(1, 40, 50))
    assert names == ["background", "cell"]
    assert scribbles == [{"class": 0, "points": [[10, 3], [20, 30]], "radius": 2.0},
                         {"class": 1, "points": [[0, 0]], "radius": 1.5}]
    volume, _ = validate_scribbles([{**raw[0], "z": 4}, {**raw[1], "z": 0.0}], names, ndim=3,
                                   shape_zyx_or_yx=(5, 40, 50))
    assert [scribble["z"] for scribble in volume] == [4, 0]


def _stroke(**changes):
    return {"class": 0, "points": [[1, 1], [5, 5]], "radius": 2, "z": 1, **changes}


@pytest.mark.parametrize(("scribbles", "names", "ndim", "message"), [
    ([_stroke()], ["only"], 2, "1 classes given; a classifier needs 2 to 255 classes"),
    ([_stroke()], ["a", "b"], 3, "class 'b' has no scribbles; paint at least one stroke"),
    ([], ["a", "b"], 2, "no scribbles: paint at least one stroke for every class"),
    ([_stroke(), _stroke(**{"class": 2})], ["a", "b"], 3,
     "scribble 1: class 2 is not a class index from 0 to 1"),
    ([_stroke(**{"class": True})], ["a", "b"], 3, "scribble 0: class True is not a class index"),
    ([_stroke(points=[[1, 1], [50, 5]])], ["a", "b"], 3,
     r"scribble 0 point 1 \(x=50, y=5\) is outside the image \(0 <= x < 50, 0 <= y < 40\)"),
    ([_stroke(points=[[1, -0.5]])], ["a", "b"], 3, r"point 0 \(x=1, y=-0.5\) is outside"),
    ([_stroke(points=[[1, 2, 3]])], ["a", "b"], 3, r"point 0 \[1, 2, 3\] is not an \[x, y\] pair"),
    ([_stroke(points=[[1, float("nan")]])], ["a", "b"], 3, "is not an \\[x, y\\] pair"),
    ([_stroke(points=[])], ["a", "b"], 3, "scribble 0 has no points"),
    ([_stroke(points=[[1, 1]] * 2001)], ["a", "b"], 3,
     "scribble 0 has 2001 points; at most 2000 per scribble"),
    ([_stroke(radius=0.5)], ["a", "b"], 3, "scribble 0: radius 0.5 must be a number from 1 to 64"),
    ([_stroke(radius=65)], ["a", "b"], 3, "radius 65 must be a number from 1 to 64"),
    ([_stroke(radius=None)], ["a", "b"], 3, "radius None must be a number"),
    ([_stroke(z=None)], ["a", "b"], 3, "scribble 0: z None must be the whole number of the slice"),
    ([_stroke(z=2.5)], ["a", "b"], 3, "z 2.5 must be the whole number"),
    ([_stroke(z=5)], ["a", "b"], 3, r"slice z=5 is outside the volume \(0 <= z < 5\)"),
    ([_stroke(z=3)], ["a", "b"], 2, "scribble 0: z=3 given, but a 2D image has no z axis"),
    ([_stroke()] * 201, ["a", "b"], 3, "201 scribbles given; at most 200"),
    (["stroke"], ["a", "b"], 3, "scribble 0 is not an object with class, points and radius"),
    ([_stroke()], ["a", "A"], 3, "class name 'A' is used twice"),
    ([_stroke()], ["a", " "], 3, "class 1 has no name"),
    ([_stroke(**{"class": 10**400})], ["a", "b"], 3, "class 1000000000"),
    ([_stroke()], "ab", 3, "class names must be a list of strings"),
])
def test_bad_scribbles_are_refused(scribbles, names, ndim, message) -> None:
    shape = (5, 40, 50) if ndim == 3 else (40, 50)
    with pytest.raises(InvalidParameter, match=message):
        validate_scribbles(scribbles, names, ndim=ndim, shape_zyx_or_yx=shape)


def test_loading_something_else_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"not a pickle")
    with pytest.raises(CorruptImage, match="junk is not a readable pixel classifier"):
        load_classifier(tmp_path / "junk")
    (tmp_path / "dict").write_bytes(pickle.dumps({"format": "other"}))
    with pytest.raises(CorruptImage, match="dict is not a saved pixel classifier"):
        load_classifier(tmp_path / "dict")
