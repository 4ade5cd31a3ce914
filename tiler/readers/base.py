"""The ImageSource interface every format reader implements: shape, metadata and lazy regions."""

from __future__ import annotations

import abc
import os
from typing import ClassVar

import numpy

from tiler.errors import ImageTooLarge, OutOfRange

__all__ = [
    "RGB_CHANNEL_NAMES",
    "ImageSource",
    "check_pixel_limit",
    "default_channel_names",
    "pixel_size_from_resolution",
]

#: Channel names of a colour (RGB) image; the pyramid writer colours such channels R, G, B.
RGB_CHANNEL_NAMES = ["red", "green", "blue"]

#: Micrometres per resolution unit, for units stated in inches, centimetres, ... .
MICROMETERS_PER_UNIT = {"inch": 25400.0, "centimeter": 10000.0, "millimeter": 1000.0,
                        "micrometer": 1.0}

#: Resolutions (pixels per inch) that image software writes by default; they mean "unknown".
PLACEHOLDER_DPI = {1, 72, 96}


def default_channel_names(count: int, *, rgb: bool = False) -> list[str]:
    """Channel names for ``count`` channels: red/green/blue for colour images, else numbered."""
    if rgb and count == 3:
        return list(RGB_CHANNEL_NAMES)
    return [f"channel {index}" for index in range(count)]


def pixel_size_from_resolution(
    x_per_unit: float, y_per_unit: float, unit: str
) -> tuple[tuple[float, float] | None, str | None]:
    """(y, x) pixel size in micrometres from pixels-per-unit values, or (None, None) if unknown.

    ``unit`` is a key of MICROMETERS_PER_UNIT; the 72/96 dpi placeholders count as unknown.
    """
    scale = MICROMETERS_PER_UNIT.get(unit)
    if scale is None or not (x_per_unit > 0 and y_per_unit > 0):
        return None, None
    if unit == "inch" and {round(x_per_unit), round(y_per_unit)} <= PLACEHOLDER_DPI:
        return None, None
    return (_round_significant(scale / y_per_unit), _round_significant(scale / x_per_unit)), (
        "micrometer"
    )


def _round_significant(value: float, digits: int = 9) -> float:
    """Drop the noise that rational tag values add (0.32500000001 -> 0.325)."""
    return float(f"{value:.{digits}g}")


def check_pixel_limit(height: int, width: int, max_pixels: int) -> None:
    """Raise ImageTooLarge when a height x width plane exceeds ``max_pixels``."""
    pixels = int(height) * int(width)
    if pixels > max_pixels:
        raise ImageTooLarge(
            f"image has {pixels} pixels ({width} x {height}), limit is {max_pixels} "
            "(TILESCOPE_MAX_IMAGE_PIXELS)"
        )


class OpenedSource:
    """What every source shares, 2D or 3D: channel count, context manager, close and repr."""

    format_name: ClassVar[str] = ""
    shape: tuple[int, ...]
    dtype: numpy.dtype

    @property
    def channels(self) -> int:
        """Number of channels."""
        return self.shape[0]

    def close(self) -> None:
        """Release files and caches held by the reader (nothing by default)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.format_name} shape={self.shape} "
            f"dtype={numpy.dtype(self.dtype).name}>"
        )


class ImageSource(OpenedSource, abc.ABC):
    """A 2D image, possibly multi-channel, that can be read region by region.

    Subclasses set the attributes below in ``__init__`` and implement ``_read`` (and ``close``
    when they hold resources).  A reader registers itself by being listed in
    ``tiler.readers.READERS``; ``sniff`` decides from the first bytes of a file whether the
    class can open it.  Data is always presented channel-first: ``(c, y, x)``.
    """

    #: Short format name shown to users, e.g. "TIFF".
    format_name: ClassVar[str] = ""

    shape: tuple[int, int, int]
    dtype: numpy.dtype
    channel_names: list[str]
    pixel_size: tuple[float, float] | None
    unit: str | None

    @classmethod
    @abc.abstractmethod
    def sniff(cls, header: bytes) -> bool:
        """Return True when ``header`` (the file's first bytes) looks like this format."""

    @abc.abstractmethod
    def __init__(self, path: str | os.PathLike, *, max_pixels: int) -> None:
        """Open ``path`` and read its metadata; raise CorruptImage or ImageTooLarge."""

    @abc.abstractmethod
    def _read(self, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        """Return the (c, y1 - y0, x1 - x0) block; bounds are already checked."""

    def read_region(self, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        """Return pixels [y0:y1, x0:x1] of every channel as a (c, h, w) array.

        Only the part of the file the region needs is read and decoded.
        """
        _, height, width = self.shape
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise OutOfRange(
                f"region y {y0}:{y1}, x {x0}:{x1} is outside the image "
                f"(valid: 0 <= y0 < y1 <= {height}, 0 <= x0 < x1 <= {width})"
            )
        return self._read(int(y0), int(y1), int(x0), int(x1))
