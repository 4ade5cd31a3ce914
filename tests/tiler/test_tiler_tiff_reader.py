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


@pytest.mark.parametrize("options", [
    {"compression": "lzw", "predictor": True},
    {"compression": "zstd"},
    {"compression": "deflate", "predictor": True, "rowsperstrip": 7},
    {"compression": "packbits", "rowsperstrip": 300},
], ids=["lzw-predictor", "zstd", "deflate-strips-7", "packbits-one-strip"])
def test_compressions_and_predictors(tmp_path: Path, options: dict) -> None:
    data = synthetic_image((300, 437), "uint16")[0] if options["compression"] != "packbits" \
        else synthetic_image((300, 437), "uint8")[0]
    layout = {} if "rowsperstrip" in options else {"tile": (64, 128)}
    tifffile.imwrite(tmp_path / "c.tif", data, metadata=None, **layout, **options)
    with open_image(tmp_path / "c.tif") as source:
        numpy.testing.assert_array_equal(source.read_region(0, 300, 0, 437)[0], data)
        numpy.testing.assert_array_equal(source.read_region(13, 250, 70, 333)[0],
                                         data[13:250, 70:333])


def test_jpeg_tiles(tmp_path: Path) -> None:
    rgb = numpy.moveaxis(synthetic_image((200, 300), "uint8", channels=3), 0, -1)
    tifffile.imwrite(tmp_path / "j.tif", rgb, photometric="rgb", tile=(64, 64),
                     compression="jpeg", compressionargs={"level": 95}, metadata=None)
    decoded = numpy.moveaxis(tifffile.imread(tmp_path / "j.tif"), -1, 0)  # tifffile's own
    with open_image(tmp_path / "j.tif") as source:
        numpy.testing.assert_array_equal(source.read_region(10, 190, 20, 290),
                                         decoded[:, 10:190, 20:290])
    error = numpy.abs(decoded.astype(float) - numpy.moveaxis(rgb, -1, 0)).mean()
    assert error < 10  # lossy, chroma subsampled, but the same picture


def test_tiles_never_written_read_as_zeros(tmp_path: Path) -> None:
    data = synthetic_image((256, 256), "uint16")[0] + 1
    path = tmp_path / "sparse.tif"
    tifffile.imwrite(path, data, tile=(128, 128), compression="zlib", metadata=None)
    with tifffile.TiffFile(path) as tiff:
        tag = tiff.pages[0].tags["TileByteCounts"]
        counts_at, count_type = tag.valueoffset, tag.dtype
    raw = bytearray(path.read_bytes())
    size = numpy.dtype(tifffile.TIFF.DATA_FORMATS[count_type]).itemsize
    raw[counts_at + size:counts_at + 2 * size] = b"\x00" * size  # tile 1: no bytes
    path.write_bytes(bytes(raw))
    expected = data.copy()
    expected[:128, 128:] = 0
    with open_image(path) as source:
        numpy.testing.assert_array_equal(source.read_region(0, 256, 0, 256)[0], expected)


def test_regions_read_from_many_threads_at_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = write_synthetic_tiff(tmp_path / "t.tif", (512, 640), "uint16", channels=2, tile=64)
    expected = synthetic_image((512, 640), "uint16", channels=2)
    boxes = [(y, y + 128, x, x + 160) for y in range(0, 512, 128) for x in range(0, 640, 160)]
    with open_image(path) as source, ThreadPoolExecutor(max_workers=8) as pool:
        blocks = list(pool.map(lambda box: source.read_region(*box), boxes * 3))
    for (y0, y1, x0, x1), block in zip(boxes * 3, blocks, strict=True):
        numpy.testing.assert_array_equal(block, expected[:, y0:y1, x0:x1])
