"""OME-TIFF: channels, names, colours and physical sizes from safely parsed OME-XML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy
import pytest
import tifffile

from tiler.errors import CorruptImage, UnsupportedFormat
from tiler.ome_xml import UnsafeXml, ome_color, parse_ome_xml
from tiler.pyramid import write_pyramid
from tiler.readers import open_image
from tiler.render import Pyramid
from tiler.synthetic import synthetic_image

RED, GREEN = -16776961, 16711935  # OME Color integers (RGBA, signed 32-bit)


def write_ome(path: Path, data: numpy.ndarray, **metadata) -> Path:
    tifffile.imwrite(path, data, ome=True, tile=(64, 64), compression="zlib",
                     metadata={"axes": "CYX", **metadata})
    return path


@pytest.fixture
def two_channels() -> numpy.ndarray:
    return synthetic_image((150, 210), "uint16", channels=2)


def test_channels_names_colours_and_pixel_size(tmp_path: Path, two_channels) -> None:
    path = write_ome(tmp_path / "cells.ome.tif", two_channels,
                     Channel={"Name": ["DAPI", "GFP"], "Color": [RED, GREEN]},
                     PhysicalSizeX=0.25, PhysicalSizeY=0.5)
    with open_image(path) as source:
        assert source.shape == (2, 150, 210)
        assert source.channel_names == ["DAPI", "GFP"]
        assert source.channel_colors == ["FF0000", "00FF00"]
        assert source.pixel_size == (0.5, 0.25) and source.unit == "micrometer"
        numpy.testing.assert_array_equal(source.read_region(0, 150, 0, 210), two_channels)
        numpy.testing.assert_array_equal(source.read_region(30, 100, 61, 140),
                                         two_channels[:, 30:100, 61:140])


def test_colours_and_names_reach_the_pyramid(tmp_path: Path, two_channels) -> None:
    path = write_ome(tmp_path / "cells.ome.tif", two_channels,
                     Channel={"Name": ["DAPI", "GFP"], "Color": [RED, GREEN]},
                     PhysicalSizeX=120.0, PhysicalSizeXUnit="nm",
                     PhysicalSizeY=120.0, PhysicalSizeYUnit="nm")
    with open_image(path) as source:
        summary = write_pyramid(source, tmp_path / "cells.ome.zarr")
    ome = json.loads((tmp_path / "cells.ome.zarr" / "zarr.json").read_text())["attributes"]["ome"]
    channels = ome["omero"]["channels"]
    assert [(c["label"], c["color"]) for c in channels] == [("DAPI", "FF0000"), ("GFP", "00FF00")]
    assert ome["multiscales"][0]["axes"][2]["unit"] == "nanometer"
    assert summary.pixel_size == (120.0, 120.0) and summary.unit == "nanometer"
    pyramid = Pyramid.open(summary.path)
    assert pyramid.colors == ["FF0000", "00FF00"]
    numpy.testing.assert_array_equal(pyramid.read_region(0, 0, 150, 0, 210), two_channels)


def test_missing_names_and_all_white_colours_fall_back_to_defaults(tmp_path: Path,
                                                                   two_channels) -> None:
    path = write_ome(tmp_path / "plain.ome.tif", two_channels,
                     Channel={"Color": [-1, -1]})
    with open_image(path) as source:
        assert source.channel_names == ["channel 0", "channel 1"]
        assert source.channel_colors is None
        assert source.pixel_size is None


def test_rgb_ome_tiff_keeps_red_green_blue(tmp_path: Path) -> None:
    rgb = numpy.moveaxis(synthetic_image((80, 90), "uint8", channels=3), 0, -1)
    tifffile.imwrite(tmp_path / "rgb.ome.tif", rgb, ome=True, photometric="rgb",
                     metadata={"PhysicalSizeX": 2.0, "PhysicalSizeY": 2.0})
    with open_image(tmp_path / "rgb.ome.tif") as source:
        assert source.channel_names == ["red", "green", "blue"]
        assert source.pixel_size == (2.0, 2.0)
        numpy.testing.assert_array_equal(source.read_region(0, 80, 0, 90),
                                         numpy.moveaxis(rgb, -1, 0))


def test_pyramidal_ome_tiff_reads_its_full_resolution(tmp_path: Path, two_channels) -> None:
    with tifffile.TiffWriter(tmp_path / "pyramid.ome.tif", ome=True) as writer:
        writer.write(two_channels, subifds=1, tile=(64, 64), metadata={"axes": "CYX"})
        writer.write(two_channels[:, ::2, ::2], subfiletype=1, tile=(64, 64))
    with open_image(tmp_path / "pyramid.ome.tif") as source:
        assert source.shape == (2, 150, 210)
        numpy.testing.assert_array_equal(source.read_region(0, 150, 0, 210), two_channels)


def _with_description(path: Path, description: str) -> Path:
    tifffile.imwrite(path, numpy.zeros((16, 16), numpy.uint8), description=description,
                     metadata=None)
    return path


ENTITY_BOMB = """<?xml version="1.0"?>
<!DOCTYPE OME [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0" Name="&c;">
<Pixels DimensionOrder="XYCZT" Type="uint8" SizeX="16" SizeY="16" SizeC="1" SizeZ="1" SizeT="1">
<TiffData/></Pixels></Image></OME>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE OME [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0" Name="&secret;">
<Pixels DimensionOrder="XYCZT" Type="uint8" SizeX="16" SizeY="16" SizeC="1" SizeZ="1" SizeT="1">
<TiffData/></Pixels></Image></OME>"""


@pytest.mark.parametrize("xml", [ENTITY_BOMB, EXTERNAL_ENTITY], ids=["entity-bomb", "external"])
def test_dtd_and_entities_are_refused(tmp_path: Path, xml: str) -> None:
    path = _with_description(tmp_path / "evil.ome.tif", xml)
    with pytest.raises(CorruptImage, match="OME-XML metadata is refused"):
        open_image(path)
    with pytest.raises(UnsafeXml):
        parse_ome_xml(xml)


def test_badly_formed_ome_xml_is_ignored_and_pixels_still_read(tmp_path: Path) -> None:
    xml = '<?xml version="1.0"?><OME xmlns="x"><Image><Pixels SizeX="16" SizeY="16"></OME>'
    path = _with_description(tmp_path / "broken.ome.tif", xml)
    with open_image(path) as source:
        assert source.shape == (1, 16, 16) and source.channel_names == ["channel 0"]
        assert source.read_region(0, 16, 0, 16).sum() == 0


def test_data_in_other_files_is_refused(tmp_path: Path) -> None:
    xml = ('<?xml version="1.0"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
           'UUID="urn:uuid:0"><Image ID="Image:0"><Pixels DimensionOrder="XYCZT" Type="uint8" '
           'SizeX="16" SizeY="16" SizeC="2" SizeZ="1" SizeT="1">'
           '<TiffData FirstC="0"><UUID FileName="../a.ome.tif">urn:uuid:1</UUID></TiffData>'
           '<TiffData FirstC="1"><UUID FileName="../b.ome.tif">urn:uuid:2</UUID></TiffData>'
           '</Pixels></Image></OME>')
    path = _with_description(tmp_path / "part.ome.tif", xml)
    with pytest.raises(UnsupportedFormat, match="spread over 3 files"):
        open_image(path)


def test_other_files_counts_only_files_besides_this_one() -> None:
    def uuids(root: str, *named: str) -> str:
        root_attr = f' UUID="{root}"' if root else ""
        data = "".join(f'<TiffData><UUID FileName="f{i}">{u}</UUID></TiffData>'
                       for i, u in enumerate(named))
        return (f'<OME{root_attr}><Image><Pixels SizeX="1" SizeY="1">{data}</Pixels>'
                "</Image></OME>")

    assert parse_ome_xml(uuids("u0", "u0", "u0")).other_files == 0
    assert parse_ome_xml(uuids("", "u1", "u1")).other_files == 0  # renamed single file
    assert parse_ome_xml(uuids("u0", "u0", "u1")).other_files == 1
    assert parse_ome_xml(uuids("", "u1", "u2")).other_files == 1


def test_parse_units_colours_and_mixed_units() -> None:
    xml = ('<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image Name="a">'
           '<Pixels SizeX="4" SizeY="3" PhysicalSizeX="500" PhysicalSizeXUnit="nm" '
           'PhysicalSizeY="1" PhysicalSizeYUnit="\u00b5m"><Channel Name="x" Color="255"/>'
           '</Pixels></Image></OME>')
    image, = parse_ome_xml(xml).images
    assert (image.size_x, image.size_y, image.name) == (4, 3, "a")
    assert image.pixel_size == (1000.0, 500.0) and image.unit == "nanometer"
    assert image.channel_names == ["x"] and image.channel_colors == ["000000"]
    assert ome_color("-1") == "FFFFFF" and ome_color("65280") == "0000FF"  # RGBA: blue
    assert ome_color("not a number") is None and ome_color(None) is None
    no_unit = parse_ome_xml('<OME><Image><Pixels SizeX="1" SizeY="1" PhysicalSizeX="2" '
                            'PhysicalSizeY="3"/></Image></OME>').images[0]
    assert no_unit.pixel_size == (3.0, 2.0) and no_unit.unit == "micrometer"
    pixels = parse_ome_xml('<OME><Image><Pixels SizeX="1" SizeY="1" PhysicalSizeX="2" '
                           'PhysicalSizeXUnit="pixel" PhysicalSizeY="3"/></Image></OME>')
    assert pixels.images[0].pixel_size is None
    with pytest.raises(CorruptImage, match="not well-formed"):
        parse_ome_xml("<OME><Image>")


def test_given_colours_replace_defaults_where_valid() -> None:
    from tiler.display import channel_displays

    sample = numpy.zeros((3, 4, 4), numpy.uint8)
    displays = channel_displays(sample, numpy.dtype("uint8"), ["a", "b", "c"],
                                colors=["#ff8800", None, "bogus"])
    assert [d.color for d in displays] == ["FF8800", "FF00FF", "00FFFF"]
