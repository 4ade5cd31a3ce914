"""Bad files give the right TilerError subclass with a message a user can act on."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest
from PIL import Image

from tiler.errors import (
    CorruptImage,
    ImageTooLarge,
    UnsupportedFormat,
)
from tiler.readers import open_image, sniff_format
from tiler.synthetic import write_synthetic_tiff


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    path.write_bytes(b"")
    with pytest.raises(UnsupportedFormat, match="empty") as caught:
        open_image(path)
    assert "TIFF, PNG or JPEG" in str(caught.value)


def test_pdf_renamed_to_tif(tmp_path: Path) -> None:
    path = tmp_path / "report.tif"
    path.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n")
    with pytest.raises(UnsupportedFormat) as caught:
        open_image(path)
    message = str(caught.value)
    assert message.startswith("not a TIFF, PNG or JPEG file")
    assert "%PDF" in message


def test_extension_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "actually_a_png.tif"
    Image.fromarray(numpy.zeros((4, 5), numpy.uint8)).save(path, format="PNG")
    assert sniff_format(path) == "PNG"
    with open_image(path) as source:
        assert source.format_name == "PNG"


def test_sniff_format_without_decoding(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.7\n")
    (tmp_path / "stub.tif").write_bytes(b"II*\x00\x08")  # a header alone is enough to sniff
    assert sniff_format(tmp_path / "empty") is None
    assert sniff_format(tmp_path / "doc.pdf") is None
    assert sniff_format(tmp_path / "stub.tif") == "TIFF"


@pytest.fixture
def tiled_tiff(tmp_path: Path) -> Path:
    return Path(write_synthetic_tiff(tmp_path / "whole.tif", (512, 512), tile=128))


def test_truncated_tiff_data(tiled_tiff: Path, tmp_path: Path) -> None:
    data = tiled_tiff.read_bytes()
    path = tmp_path / "truncated.tif"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImage, match="truncated"):
        open_image(path)


def test_tiff_truncated_inside_its_header(tiled_tiff: Path, tmp_path: Path) -> None:
    path = tmp_path / "stub.tif"
    path.write_bytes(tiled_tiff.read_bytes()[:12])
    with pytest.raises(CorruptImage) as caught:
        open_image(path)
    assert str(caught.value).startswith("cannot read TIFF")


def test_tiff_with_garbage_tile_data(tiled_tiff: Path, tmp_path: Path) -> None:
    data = bytearray(tiled_tiff.read_bytes())
    data[-20000:] = b"\x00" * 20000  # overwrite the last tiles' zlib streams
    path = tmp_path / "garbage.tif"
    path.write_bytes(bytes(data))
    with open_image(path) as source, pytest.raises(CorruptImage, match="cannot decode TIFF"):
        source.read_region(0, 512, 0, 512)


def test_png_over_max_pixels(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(numpy.zeros((100, 120), numpy.uint8)).save(path)
    with pytest.raises(ImageTooLarge) as caught:
        open_image(path, max_pixels=5000)
    assert str(caught.value) == (
        "image has 12000 pixels (120 x 100), limit is 5000 (TILESCOPE_MAX_IMAGE_PIXELS)"
    )


def test_png_over_pillows_own_limit_is_governed_by_max_pixels(tmp_path: Path) -> None:
    # Pillow warns above ~89 Mpx on its own; the reader replaces that check with max_pixels.
    path = tmp_path / "wide.png"
    Image.new("1", (20000, 5000)).save(path)  # 100 Mpx, tiny on disk
    with pytest.raises(ImageTooLarge, match="100000000 pixels"):
        open_image(path, max_pixels=50_000_000)


def test_tiff_over_max_pixels(tiled_tiff: Path) -> None:
    with pytest.raises(ImageTooLarge, match="262144 pixels"):
        open_image(tiled_tiff, max_pixels=1000)


def test_truncated_png(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    rng = numpy.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (200, 200), dtype=numpy.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:5000])
    with open_image(path) as source, pytest.raises(CorruptImage, match="cannot decode PNG"):
        source.read_region(0, 200, 0, 200)


def test_png_with_broken_header(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(CorruptImage, match="cannot read PNG header"):
        open_image(path)


def test_3d_tiff_stack_opens_as_a_volume(tmp_path: Path) -> None:
    import tifffile

    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, numpy.zeros((4, 16, 16), numpy.uint8), imagej=True,
                     metadata={"axes": "ZYX"})
    with open_image(path) as source:  # tiler.readers.tiff_stack, not TiffReader
        assert source.format_name == "TIFF-STACK" and source.shape == (1, 4, 16, 16)


def test_many_pages_are_a_stack_not_channels(tmp_path: Path) -> None:
    import tifffile

    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as writer:
        for _ in range(40):
            writer.write(numpy.zeros((8, 8), numpy.uint8), metadata=None)
    with open_image(path) as source:
        assert source.format_name == "TIFF-STACK" and source.shape == (1, 40, 8, 8)
