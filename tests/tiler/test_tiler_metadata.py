"""NGFF metadata building/parsing, and physical pixel sizes read from TIFF and PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest
import tifffile
from PIL import Image

from tiler.errors import CorruptImage
from tiler.ome_zarr_format import (
    ChannelDisplay,
    build_image_attrs,
    build_multiscales_attrs,
    parse_image_attrs,
)
from tiler.readers import open_image
from tiler.render import Pyramid

CHANNELS = [
    ChannelDisplay("DAPI", "0000FF", 10.0, 900.0, 0.0, 65535.0),
    ChannelDisplay("GFP", "00FF00", 5.0, 400.0, 0.0, 65535.0),
]


def test_build_and_parse_round_trip() -> None:
    attrs = build_image_attrs(3, CHANNELS, pixel_size=(0.25, 0.5), unit="micrometer", name="x")
    assert set(attrs) == {"ome"} and attrs["ome"]["version"] == "0.5"
    metadata = parse_image_attrs(attrs)
    assert metadata.name == "x"
    assert metadata.level_paths == ["0", "1", "2"]
    assert metadata.scales == [(0.25, 0.5), (0.5, 1.0), (1.0, 2.0)]
    assert metadata.pixel_size == (0.25, 0.5) and metadata.unit == "micrometer"
    assert metadata.channels == CHANNELS


def test_unknown_pixel_size_has_no_unit() -> None:
    multiscale, = build_multiscales_attrs(2, pixel_size=None, unit=None)
    assert all("unit" not in axis for axis in multiscale["axes"])
    attrs = build_image_attrs(2, CHANNELS[:1], pixel_size=None, unit=None)
    metadata = parse_image_attrs(attrs)
    assert metadata.pixel_size is None and metadata.scales == [(1.0, 1.0), (2.0, 2.0)]
    assert attrs["ome"]["omero"]["rdefs"]["model"] == "greyscale"


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({}, "not an OME-Zarr 0.5 image"),
        ({"ome": {"version": "0.4", "multiscales": []}}, "version '0.4' is not 0.5"),
        ({"ome": {"version": "0.5", "multiscales": [{"axes": [{"name": "y"}, {"name": "x"}],
                                                     "datasets": []}]}}, "axes"),
        ({"ome": {"version": "0.5", "multiscales": [
            {"axes": [{"name": "c"}, {"name": "y"}, {"name": "x"}], "datasets": []}]}},
         "no pyramid levels"),
    ],
)
def test_parse_rejects_other_layouts(attrs, message) -> None:
    with pytest.raises(CorruptImage, match=message):
        parse_image_attrs(attrs)


def test_pyramid_without_omero_falls_back_to_dtype_range(tmp_path: Path) -> None:
    import zarr

    group = zarr.open_group(str(tmp_path / "bare.zarr"), mode="w", zarr_format=3)
    group.create_array("0", data=numpy.arange(12, dtype=numpy.uint16).reshape(1, 3, 4),
                       chunks=(1, 2, 2))
    attrs = build_image_attrs(1, [], pixel_size=None, unit=None)
    del attrs["ome"]["omero"]
    group.attrs.update(attrs)
    pyramid = Pyramid.open(tmp_path / "bare.zarr")
    assert pyramid.windows == [(0.0, 65535.0)] and pyramid.colors == ["FFFFFF"]
    assert pyramid.tile_size == 2 and pyramid.levels == [(3, 4)]


def _tiff_with_resolution(path: Path, **options) -> Path:
    tifffile.imwrite(path, numpy.zeros((8, 8), numpy.uint8), **options)
    return path


@pytest.mark.parametrize(
    ("options", "pixel_size"),
    [
        ({"resolution": (2540.0, 1270.0), "resolutionunit": "INCH"}, (20.0, 10.0)),
        ({"resolution": (40000.0, 40000.0), "resolutionunit": "CENTIMETER"}, (0.25, 0.25)),
        ({"resolution": (1 / 0.325, 1 / 0.325), "resolutionunit": "MICROMETER"}, (0.325, 0.325)),
        ({"resolution": (72.0, 72.0), "resolutionunit": "INCH"}, None),  # placeholder dpi
        ({"resolution": (5.0, 5.0), "resolutionunit": "NONE"}, None),
        ({}, None),
    ],
)
def test_tiff_pixel_size_from_resolution_tags(tmp_path: Path, options, pixel_size) -> None:
    with open_image(_tiff_with_resolution(tmp_path / "r.tif", **options)) as source:
        assert source.pixel_size == pixel_size
        assert source.unit == ("micrometer" if pixel_size else None)


def test_imagej_unit(tmp_path: Path) -> None:
    path = _tiff_with_resolution(tmp_path / "ij.tif", imagej=True, resolution=(2.0, 4.0),
                                 metadata={"unit": "micron"})
    with open_image(path) as source:
        assert source.pixel_size == (0.25, 0.5) and source.unit == "micrometer"


def test_png_dpi(tmp_path: Path) -> None:
    image = Image.fromarray(numpy.zeros((4, 4), numpy.uint8))
    image.save(tmp_path / "scan.png", dpi=(2540, 2540))
    image.save(tmp_path / "plain.png", dpi=(72, 72))
    with open_image(tmp_path / "scan.png") as source:
        assert source.pixel_size == pytest.approx((10.0, 10.0), rel=1e-3)
        assert source.unit == "micrometer"
    with open_image(tmp_path / "plain.png") as source:
        assert source.pixel_size is None and source.unit is None
