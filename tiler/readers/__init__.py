"""Format readers: sniff a file's magic bytes and open it with the matching ImageSource class."""

from __future__ import annotations

import os

from tiler.errors import UnsupportedFormat
from tiler.readers.base import ImageSource
from tiler.readers.pillow import JpegReader, PillowReader, PngReader
from tiler.readers.tiff import TiffReader

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "HEADER_BYTES",
    "READERS",
    "ImageSource",
    "JpegReader",
    "PillowReader",
    "PngReader",
    "TiffReader",
    "open_image",
    "sniff_format",
]

#: Largest image (height x width) accepted by default: 2**34 pixels, e.g. 131072 x 131072.
DEFAULT_MAX_PIXELS = 2**34

#: How many leading bytes are handed to each reader's ``sniff``.
HEADER_BYTES = 32

#: Reader classes tried in order; a new format is a new class appended here.
READERS: list[type[ImageSource]] = [TiffReader, PngReader, JpegReader]


def _format_names() -> str:
    names = [reader.format_name for reader in READERS]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def open_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageSource:
    """Open ``path`` with the reader whose magic bytes match (the file extension is ignored).

    Raises UnsupportedFormat, CorruptImage or ImageTooLarge (all TilerError subclasses), and
    OSError when the file cannot be read at all.
    """
    with open(path, "rb") as handle:
        header = handle.read(HEADER_BYTES)
    if not header:
        raise UnsupportedFormat(f"the file is empty (0 bytes); expected a {_format_names()} file")
    for reader in READERS:
        if reader.sniff(header):
            return reader(path, max_pixels=max_pixels)
    raise UnsupportedFormat(f"not a {_format_names()} file (starts with {header[:8]!r})")


def sniff_format(path: str | os.PathLike) -> str | None:
    """Format name of the reader whose magic bytes match the file, or None; decodes nothing."""
    with open(path, "rb") as handle:
        header = handle.read(HEADER_BYTES)
    return next((reader.format_name for reader in READERS if header and reader.sniff(header)), None)
