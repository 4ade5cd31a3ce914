"""A cheap walk along a TIFF's chain of image directories (IFDs): loops and truncation caught."""

from __future__ import annotations

import os
import struct

from tiler.errors import CorruptImage, UnsupportedFormat

__all__ = ["MAX_IFDS", "check_ifd_chain"]

#: More image directories than this are refused (no real image has that many pages).
MAX_IFDS = 1_000_000

#: (magic number, offset size, entry count size, entry size) of classic TIFF and BigTIFF.
_LAYOUTS = {42: ("I", "H", 12), 43: ("Q", "Q", 20)}


def check_ifd_chain(path: str | os.PathLike) -> int:
    """Follow the IFD chain from the header and return how many IFDs it has.

    Raises CorruptImage for a file too short for its header, an IFD that lies past the end of
    the file, or a chain that loops back on itself (tifffile would silently stop there), and
    UnsupportedFormat for a header that is not TIFF.  Reads a few bytes per IFD, no pixels.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        header = handle.read(16)
        if len(header) < 8:
            raise CorruptImage(f"cannot read TIFF structure: the file has only {size} bytes, "
                               "too few for a TIFF header")
        order = {b"II": "<", b"MM": ">"}.get(header[:2])
        if order is None:
            raise UnsupportedFormat(f"not a TIFF file (starts with {header[:4]!r})")
        (magic,) = struct.unpack(order + "H", header[2:4])
        if magic not in _LAYOUTS:
            raise UnsupportedFormat(f"not a TIFF file (version number {magic})")
        offset_code, count_code, entry_size = _LAYOUTS[magic]
        offset_size, count_size = struct.calcsize(offset_code), struct.calcsize(count_code)
        first = 4 if magic == 42 else 8
        if len(header) < first + offset_size:
            raise CorruptImage("cannot read TIFF structure: the BigTIFF header is cut short")
        (offset,) = struct.unpack(order + offset_code, header[first:first + offset_size])
        seen: set[int] = set()
        while offset:
            if offset in seen:
                raise CorruptImage(
                    f"cannot read TIFF structure: the chain of image directories loops back "
                    f"to the directory at byte {offset} (a cyclic IFD chain); the file is damaged"
                )
            if len(seen) >= MAX_IFDS:
                raise CorruptImage(f"cannot read TIFF structure: more than {MAX_IFDS} "
                                   "image directories")
            seen.add(offset)
            handle.seek(offset)
            raw_count = handle.read(count_size)
            if len(raw_count) < count_size:
                raise _truncated(offset, size)
            (count,) = struct.unpack(order + count_code, raw_count)
            next_at = offset + count_size + count * entry_size
            if next_at + offset_size > size:
                raise _truncated(offset, size)
            handle.seek(next_at)
            (offset,) = struct.unpack(order + offset_code, handle.read(offset_size))
    return len(seen)


def _truncated(offset: int, size: int) -> CorruptImage:
    return CorruptImage(f"cannot read TIFF structure: the image directory at byte {offset} runs "
                        f"past the end of the file ({size} bytes); the file is truncated")
