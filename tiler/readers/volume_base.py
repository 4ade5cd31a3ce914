"""The VolumeSource interface of every 3D reader: (c, z, y, x) shape, metadata, lazy blocks."""

from __future__ import annotations

import abc
import re
from typing import ClassVar

import numpy

from tiler.errors import ImageTooLarge, OutOfRange, UnsupportedFormat
from tiler.readers.base import OpenedSource, check_pixel_limit

__all__ = [
    "MAX_SLICES",
    "SUPPORTED_VOLUME_DTYPES",
    "VolumeSource",
    "check_volume_limit",
    "check_volume_dtype",
    "natural_sort_key",
]

#: Most z slices a volume may have (a guard against headers that claim absurd depths).
MAX_SLICES = 1 << 20

#: Pixel types a volume may have; everything else is refused with a reason.
SUPPORTED_VOLUME_DTYPES = {"uint8", "uint16", "uint32", "int8", "int16", "int32", "float32",
                           "float64"}


def natural_sort_key(name: str) -> list[str | int]:
    """Sort key that orders digit runs by value: "slice2" before "slice10" (case-insensitive)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def check_volume_limit(depth: int, height: int, width: int, max_pixels: int) -> None:
    """Raise ImageTooLarge when one z plane exceeds ``max_pixels`` or there are too many slices.

    For volumes ``max_pixels`` (the same setting as for 2D images) bounds each z plane; the
    depth is bounded by MAX_SLICES.  Volumes are streamed, so their total size is not limited.
    """
    check_pixel_limit(height, width, max_pixels)
    if depth > MAX_SLICES:
        raise ImageTooLarge(f"volume has {depth} slices, limit is {MAX_SLICES}")
    if min(depth, height, width) < 1:
        raise UnsupportedFormat(f"volume of {depth} x {height} x {width} voxels is empty")


def check_volume_dtype(dtype: numpy.dtype, what: str) -> numpy.dtype:
    """Native-byte-order ``dtype`` if volumes support it, else UnsupportedFormat naming ``what``."""
    dtype = numpy.dtype(dtype)
    if dtype.name not in SUPPORTED_VOLUME_DTYPES:
        raise UnsupportedFormat(f"{what} pixel type {dtype} is not supported")
    return dtype.newbyteorder("=")


class VolumeSource(OpenedSource, abc.ABC):
    """A 3D volume, possibly multi-channel, read block by block: always ``(c, z, y, x)``.

    Subclasses set the attributes below in ``__init__`` and implement ``_read_block`` (and
    ``close`` when they hold resources).  ``voxel_size`` is the (z, y, x) size of a voxel in
    ``unit`` (None when unknown); ``metadata`` holds acquisition fields worth keeping on the
    dataset (DICOM Modality, StudyDate, ...), empty when the format has none.
    """

    #: Short format name shown to users, e.g. "DICOM".
    format_name: ClassVar[str] = ""
    #: False when any read decodes whole slices (the writer then reads wide blocks).
    random_access: bool = True

    shape: tuple[int, int, int, int]
    dtype: numpy.dtype
    channel_names: list[str]
    voxel_size: tuple[float, float, float] | None
    unit: str | None
    metadata: dict[str, str]

    @classmethod
    def sniff_path(cls, path: str, head: bytes) -> str | None:
        """Format name when this reader opens ``path`` (``head``: its first bytes, b"" for a
        folder), else None.  Looks at names and first bytes only; decodes nothing."""
        return None

    @classmethod
    def open(cls, path: str, *, max_pixels: int) -> VolumeSource:
        """Open ``path`` (after ``sniff_path`` said yes)."""
        return cls(path, max_pixels=max_pixels)  # type: ignore[call-arg]

    @abc.abstractmethod
    def _read_block(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        """Return the (c, z1 - z0, y1 - y0, x1 - x0) block; bounds are already checked."""

    def read_block(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        """Voxels [z0:z1, y0:y1, x0:x1] of every channel as a (c, dz, dy, dx) array.

        Only the slices (and, where the format allows, the parts of slices) the block needs are
        read and decoded.  Safe to call from several threads at once.
        """
        _, depth, height, width = self.shape
        if not (0 <= z0 < z1 <= depth and 0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise OutOfRange(
                f"block z {z0}:{z1}, y {y0}:{y1}, x {x0}:{x1} is outside the volume (valid: "
                f"0 <= z0 < z1 <= {depth}, 0 <= y0 < y1 <= {height}, 0 <= x0 < x1 <= {width})"
            )
        block = self._read_block(int(z0), int(z1), int(y0), int(y1), int(x0), int(x1))
        expected = (self.shape[0], z1 - z0, y1 - y0, x1 - x0)
        if block.shape != expected:  # a reader bug, not bad input
            raise AssertionError(f"{type(self).__name__} returned {block.shape}, not {expected}")
        return block

    @property
    def pixel_size(self) -> tuple[float, float] | None:
        """(y, x) voxel size, as ImageSource.pixel_size (None when unknown)."""
        return None if self.voxel_size is None else (self.voxel_size[1], self.voxel_size[2])
