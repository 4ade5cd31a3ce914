"""Hand-crafted broken TIFFs: each gives the right TilerError with a readable reason.

The files go to TiffReader itself: the 2D reader's own checks are what is tested here.
"""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import pytest

from tiler.errors import CorruptImage, ImageTooLarge, UnsupportedFormat
from tiler.readers import open_image
from tiler.readers.tiff import TiffReader
from tiler.readers.tiff_structure import check_ifd_chain

PIXELS = bytes(range(64))


def classic_tiff(width: int = 8, height: int = 8, *, ifds: int = 1, next_of_last: int = 0,
                 big_endian: bool = False, compression: int = 1) -> bytes:
    """A classic TIFF of ``ifds`` 8-bit grey strip images; the last IFD points to ``next_of_last``.

    Every image shares the same 64 bytes of pixel data after the IFDs.
    """
    order = ">" if big_endian else "<"
    count = 9
    ifd_size = 2 + 12 * count + 4
    data_at = 8 + ifd_size * ifds
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, compression), (262, 3, 1),
               (273, 4, data_at), (277, 3, 1), (278, 4, height), (279, 4, len(PIXELS))]
    body = b""
    for index in range(ifds):
        body += struct.pack(order + "H", count)
        for tag, kind, value in entries:
            packed = (struct.pack(order + "HH", value, 0) if kind == 3
                      else struct.pack(order + "I", value))
            body += struct.pack(order + "HHI", tag, kind, 1) + packed
        following = 8 + ifd_size * (index + 1) if index + 1 < ifds else next_of_last
        body += struct.pack(order + "I", following)
    magic = b"MM\x00*" if big_endian else b"II*\x00"
    return magic + struct.pack(order + "I", 8) + body + PIXELS


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def open_tiff(path: Path, max_pixels: int = 2**34) -> TiffReader:
    return TiffReader(path, max_pixels=max_pixels)


def test_a_crafted_tiff_reads(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.tif", classic_tiff())
    assert check_ifd_chain(path) == 1
    with open_tiff(path) as source:
        assert source.shape == (1, 8, 8)
        assert source.read_region(0, 8, 0, 8).ravel().tolist() == list(PIXELS)


@pytest.mark.parametrize("ifds, back_to", [(1, 8), (2, 8), (3, 8 + 114), (3, 130)],
                         ids=["self-loop", "two-cycle", "loop-to-second", "into-an-ifd"])
@pytest.mark.parametrize("big_endian", [False, True], ids=["II", "MM"])
def test_cyclic_ifd_chain(tmp_path: Path, ifds: int, back_to: int, big_endian: bool) -> None:
    path = write(tmp_path, "cycle.tif", classic_tiff(ifds=ifds, next_of_last=back_to,
                                                     big_endian=big_endian))
    with pytest.raises(CorruptImage, match="loops back .* cyclic IFD chain") as caught:
        open_tiff(path)
    assert str(caught.value).startswith("cannot read TIFF structure")


def test_header_claiming_a_million_by_a_million_pixels(tmp_path: Path) -> None:
    path = write(tmp_path, "huge.tif", classic_tiff(width=10**6, height=10**6))
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge, match=r"1000000000000 pixels \(1000000 x 1000000\)"):
            open_tiff(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20  # refused before anything image-sized was allocated


def test_ifd_offset_past_the_end(tmp_path: Path) -> None:
    data = bytearray(classic_tiff())
    data[4:8] = struct.pack("<I", 10_000)
    path = write(tmp_path, "far.tif", bytes(data))
    with pytest.raises(CorruptImage, match="past the end of the file .* truncated"):
        open_tiff(path)


def test_file_cut_inside_its_ifd(tmp_path: Path) -> None:
    path = write(tmp_path, "cut.tif", classic_tiff()[:40])
    with pytest.raises(CorruptImage, match="cannot read TIFF structure.*truncated"):
        open_tiff(path)


def test_pixel_data_cut_off(tmp_path: Path) -> None:
    path = write(tmp_path, "short.tif", classic_tiff()[:-10])
    with pytest.raises(CorruptImage, match="truncated: image data runs to byte"):
        open_tiff(path)


def test_uncompressed_image_bigger_than_its_data(tmp_path: Path) -> None:
    path = write(tmp_path, "lies.tif", classic_tiff(20000, 20000))  # 64 bytes for 400 MB
    with pytest.raises(CorruptImage, match="truncated"):
        open_tiff(path)


def test_garbage_ifd_entries(tmp_path: Path) -> None:
    data = bytearray(classic_tiff())
    data[10:10 + 12 * 9] = b"\xff" * (12 * 9)  # every tag, type and count is nonsense
    path = write(tmp_path, "garbage.tif", bytes(data))
    with pytest.raises(CorruptImage, match="describes no image"):
        open_tiff(path)


def test_header_only(tmp_path: Path) -> None:
    path = write(tmp_path, "header.tif", b"II*\x00")
    with pytest.raises(CorruptImage, match="too few for a TIFF header"):
        open_tiff(path)


def test_bigtiff_header_cut_short(tmp_path: Path) -> None:
    path = write(tmp_path, "big.tif", b"II+\x00\x08\x00\x00\x00\x10\x00")
    with pytest.raises(CorruptImage, match="BigTIFF header is cut short"):
        open_tiff(path)


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.tif", b"")
    with pytest.raises(UnsupportedFormat, match="the file is empty"):
        open_image(path)
    with pytest.raises(CorruptImage, match="has only 0 bytes"):
        open_tiff(path)


def test_not_a_tiff_given_to_the_tiff_reader(tmp_path: Path) -> None:
    path = write(tmp_path, "png.tif", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(UnsupportedFormat, match="not a TIFF file"):
        open_tiff(path)


def test_one_huge_strip_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "one-strip.tif", classic_tiff(20000, 20000, compression=8))
    with pytest.raises(UnsupportedFormat, match=r"strips of 381 MiB each .* re-save it tiled"):
        open_tiff(path)
