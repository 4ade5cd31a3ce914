"""The pyramid writer on a real TIFF: exact level 0, ceil-halving levels, metadata, readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy
import pytest
from PIL import Image

from tiler.pyramid import THUMBNAIL_NAME, write_pyramid
from tiler.readers import open_image
from tiler.render import Pyramid
from tiler.synthetic import synthetic_image, write_synthetic_tiff

SHAPE = (1000, 1300)


@pytest.fixture(scope="module")
def tiff_pyramid(tmp_path_factory: pytest.TempPathFactory):
    """A 1000 x 1300 uint16 tiled TIFF (0.5 um pixels) converted once; its progress calls."""
    folder = tmp_path_factory.mktemp("pyramid")
    source_path = write_synthetic_tiff(folder / "in.tif", SHAPE, "uint16", pixel_size_um=0.5)
    calls: list[tuple[float, str]] = []
    with open_image(source_path) as source:
        summary = write_pyramid(source, folder / "out.ome.zarr", name="sample",
                                progress=lambda fraction, text: calls.append((fraction, text)))
    return summary, calls


def test_level_zero_equals_the_input(tiff_pyramid) -> None:
    summary, _ = tiff_pyramid
    pyramid = Pyramid.open(summary.path)
    numpy.testing.assert_array_equal(pyramid.read_region(0, 0, 1000, 0, 1300),
                                     synthetic_image(SHAPE, "uint16"))


def test_levels_halve_with_ceil_down_to_one_tile(tiff_pyramid) -> None:
    summary, _ = tiff_pyramid
    assert summary.levels == [(1000, 1300), (500, 650), (250, 325), (125, 163)]
    assert max(summary.levels[-1]) <= 256 < max(summary.levels[-2])
    pyramid = Pyramid.open(summary.path)
    assert pyramid.levels == summary.levels
    assert pyramid.tile_size == 256


def test_summary(tiff_pyramid) -> None:
    summary, _ = tiff_pyramid
    assert summary.shape == (1, 1000, 1300)
    assert summary.dtype == "uint16"
    assert summary.channel_names == ["channel 0"]
    assert summary.pixel_size == (0.5, 0.5) and summary.unit == "micrometer"
    files = [p for p in Path(summary.path).rglob("*") if p.is_file()]
    assert summary.nbytes == sum(p.stat().st_size for p in files)


def test_window_is_percentiles_of_the_lowest_level(tiff_pyramid) -> None:
    summary, _ = tiff_pyramid
    pyramid = Pyramid.open(summary.path)
    lowest = pyramid.read_region(3, 0, 125, 0, 163)
    low, high = numpy.percentile(lowest, [0.1, 99.9])
    (start, end), = summary.windows
    assert start == numpy.floor(low) and end == numpy.ceil(high)
    assert pyramid.windows == summary.windows


def test_progress_is_monotonic_and_ends_at_one(tiff_pyramid) -> None:
    _, calls = tiff_pyramid
    fractions = [fraction for fraction, _ in calls]
    assert len(fractions) >= 5
    assert fractions == sorted(fractions)
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions[-1] == 1.0 and fractions.count(1.0) == 1
    assert all(isinstance(message, str) and message for _, message in calls)


def test_thumbnail(tiff_pyramid) -> None:
    summary, _ = tiff_pyramid
    with Image.open(Path(summary.path) / THUMBNAIL_NAME) as thumbnail:
        assert thumbnail.format == "PNG"
        assert max(thumbnail.size) <= 256
        assert thumbnail.size == (163, 125)
        assert numpy.asarray(thumbnail).std() > 5  # not blank


def test_metadata_layout(tiff_pyramid) -> None:
    summary, _ = tiff_pyramid
    root = json.loads((Path(summary.path) / "zarr.json").read_text())
    ome = root["attributes"]["ome"]
    assert ome["version"] == "0.5"
    multiscale = ome["multiscales"][0]
    assert [axis["name"] for axis in multiscale["axes"]] == ["c", "y", "x"]
    assert multiscale["axes"][0]["type"] == "channel"
    assert multiscale["axes"][2] == {"name": "x", "type": "space", "unit": "micrometer"}
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    assert scales == [[1.0, 0.5 * 2**n, 0.5 * 2**n] for n in range(4)]
    channel, = ome["omero"]["channels"]
    assert channel["color"] == "FFFFFF" and channel["label"] == "channel 0"
    assert channel["window"]["min"] == 0 and channel["window"]["max"] == 65535
    level = json.loads((Path(summary.path) / "0" / "zarr.json").read_text())
    assert level["dimension_names"] == ["c", "y", "x"]
    sharding = level["codecs"][0]
    assert sharding["name"] == "sharding_indexed"
    assert sharding["configuration"]["chunk_shape"] == [1, 256, 256]
    blosc = sharding["configuration"]["codecs"][-1]["configuration"]
    assert (blosc["cname"], blosc["clevel"], blosc["shuffle"]) == ("zstd", 1, "bitshuffle")


def test_readable_by_ome_zarr_py(tiff_pyramid) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    summary, _ = tiff_pyramid
    location = parse_url(summary.path)
    assert location is not None and location.version == "0.5"
    image_node = next(iter(Reader(location)()))
    assert any(isinstance(spec, Multiscales) for spec in image_node.specs)
    shapes = [tuple(level.shape) for level in image_node.data]
    assert shapes == [(1, h, w) for h, w in summary.levels]
    numpy.testing.assert_array_equal(numpy.asarray(image_node.data[0]),
                                     synthetic_image(SHAPE, "uint16"))
    pyramid = Pyramid.open(summary.path)
    numpy.testing.assert_array_equal(numpy.asarray(image_node.data[2]),
                                     pyramid.read_region(2, 0, 250, 0, 325))
    assert image_node.metadata["channel_names"] == ["channel 0"]
    assert image_node.metadata["contrast_limits"] == [list(summary.windows[0])]


def test_valid_against_the_ngff_05_schema_models(tiff_pyramid) -> None:
    import zarr
    from ome_zarr_models.v05.image import Image as OmeZarrImage

    summary, _ = tiff_pyramid
    model = OmeZarrImage.from_zarr(zarr.open_group(summary.path, mode="r"))
    assert len(model.attributes.ome.multiscales[0].datasets) == 4


def test_rgb_source_gets_red_green_blue(tmp_path: Path) -> None:
    source_path = write_synthetic_tiff(tmp_path / "rgb.tif", (300, 200), "uint8", channels=3,
                                       rgb=True)
    with open_image(source_path) as source:
        summary = write_pyramid(source, tmp_path / "rgb.ome.zarr")
    root = json.loads((tmp_path / "rgb.ome.zarr" / "zarr.json").read_text())
    channels = root["attributes"]["ome"]["omero"]["channels"]
    assert [c["color"] for c in channels] == ["FF0000", "00FF00", "0000FF"]
    assert [c["label"] for c in channels] == ["red", "green", "blue"]
    assert summary.levels == [(300, 200), (150, 100)]
    numpy.testing.assert_array_equal(Pyramid.open(summary.path).read_region(0, 0, 300, 0, 200),
                                     synthetic_image((300, 200), "uint8", 3))
