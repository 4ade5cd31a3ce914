"""TIFF reader specifics: lazy tile decoding, memory mapping, byte order, alpha and page series."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest
import tifffile

from tiler.errors import CorruptImage
from tiler.readers import open_image
from tiler.synthetic import synthetic_image, write_synthetic_tiff


def test_only_the_tiles_a_region_needs_are_decoded(tmp_path: Path) -> None:
    path = Path(write_synthetic_tiff(tmp_path / "t.tif", (1024, 1024), tile=128))
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        last_offset = page.dataoffsets[-1]
        last_count = page.databytecounts[-1]
    data[last_offset:last_offset + last_count] = b"\x00" * last_count  # ruin the last tile
    path.write_bytes(bytes(data))
    expected = synthetic_image((1024, 1024), "uint16")
    with open_image(path) as source:
        numpy.testing.assert_array_equal(source.read_region(0, 896, 0, 1024),
                                         expected[:, :896])
        numpy.testing.assert_array_equal(source.read_region(896, 1024, 0, 896),
                                         expected[:, 896:, :896])
        with pytest.raises(CorruptImage):
            source.read_region(1000, 1001, 1000, 1001)


def test_uncompressed_contiguous_data_is_memory_mapped(tmp_path: Path) -> None:
    path = write_synthetic_tiff(tmp_path / "raw.tif", (300, 200), "uint16", tile=None,
                                compression=None, byteorder=">")
    with open_image(path) as source:
        assert source.memory_mapped
        assert source.dtype == numpy.dtype("uint16") and source.dtype.isnative
        region = source.read_region(10, 20, 30, 40)
        assert region.dtype.isnative and region.flags.writeable
        assert not isinstance(region, numpy.memmap)
        expected = synthetic_image((300, 200), "uint16")[:, 10:20, 30:40]
        numpy.testing.assert_array_equal(region, expected)


def test_compressed_data_is_not_memory_mapped(tmp_path: Path) -> None:
    path = write_synthetic_tiff(tmp_path / "z.tif", (300, 200), tile=None)
    with open_image(path) as source:
        assert not source.memory_mapped


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    rgba = numpy.moveaxis(synthetic_image((40, 30), "uint8", channels=4), 0, -1)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"],
                     compression="zlib")
    with open_image(tmp_path / "rgba.tif") as source:
        assert source.shape == (3, 40, 30)
        assert source.channel_names == ["red", "green", "blue"]
        numpy.testing.assert_array_equal(source.read_region(0, 40, 0, 30),
                                         numpy.moveaxis(rgba[..., :3], -1, 0))


def test_pages_as_channels(tmp_path: Path) -> None:
    planes = synthetic_image((50, 60), "uint16", channels=2)
    with tifffile.TiffWriter(tmp_path / "pages.tif") as writer:
        for plane in planes:
            writer.write(plane, photometric="minisblack", compression="zlib", metadata=None)
    with open_image(tmp_path / "pages.tif") as source:
        assert source.shape == (2, 50, 60)
        numpy.testing.assert_array_equal(source.read_region(5, 45, 0, 60), planes[:, 5:45])


def test_bilevel_image_reads_as_0_and_255(tmp_path: Path) -> None:
    bits = numpy.zeros((16, 24), dtype=bool)
    bits[4:8, 10:20] = True
    tifffile.imwrite(tmp_path / "bits.tif", bits)
    with open_image(tmp_path / "bits.tif") as source:
        assert source.dtype == numpy.uint8
        numpy.testing.assert_array_equal(source.read_region(0, 16, 0, 24)[0], bits * 255)


def test_close_is_idempotent(tmp_path: Path) -> None:
    source = open_image(write_synthetic_tiff(tmp_path / "c.tif", (20, 20)))
    source.close()
    source.close()
