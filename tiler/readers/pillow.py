"""PNG and JPEG readers built on Pillow; the pixel limit is checked before anything is decoded."""

from __future__ import annotations

import os
import threading
from typing import ClassVar

import numpy
from PIL import ImageFile, JpegImagePlugin, PngImagePlugin

from tiler.errors import CorruptImage, UnsupportedFormat
from tiler.readers.base import (
    ImageSource,
    check_pixel_limit,
    default_channel_names,
    pixel_size_from_resolution,
)

__all__ = ["JpegReader", "PillowReader", "PngReader"]

#: Pillow modes handed out as they are, and the numpy dtype each becomes.
_NATIVE_MODES: dict[str, str] = {
    "L": "uint8",
    "I;16": "uint16",
    "RGB": "uint8",
    "I": "int32",
    "F": "float32",
}

#: Pillow modes converted on decode, and the mode they become.
_CONVERTED_MODES: dict[str, str] = {
    "1": "L",
    "LA": "L",
    "La": "L",
    "P": "RGB",
    "PA": "RGB",
    "RGBA": "RGB",
    "RGBa": "RGB",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "I;16B": "I;16",
    "I;16L": "I;16",
}


class PillowReader(ImageSource):
    """Shared reader for formats Pillow decodes in one piece (small enough by the pixel limit).

    The image is opened through the format's plugin class directly, so Pillow's own global
    decompression-bomb check is bypassed in favour of ``max_pixels``, which is checked from
    the header before decoding.  The first ``read_region`` decodes the whole image once.
    """

    #: Magic-byte prefixes of the format.
    magic: ClassVar[tuple[bytes, ...]] = ()
    #: Pillow plugin class that parses the header.
    image_class: ClassVar[type[ImageFile.ImageFile]]

    @classmethod
    def sniff(cls, header: bytes) -> bool:
        return any(header.startswith(prefix) for prefix in cls.magic)

    def __init__(self, path: str | os.PathLike, *, max_pixels: int) -> None:
        self.path = os.fspath(path)
        try:
            image = self.image_class(self.path)
        except (OSError, SyntaxError, ValueError) as error:
            raise CorruptImage(f"cannot read {self.format_name} header: {error}") from error
        try:
            width, height = image.size
            check_pixel_limit(height, width, max_pixels)
            self._mode = _CONVERTED_MODES.get(image.mode, image.mode)
            if self._mode not in _NATIVE_MODES:
                raise UnsupportedFormat(
                    f"{self.format_name} pixel mode {image.mode!r} is not supported"
                )
        except BaseException:
            image.close()
            raise
        self._image: ImageFile.ImageFile | None = image
        self._pixels: numpy.ndarray | None = None
        self._decode_lock = threading.Lock()
        channels = 3 if self._mode == "RGB" else 1
        self.channel_names = default_channel_names(channels, rgb=True)
        self.shape = (channels, height, width)
        self.dtype = numpy.dtype(_NATIVE_MODES[self._mode])
        self.pixel_size, self.unit = _pixel_size_from_dpi(image.info.get("dpi"))

    def _decode(self) -> numpy.ndarray:
        with self._decode_lock:  # pyramid threads may ask for the first regions at once
            if self._pixels is None:
                self._pixels = self._decode_image()
            return self._pixels

    def _decode_image(self) -> numpy.ndarray:
        if self._image is None:
            raise ValueError("reader is closed")
        try:
            image = self._image
            if image.mode != self._mode:
                image = image.convert(self._mode)
            else:
                image.load()
            pixels = numpy.asarray(image)
        except (OSError, SyntaxError, ValueError) as error:
            raise CorruptImage(f"cannot decode {self.format_name} data: {error}") from error
        self._image.close()
        self._image = None
        pixels = pixels[numpy.newaxis] if pixels.ndim == 2 else numpy.moveaxis(pixels, -1, 0)
        return numpy.ascontiguousarray(pixels, dtype=self.dtype)

    def _read(self, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        return self._decode()[:, y0:y1, x0:x1].copy()

    def close(self) -> None:
        if self._image is not None:
            self._image.close()
            self._image = None
        self._pixels = None


def _pixel_size_from_dpi(dpi: object) -> tuple[tuple[float, float] | None, str | None]:
    """Pixel size in micrometres from Pillow's (x, y) dots-per-inch pair, if it means anything."""
    if not isinstance(dpi, tuple) or len(dpi) != 2:
        return None, None
    try:
        return pixel_size_from_resolution(float(dpi[0]), float(dpi[1]), "inch")
    except (TypeError, ValueError):
        return None, None


class PngReader(PillowReader):
    """PNG: grey, grey+alpha, palette, RGB, RGBA (alpha dropped), 16-bit grey."""

    format_name = "PNG"
    magic = (b"\x89PNG\r\n\x1a\n",)
    image_class = PngImagePlugin.PngImageFile


class JpegReader(PillowReader):
    """JPEG: grey, RGB, CMYK/YCbCr converted to RGB."""

    format_name = "JPEG"
    magic = (b"\xff\xd8\xff",)
    image_class = JpegImagePlugin.JpegImageFile

