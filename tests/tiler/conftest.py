"""Shared tiler test fixtures: sample files of every readable kind, and in-memory sources."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy
import pytest
from PIL import Image

from tiler.readers.base import ImageSource
from tiler.synthetic import synthetic_image, write_synthetic_tiff

#: Size of the sample files: not a multiple of the tile size, so edge tiles are partial.
SAMPLE_SHAPE = (300, 437)


@dataclass
class SampleFile:
    """A file written for a test, the pixels it must read back as, and how exactly."""

    path: Path
    expected: numpy.ndarray  # (c, y, x)
    format_name: str
    tolerance: float = 0.0  # mean absolute error allowed (lossy formats)


def _tiff(**options) -> Callable[[Path], SampleFile]:
    def make(folder: Path) -> SampleFile:
        dtype = options.get("dtype", "uint16")
        channels = options.get("channels", 1)
        path = folder / "sample.tif"
        write_synthetic_tiff(path, SAMPLE_SHAPE, **options)
        return SampleFile(path, synthetic_image(SAMPLE_SHAPE, dtype, channels), "TIFF")
    return make


def _pillow(fmt: str, mode: str, suffix: str) -> Callable[[Path], SampleFile]:
    def make(folder: Path) -> SampleFile:
        if mode == "I;16":
            pixels = synthetic_image(SAMPLE_SHAPE, "uint16")
            image = Image.fromarray(pixels[0])
        else:
            channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
            pixels = synthetic_image(SAMPLE_SHAPE, "uint8", channels)
            image = Image.fromarray(pixels[0] if channels == 1 else numpy.moveaxis(pixels, 0, -1))
            pixels = pixels[:3]  # RGBA reads back as RGB
        path = folder / f"sample{suffix}"
        image.save(path, format=fmt, **({"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}))
        tolerance = 3.0 if fmt == "JPEG" else 0.0
        return SampleFile(path, pixels, "JPEG" if fmt == "JPEG" else fmt, tolerance)
    return make


#: Every kind of file the readers must handle, by a readable id.
SAMPLE_MAKERS: dict[str, Callable[[Path], SampleFile]] = {
    "tiff-tiled-uint16": _tiff(tile=256),
    "tiff-striped-uint16": _tiff(tile=None),
    "tiff-striped-uncompressed": _tiff(tile=None, compression=None),
    "bigtiff-tiled-uint16": _tiff(tile=256, bigtiff=True),
    "tiff-striped-uncompressed-big-endian": _tiff(tile=None, compression=None, byteorder=">"),
    "tiff-tiled-big-endian-int16": _tiff(dtype="int16", byteorder=">"),
    "tiff-tiled-uint8": _tiff(dtype="uint8", tile=128),
    "tiff-tiled-int16": _tiff(dtype="int16"),
    "tiff-striped-float32": _tiff(dtype="float32", tile=None),
    "tiff-rgb-interleaved": _tiff(dtype="uint8", channels=3, rgb=True),
    "tiff-rgb-striped": _tiff(dtype="uint8", channels=3, rgb=True, tile=None),
    "tiff-planar-3-channel": _tiff(channels=3),
    "tiff-planar-2-channel-striped": _tiff(channels=2, tile=None, dtype="float32"),
    "png-grey-8bit": _pillow("PNG", "L", ".png"),
    "png-grey-16bit": _pillow("PNG", "I;16", ".png"),
    "png-rgb": _pillow("PNG", "RGB", ".png"),
    "png-rgba": _pillow("PNG", "RGBA", ".png"),
    "jpeg-grey": _pillow("JPEG", "L", ".jpg"),
    "jpeg-rgb": _pillow("JPEG", "RGB", ".jpg"),
}


@pytest.fixture
def covered_formats(tmp_path: Path) -> set[str]:
    """Format names the sample files cover (checked against the reader registry)."""
    return {SAMPLE_MAKERS[name](tmp_path / name).format_name
            for name in ("tiff-tiled-uint8", "png-grey-8bit", "jpeg-grey")
            if (tmp_path / name).mkdir() is None}


@pytest.fixture(params=sorted(SAMPLE_MAKERS))
def sample_file(request: pytest.FixtureRequest, tmp_path: Path) -> SampleFile:
    """One sample file per reader case (the contract suite runs against each)."""
    return SAMPLE_MAKERS[request.param](tmp_path)


class ArraySource(ImageSource):
    """An in-memory ImageSource over a (c, y, x) array, for writer tests.

    ``fail_at`` makes read_region raise once a region starting at that (y0, x0) is read.
    """

    format_name = "ARRAY"

    @classmethod
    def sniff(cls, header: bytes) -> bool:
        return False

    def __init__(self, path: str | os.PathLike = "", *, max_pixels: int = 2**34,
                 data: numpy.ndarray | None = None, channel_names: list[str] | None = None,
                 pixel_size: tuple[float, float] | None = None, unit: str | None = None,
                 fail_at: tuple[int, int] | None = None) -> None:
        assert data is not None and data.ndim == 3
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.channel_names = channel_names or [f"channel {i}" for i in range(data.shape[0])]
        self.pixel_size, self.unit = pixel_size, unit
        self.fail_at = fail_at
        self.regions_read: list[tuple[int, int, int, int]] = []

    def _read(self, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        if self.fail_at == (y0, x0):
            raise RuntimeError("simulated read failure")
        self.regions_read.append((y0, y1, x0, x1))
        return self.data[:, y0:y1, x0:x1].copy()


@pytest.fixture(scope="session")
def array_source() -> type[ArraySource]:
    """The ArraySource class (build one with ``array_source(data=...)``)."""
    return ArraySource
