"""Format readers: sniff a path (folder, archive or file) and open it with the matching reader."""

from __future__ import annotations

import os
from typing import Protocol

from tiler.errors import TilerError, UnsupportedFormat
from tiler.readers.base import ImageSource
from tiler.readers.dicom import DicomReader
from tiler.readers.omezarr import OmeZarrReader
from tiler.readers.pillow import JpegReader, PillowReader, PngReader
from tiler.readers.raw import RawVolumeReader, open_raw_volume
from tiler.readers.stack import StackReader
from tiler.readers.tiff import TiffReader
from tiler.readers.tiff_stack import TiffStackReader
from tiler.readers.volume_base import VolumeSource
from tiler.safe_archive import is_zip

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "HEADER_BYTES",
    "PATH_READERS",
    "READERS",
    "DicomReader",
    "ImageSource",
    "JpegReader",
    "OmeZarrReader",
    "PillowReader",
    "PngReader",
    "RawVolumeReader",
    "StackReader",
    "TiffReader",
    "TiffStackReader",
    "VolumeSource",
    "open_image",
    "open_raw_volume",
    "sniff_format",
]

#: Largest image plane (height x width) accepted by default: 2**34 pixels, e.g. 131072 x 131072.
#: For volumes it bounds each z plane; the number of slices is bounded separately.
DEFAULT_MAX_PIXELS = 2**34

#: How many leading bytes are handed to each reader's ``sniff``.
HEADER_BYTES = 32
#: How many leading bytes path readers see (a DICOM file's "DICM" magic sits at byte 128).
PATH_HEADER_BYTES = 132


class PathReader(Protocol):
    """A reader found from a whole path: folders, archives, multi-frame or multi-page files."""

    format_name: str

    @classmethod
    def sniff_path(cls, path: str, head: bytes) -> str | None: ...

    @classmethod
    def open(cls, path: str, *, max_pixels: int) -> ImageSource | VolumeSource: ...


#: Path readers, asked in order before the single-image READERS: an OME-Zarr folder; a DICOM
#: file, or folder or zip holding DICOM; a folder or zip of image slices; a multi-page TIFF
#: stack (before TiffReader, which reads 2D TIFFs).
PATH_READERS: list[type[PathReader]] = [OmeZarrReader, DicomReader, StackReader,
                                        TiffStackReader]  # type: ignore[list-item]

#: Reader classes of single 2D image files, tried in order by their magic bytes.
READERS: list[type[ImageSource]] = [TiffReader, PngReader, JpegReader]


def _format_names() -> str:
    names = [reader.format_name for reader in READERS]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _head(path: str) -> bytes:
    """The first PATH_HEADER_BYTES of a file, b"" for a folder."""
    if os.path.isdir(path):
        return b""
    with open(path, "rb") as handle:
        return handle.read(PATH_HEADER_BYTES)


def open_image(path: str | os.PathLike, *,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageSource | VolumeSource:
    """Open ``path`` with the reader that recognises its content (extensions are ignored).

    Returns an ImageSource (c, y, x) for 2D images and a VolumeSource (c, z, y, x) for
    volumes: a folder or zip of TIFF/PNG/JPEG slices, a DICOM file, folder or zip, a
    multi-page TIFF stack, or an OME-Zarr folder with z slices.  ``max_pixels`` bounds one
    image plane.  Raises UnsupportedFormat, CorruptImage or ImageTooLarge (TilerError
    subclasses; UnsafeArchive for zips and folders reaching outside themselves), and OSError
    when the path cannot be read at all.
    """
    path = os.fspath(path)
    head = _head(path)
    if not head and not os.path.isdir(path):
        raise UnsupportedFormat(f"the file is empty (0 bytes); expected a {_format_names()} file")
    for reader in PATH_READERS:
        if reader.sniff_path(path, head):
            return reader.open(path, max_pixels=max_pixels)
    if os.path.isdir(path) or is_zip(head):
        # nothing recognised inside: the stack reader says what the folder or zip holds
        return StackReader(path, max_pixels=max_pixels)
    for image_reader in READERS:
        if image_reader.sniff(head[:HEADER_BYTES]):
            return image_reader(path, max_pixels=max_pixels)
    raise UnsupportedFormat(f"not a {_format_names()} file (starts with {head[:8]!r})")


def sniff_format(path: str | os.PathLike) -> str | None:
    """Format name of the reader that would open ``path`` (file or folder), or None.

    Looks at names and first bytes only, decoding no pixels: e.g. "TIFF", "TIFF-STACK", "PNG",
    "DICOM", "STACK" (folder of slices), "ZIP-STACK", "OME-ZARR".  A zip or folder that cannot
    be listed safely (``../`` entries, links, a zip bomb) gives "ZIP" or "FOLDER", so that it
    is kept and opening it reports why; one with nothing readable in it gives None.
    """
    path = os.fspath(path)
    head = _head(path)
    try:
        for reader in PATH_READERS:
            name = reader.sniff_path(path, head)
            if name:
                return name
    except TilerError:
        return "FOLDER" if os.path.isdir(path) else "ZIP"
    header = head[:HEADER_BYTES]
    return next((reader.format_name for reader in READERS if header and reader.sniff(header)), None)
