"""Blockwise 2D segmentation against scikit-image on the whole image: labels, measurements."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy
import pytest
import zarr
from scipy import ndimage
from skimage import filters, measure, segmentation
from skimage.feature import peak_local_max

from tiler.pyramid_reader import Pyramid
from tiler.reslice import view_tile_data
from tiler.segmentation import segment_pyramid
from tiler.segmentation.synthetic import draw_objects, grid_objects, write_array_pyramid

SHAPE = (600, 760)
#: Blocks of 128 px (the pyramid's chunks are 64 px): many block faces and corners.
BLOCK = (128, 128)
PIXEL = 0.5


def _segment(pyramid: Path, folder: Path, params: dict, **options):
    folder.mkdir()
    options.setdefault("processes", 1)
    options.setdefault("block_shape", BLOCK)
    return segment_pyramid(pyramid, folder, params, **options)


def _labels(result) -> numpy.ndarray:
    return Pyramid.open(result.labels_path).read_level(0)[0]


@pytest.fixture(scope="module")
def disks(tmp_path_factory) -> tuple[Path, numpy.ndarray]:
    """Disks on a grid, some cut by block faces, one on a block corner, one cut by the border."""
    objects = grid_objects(SHAPE, (4.0, 13.0), gap=6, fill=0.8, seed=1)
    objects += [((128.0, 128.0), 10.0), ((300.0, 0.0), 8.0), ((256.0, 380.0), 15.0)]
    image = draw_objects(SHAPE, objects, seed=2)
    folder = tmp_path_factory.mktemp("disks")
    path = write_array_pyramid(image, folder / "disks.ome.zarr", pixel_size=(PIXEL, PIXEL),
                               unit="micrometer", tile_size=64)
    return path, image


def test_threshold_labels_equal_whole_image_labels(disks, tmp_path) -> None:
    path, image = disks
    result = _segment(path, tmp_path / "out", {"method": "threshold"})
    threshold = filters.threshold_otsu(image)
    expected = measure.label(image > threshold, connectivity=1)
    assert result.summary["threshold"] == pytest.approx(threshold)
    assert result.summary["threshold_level"] == 0  # the image is small: level 0 itself
    assert result.run["blocks"] == 5 * 6 and result.run["block_shape"] == [128, 128]
    # same objects, and numbered as scikit-image numbers them (first pixel in raster order)
    numpy.testing.assert_array_equal(_labels(result), expected)
    assert result.object_count == expected.max() > 100
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "labels.ome.zarr", "measurements.csv", "objects.npy", "summary.json"]


def test_measurements_match_regionprops(disks, tmp_path) -> None:
    path, image = disks
    result = _segment(path, tmp_path / "out", {"method": "threshold"})
    expected = measure.label(image > filters.threshold_otsu(image), connectivity=1)
    props = measure.regionprops_table(expected, image, properties=(
        "label", "area", "centroid", "bbox", "intensity_mean", "intensity_min", "intensity_max",
        "intensity_std", "equivalent_diameter_area"))
    objects = numpy.load(result.objects_path)
    assert len(objects) == result.object_count
    numpy.testing.assert_array_equal(objects["label"], props["label"])
    numpy.testing.assert_array_equal(objects["voxels"], props["area"])
    numpy.testing.assert_allclose(objects["area"], props["area"] * PIXEL**2)
    numpy.testing.assert_allclose(objects["equivalent_diameter"],
                                  props["equivalent_diameter_area"] * PIXEL)
    numpy.testing.assert_allclose(objects["centroid_y"], props["centroid-0"] * PIXEL)
    numpy.testing.assert_allclose(objects["centroid_x"], props["centroid-1"] * PIXEL)
    for name, key in (("bbox_y0", "bbox-0"), ("bbox_x0", "bbox-1"), ("bbox_y1", "bbox-2"),
                      ("bbox_x1", "bbox-3")):
        numpy.testing.assert_array_equal(objects[name], props[key])
    for name in ("mean", "min", "max", "std"):
        numpy.testing.assert_allclose(objects[f"{name}_intensity"], props[f"intensity_{name}"])
    border = numpy.unique(numpy.concatenate([expected[0], expected[-1], expected[:, 0],
                                             expected[:, -1]]))
    assert set(numpy.flatnonzero(objects["touches_edge"]) + 1) == set(border[border > 0])
    lines = result.measurements_path.read_text().splitlines()
    assert lines[0].split(",") == [
        "label", "class", "voxels", "area_um2", "equivalent_diameter_um", "centroid_x_um",
        "centroid_y_um", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "mean_intensity",
        "min_intensity", "max_intensity", "std_intensity", "touches_edge"]
    assert len(lines) == 1 + result.object_count
    first = dict(zip(lines[0].split(","), lines[1].split(","), strict=True))
    assert int(first["voxels"]) == objects["voxels"][0]
    assert float(first["centroid_x_um"]) == objects["centroid_x"][0]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary == result.summary
    assert summary["foreground_voxels"] == (expected > 0).sum()
    assert summary["foreground_fraction"] == pytest.approx((expected > 0).mean())
    assert summary["median_equivalent_diameter"] == pytest.approx(
        numpy.median(props["equivalent_diameter_area"]) * PIXEL)
    assert sum(summary["size_histogram"]["counts"]) == result.object_count
    assert summary["unit"] == "micrometer" and summary["pixel_size"] == [PIXEL, PIXEL]


def test_block_faces_and_corners_join_objects(tmp_path) -> None:
    image = numpy.zeros((256, 256), dtype=numpy.uint8)
    image[30:50, 120:136] = 200  # a bar across the face x = 128
    image[127, 20:40] = image[128, 30:50] = 200  # a line that steps across the face y = 128
    image[127, 127] = image[128, 128] = 200  # two pixels touching only at the block corner
    image[60, 127] = image[61, 128] = 200  # diagonal neighbours across the face x = 128
    image[127, 200] = image[128, 201] = 200  # and across the face y = 128
    path = write_array_pyramid(image, tmp_path / "faces.ome.zarr", tile_size=64)
    counts = {}
    for connectivity in (1, "full"):
        result = _segment(path, tmp_path / f"out-{connectivity}",
                          {"method": "threshold", "algorithm": "manual", "value": 100,
                           "connectivity": connectivity})
        expected = measure.label(image > 100, connectivity=1 if connectivity == 1 else 2)
        numpy.testing.assert_array_equal(_labels(result), expected)
        counts[connectivity] = result.object_count
    assert counts == {1: 8, "full": 5}


def test_min_size_drops_small_objects(disks, tmp_path) -> None:
    path, image = disks
    result = _segment(path, tmp_path / "out", {"method": "threshold", "min_size": 150})
    expected = measure.label(image > filters.threshold_otsu(image), connectivity=1)
    sizes = numpy.bincount(expected.ravel())
    kept = numpy.flatnonzero(sizes[1:] >= 150) + 1
    assert 0 < len(kept) < expected.max()
    relabelled = numpy.zeros(sizes.size, dtype=numpy.int64)
    relabelled[kept] = numpy.arange(1, len(kept) + 1)
    numpy.testing.assert_array_equal(_labels(result), relabelled[expected])
    assert numpy.load(result.objects_path)["voxels"].min() >= 150


def test_dark_pores_and_porosity(tmp_path) -> None:
    objects = grid_objects((400, 500), (3.0, 9.0), seed=4)
    pores = draw_objects((400, 500), objects, background=190, foreground=40, noise=8, seed=5)
    path = write_array_pyramid(pores, tmp_path / "pores.ome.zarr", tile_size=64)
    result = _segment(path, tmp_path / "out", {"method": "threshold", "polarity": "dark",
                                              "algorithm": "li"})
    expected = measure.label(pores <= filters.threshold_li(pores), connectivity=1)
    numpy.testing.assert_array_equal(_labels(result), expected)
    assert result.object_count == len(objects)
    assert result.summary["foreground_fraction"] == pytest.approx((pores < 120).mean())
    assert result.summary["unit"] is None and result.summary["unit_symbol"] == "px"
    header = result.measurements_path.read_text().splitlines()[0]
    assert "area_px2" in header and "centroid_x_px" in header


@pytest.mark.parametrize("statistic", ["gaussian", "mean"])
def test_local_threshold_equals_whole_image_threshold_local(tmp_path, statistic) -> None:
    objects = grid_objects((500, 420), (4.0, 10.0), seed=6)
    ramp = numpy.linspace(0, 120, 420, dtype=numpy.float32)[numpy.newaxis, :]
    image = (draw_objects((500, 420), objects, background=20, foreground=80, noise=12, seed=7)
             + ramp).astype(numpy.uint8)
    path = write_array_pyramid(image, tmp_path / "uneven.ome.zarr", tile_size=64)
    params = {"method": "local", "block_size": 41, "offset": -5.0, "statistic": statistic}
    result = _segment(path, tmp_path / "out", params)
    local = filters.threshold_local(image, 41, method=statistic, offset=-5.0)
    expected = measure.label(image > local, connectivity=1)
    numpy.testing.assert_array_equal(_labels(result), expected)  # everywhere, borders too
    assert result.run["halo"] == (27 if statistic == "gaussian" else 20)


def test_watershed_splits_touching_disks_across_a_block_edge(tmp_path) -> None:
    # pairs of overlapping disks; the first pair's neck lies on the block face x = 128, the
    # second pair straddles the face y = 256 along its length; one single disk on a corner
    objects = [((60.0, 116.0), 14.0), ((60.0, 140.0), 14.0),
               ((246.0, 200.0), 12.0), ((266.0, 220.0), 12.0),
               ((128.0, 256.0), 11.0), ((200.0, 60.0), 9.0)]
    image = draw_objects((384, 384), objects, noise=6, seed=8)
    path = write_array_pyramid(image, tmp_path / "touching.ome.zarr", tile_size=64)
    params = {"method": "watershed", "min_distance": 6, "max_object_radius": 16}
    result = _segment(path, tmp_path / "out", params)
    labels = _labels(result)
    assert result.object_count == 6
    for (cy, cx), _ in objects:  # every disk centre lies in a different object
        assert labels[round(cy), round(cx)] > 0
    assert len({labels[round(cy), round(cx)] for (cy, cx), _ in objects}) == 6
    areas = numpy.load(result.objects_path)["voxels"]
    assert areas.sum() == (image > filters.threshold_otsu(image)).sum()
    # the same as a watershed of the whole image
    mask = image > filters.threshold_otsu(image)
    distance = ndimage.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=6, exclude_border=False)
    markers = numpy.zeros(mask.shape, dtype=numpy.int32)
    markers[tuple(peaks.T)] = numpy.arange(1, len(peaks) + 1)
    whole = segmentation.watershed(-distance, markers, mask=mask)
    assert whole.max() == 6
    agreement = numpy.mean(labels[mask] == _relabel_like(labels, whole)[mask])
    assert agreement > 0.99


def _relabel_like(ours: numpy.ndarray, theirs: numpy.ndarray) -> numpy.ndarray:
    """``theirs`` with each object renamed to the id of ours it overlaps most."""
    mapping = numpy.zeros(theirs.max() + 1, dtype=ours.dtype)
    for label in range(1, theirs.max() + 1):
        mapping[label] = numpy.bincount(ours[theirs == label]).argmax()
    return mapping[theirs]


class ThreeClasses:
    """A stand-in for tiler.segmentation.classifier.TrainedClassifier: fixed intensity bands."""

    class_names = ["background", "grey", "white"]
    ndim = 2
    halo = 3

    def classify_block(self, block: numpy.ndarray) -> numpy.ndarray:
        assert block.dtype == numpy.float32
        smooth = ndimage.uniform_filter(block, 3, mode="reflect")  # needs 1 px of context
        return numpy.digitize(smooth, [80.0, 160.0]).astype(numpy.uint8)


def test_classifier_objects_are_components_of_one_class(tmp_path) -> None:
    grey = [((64.0, 126.0), 10.0), ((200.0, 40.0), 12.0)]
    white = [((64.0, 142.0), 9.0), ((130.0, 130.0), 11.0)]  # the first touches a grey disk
    image = numpy.maximum(draw_objects((256, 256), grey, foreground=120, noise=0),
                          draw_objects((256, 256), white, foreground=220, noise=0))
    path = write_array_pyramid(image, tmp_path / "classes.ome.zarr", tile_size=64)
    params = {"method": "classifier", "scribbles": [{"class": 1, "points": [[1, 2]]}],
              "class_names": ["background", "grey", "white"]}
    result = _segment(path, tmp_path / "out", params, classifier=ThreeClasses())
    classes = ThreeClasses().classify_block(image.astype(numpy.float32))
    expected = _class_components(classes)
    labels = _labels(result)
    numpy.testing.assert_array_equal(labels, expected)
    objects = numpy.load(result.objects_path)
    assert result.object_count == expected.max() >= 4
    for (cy, cx), _ in grey + white:  # each disk centre: an object of the disk's class
        assert objects["class"][labels[round(cy), round(cx)] - 1] == (1 if (cy, cx) in [
            centre for centre, _ in grey] else 2)
    assert result.summary["class_names"] == ["background", "grey", "white"]
    assert result.summary["params"]["scribbles"] == params["scribbles"]


def _class_components(classes: numpy.ndarray) -> numpy.ndarray:
    """Connected components of each non-zero class, numbered by first pixel in raster order."""
    labels = numpy.zeros(classes.shape, dtype=numpy.int64)
    for value in range(1, int(classes.max()) + 1):
        part, _ = ndimage.label(classes == value)
        labels[part > 0] = part[part > 0] + labels.max()
    ids, first = numpy.unique(labels.ravel(), return_index=True)
    order = numpy.zeros(ids.max() + 1, dtype=numpy.int64)
    order[ids[1:][numpy.argsort(first[1:])]] = numpy.arange(1, len(ids))
    return order[labels]


def test_label_pyramid_has_the_image_levels_and_ome_zarr_py_reads_it(disks, tmp_path) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader
    from ome_zarr_models.v05.image_label import ImageLabel

    path, image = disks
    result = _segment(path, tmp_path / "out", {"method": "threshold"})
    source, labels = Pyramid.open(path), Pyramid.open(result.labels_path)
    assert labels.levels == source.levels and len(labels.levels) == 5
    assert labels.metadata.scales == source.metadata.scales
    assert labels.shape == (1, *SHAPE) and labels.dtype == numpy.uint32
    assert labels.tile_size == source.tile_size and labels.unit == "micrometer"
    level0 = labels.read_level(0)[0]
    for level in range(1, 5):  # nearest: the top-left pixel of each 2x2 block, level by level
        numpy.testing.assert_array_equal(labels.read_level(level)[0],
                                         level0[::2**level, ::2**level])
        numpy.testing.assert_array_equal(view_tile_data(labels, level, 0, 0)[0],
                                         level0[::2**level, ::2**level][:64, :64])
    attrs = json.loads((result.labels_path / "zarr.json").read_text())["attributes"]["ome"]
    assert attrs["image-label"] == {"version": "0.5", "colors": [], "source": {
        "image": os.path.relpath(path.resolve(), result.labels_path.resolve())}}
    assert attrs["image-label"]["source"]["image"].endswith("/disks.ome.zarr")
    assert attrs["multiscales"][0]["type"] == "nearest" and "omero" not in attrs
    level = json.loads((result.labels_path / "0" / "zarr.json").read_text())
    assert level["codecs"][0]["name"] == "sharding_indexed"
    assert level["dimension_names"] == ["c", "y", "x"]
    nodes = list(Reader(parse_url(str(result.labels_path)))())
    node, = (node for node in nodes if any(isinstance(spec, Label) for spec in node.specs))
    assert any(isinstance(spec, Multiscales) for spec in node.specs)
    image_node, = (other for other in nodes if other is not node)  # found through "source"
    assert [tuple(array.shape) for array in image_node.data][0] == (1, *SHAPE)
    assert [tuple(array.shape) for array in node.data] == [(1, *s) for s in source.levels]
    numpy.testing.assert_array_equal(numpy.asarray(node.data[0])[0], level0)
    model = ImageLabel.from_zarr(zarr.open_group(str(result.labels_path), mode="r"))
    assert model.attributes.ome.image_label.version == "0.5"
