"""Blockwise 3D segmentation of volumes: balls, pores, faces and corners, the label pyramid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy
import pytest
from skimage import filters, measure

from tiler.pyramid_reader import Pyramid
from tiler.reslice import view_tile_data
from tiler.segmentation import segment_pyramid
from tiler.segmentation.synthetic import draw_objects, grid_objects, write_array_pyramid

SHAPE = (40, 70, 90)
#: 3 x 3 x 3 blocks (the volume's chunks are 16 voxels): faces, edges and corners inside.
BLOCK = (16, 32, 32)
VOXEL = (2.0, 0.5, 0.5)


def _segment(pyramid: Path, folder: Path, params: dict, **options):
    folder.mkdir()
    options.setdefault("processes", 1)
    options.setdefault("block_shape", BLOCK)
    return segment_pyramid(pyramid, folder, params, **options)


def _labels(result) -> numpy.ndarray:
    return Pyramid.open(result.labels_path).read_level(0)[0]


@pytest.fixture(scope="module")
def balls(tmp_path_factory) -> tuple[Path, numpy.ndarray]:
    objects = grid_objects(SHAPE, (2.5, 6.5), gap=3, fill=0.9, seed=11)
    objects += [((16.0, 32.0, 32.0), 6.0), ((20.0, 0.0, 64.0), 5.0)]  # a block corner, the border
    volume = draw_objects(SHAPE, objects, dtype="uint16", background=1000, foreground=3000,
                          noise=200, seed=12)
    folder = tmp_path_factory.mktemp("balls")
    path = write_array_pyramid(volume[numpy.newaxis], folder / "balls.ome.zarr",
                               pixel_size=VOXEL, unit="micrometer", chunk=16)
    return path, volume


def test_threshold_labels_and_measurements_match_skimage(balls, tmp_path) -> None:
    path, volume = balls
    result = _segment(path, tmp_path / "out", {"method": "threshold"})
    threshold = filters.threshold_otsu(volume)
    expected = measure.label(volume > threshold, connectivity=1)
    assert result.summary["threshold"] == pytest.approx(threshold)
    assert result.run["blocks"] == 27
    numpy.testing.assert_array_equal(_labels(result), expected)
    objects = numpy.load(result.objects_path)
    props = measure.regionprops_table(expected, volume, properties=(
        "label", "area", "centroid", "bbox", "intensity_mean", "intensity_std"))
    assert len(objects) == expected.max() > 20
    numpy.testing.assert_array_equal(objects["voxels"], props["area"])
    numpy.testing.assert_allclose(objects["volume"], props["area"] * numpy.prod(VOXEL))
    numpy.testing.assert_allclose(objects["equivalent_diameter"],
                                  numpy.cbrt(6 * props["area"] * numpy.prod(VOXEL) / numpy.pi))
    for axis, name in enumerate("zyx"):
        numpy.testing.assert_allclose(objects[f"centroid_{name}"],
                                      props[f"centroid-{axis}"] * VOXEL[axis])
        numpy.testing.assert_array_equal(objects[f"bbox_{name}0"], props[f"bbox-{axis}"])
        numpy.testing.assert_array_equal(objects[f"bbox_{name}1"], props[f"bbox-{axis + 3}"])
    numpy.testing.assert_allclose(objects["mean_intensity"], props["intensity_mean"])
    numpy.testing.assert_allclose(objects["std_intensity"], props["intensity_std"])
    header = result.measurements_path.read_text().splitlines()[0].split(",")
    assert header[:8] == ["label", "class", "voxels", "volume_um3", "equivalent_diameter_um",
                          "centroid_x_um", "centroid_y_um", "centroid_z_um"]
    assert "bbox_z1" in header and result.summary["voxel_size"] == list(VOXEL)


def test_corners_and_edges_join_with_full_connectivity(tmp_path) -> None:
    volume = numpy.zeros((32, 64, 64), dtype=numpy.uint8)
    volume[15, 31, 31] = volume[16, 32, 32] = 200  # touching only at the corner of 8 blocks
    volume[10, 31, 20] = volume[10, 32, 21] = 200  # diagonal in (y, x), across the face y = 32
    volume[15, 40, 31] = volume[16, 41, 32] = 200  # diagonal in 3 axes, across a block edge
    volume[5:20, 5:9, 5:9] = 200  # a rod through the face z = 16
    path = write_array_pyramid(volume[numpy.newaxis], tmp_path / "c.ome.zarr",
                               chunk=16)
    counts = {}
    for connectivity in (1, 2, "full"):
        result = _segment(path, tmp_path / f"out-{connectivity}",
                          {"method": "threshold", "algorithm": "manual", "value": 100,
                           "connectivity": connectivity}, block_shape=(16, 32, 32))
        rank = 3 if connectivity == "full" else connectivity
        numpy.testing.assert_array_equal(_labels(result),
                                         measure.label(volume > 100, connectivity=rank))
        counts[connectivity] = result.object_count
    assert counts == {1: 7, 2: 6, "full": 4}


def test_dark_pores_give_the_porosity(tmp_path) -> None:
    objects = grid_objects((32, 48, 48), (2.0, 5.0), seed=13)
    volume = draw_objects((32, 48, 48), objects, dtype="uint16", background=5000,
                          foreground=800, noise=300, seed=14)
    path = write_array_pyramid(volume[numpy.newaxis], tmp_path / "p.ome.zarr",
                               chunk=16)
    result = _segment(path, tmp_path / "out", {"method": "threshold", "polarity": "dark",
                                              "min_size": 5}, block_shape=(16, 16, 16))
    assert result.object_count == len(objects)
    assert result.summary["foreground_fraction"] == pytest.approx((volume < 2500).mean())
    assert result.summary["voxel_size"] is None


def test_watershed_splits_touching_balls_across_a_face(tmp_path) -> None:
    objects = [((16.0, 26.0, 32.0), 8.0), ((16.0, 38.0, 32.0), 8.0),  # neck on y = 32
               ((10.0, 10.0, 10.0), 5.0)]
    volume = draw_objects((32, 64, 64), objects, noise=5, seed=15)
    path = write_array_pyramid(volume[numpy.newaxis], tmp_path / "w.ome.zarr",
                               chunk=16)
    result = _segment(path, tmp_path / "out", {"method": "watershed", "min_distance": 4,
                                              "max_object_radius": 9},
                      block_shape=(16, 32, 32))
    labels = _labels(result)
    assert result.object_count == 3
    ids = [int(labels[tuple(round(c) for c in centre)]) for centre, _ in objects]
    assert sorted(ids) == [1, 2, 3]
    sizes = numpy.load(result.objects_path)["voxels"]
    first, second = int(sizes[ids[0] - 1]), int(sizes[ids[1] - 1])
    assert abs(first - second) < 0.05 * first  # the touching pair split about in the middle
    assert first > 4 / 3 * numpy.pi * 8**3 * 0.8


def test_label_pyramid_matches_the_volume_levels(balls, tmp_path) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    path, _ = balls
    result = _segment(path, tmp_path / "out", {"method": "threshold"})
    source, labels = Pyramid.open(path), Pyramid.open(result.labels_path)
    assert labels.levels == source.levels and len(labels.levels) == 5
    assert labels.metadata.scales == source.metadata.scales
    assert labels.shape == (1, *SHAPE) and labels.voxel_size == VOXEL
    level0 = labels.read_level(0)[0]
    assert labels.level_factors(2) == (1, 4, 4)  # z voxels 4x longer: z kept twice
    for level in range(1, 5):  # nearest: the first voxel of each block, level by level
        fz, fy, fx = labels.level_factors(level)
        numpy.testing.assert_array_equal(labels.read_level(level)[0], level0[::fz, ::fy, ::fx])
    assert view_tile_data(labels, 0, 0, 0, plane="xz", index0=30).shape[0] == 1
    numpy.testing.assert_array_equal(view_tile_data(labels, 0, 0, 0, plane="xy", index0=7)[0],
                                     level0[7])
    attrs = json.loads((result.labels_path / "zarr.json").read_text())["attributes"]["ome"]
    assert "image-label" in attrs and attrs["multiscales"][0]["axes"][1]["name"] == "z"
    nodes = list(Reader(parse_url(str(result.labels_path)))())
    node, = (node for node in nodes if any(isinstance(spec, Label) for spec in node.specs))
    assert [tuple(array.shape) for array in node.data] == [(1, *s) for s in source.levels]
    numpy.testing.assert_array_equal(numpy.asarray(node.data[0])[0], level0)
