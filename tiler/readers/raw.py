"""Raw volumes: headerless voxels of a declared shape, type and byte order, memory-mapped."""

from __future__ import annotations

import os
from typing import ClassVar

import numpy

from tiler.errors import CorruptImage
from tiler.readers.volume_base import VolumeSource, check_volume_dtype

__all__ = ["BYTE_ORDERS", "RawVolumeReader", "open_raw_volume"]

#: Accepted byte-order names and their numpy prefixes.
BYTE_ORDERS = {"little": "<", "big": ">"}


class RawVolumeReader(VolumeSource):
    """A file of z * y * x voxels, x fastest, with no header; one channel.

    The file is memory-mapped for each read and the map dropped right after, so touched pages
    do not pile up in the process's resident memory.
    """

    format_name: ClassVar[str] = "RAW"

    def __init__(self, path: str | os.PathLike, shape_zyx: tuple[int, int, int],
                 dtype: str | numpy.dtype, byteorder: str = "little", *,
                 voxel_size: tuple[float, float, float] | None = None,
                 unit: str = "micrometer") -> None:
        self.path = os.fspath(path)
        if byteorder not in BYTE_ORDERS:
            raise ValueError(f"byteorder must be one of {sorted(BYTE_ORDERS)}, not {byteorder!r}")
        if len(shape_zyx) != 3 or min(shape_zyx) < 1:
            raise ValueError(f"shape_zyx must be three positive sizes, not {shape_zyx}")
        self.dtype = check_volume_dtype(numpy.dtype(dtype), "raw volume")
        self._file_dtype = self.dtype.newbyteorder(BYTE_ORDERS[byteorder])
        expected = int(numpy.prod(shape_zyx, dtype=numpy.int64)) * self.dtype.itemsize
        actual = os.path.getsize(self.path)
        if actual != expected:
            depth, height, width = shape_zyx
            raise CorruptImage(
                f"the raw file has {actual} bytes but {width} x {height} x {depth} voxels of "
                f"{self.dtype.name} need {expected} bytes; check the declared shape and type"
            )
        self._shape_zyx = tuple(int(size) for size in shape_zyx)
        self.shape = (1, *self._shape_zyx)  # type: ignore[assignment]
        self.channel_names = ["channel 0"]
        self.voxel_size = (tuple(float(v) for v in voxel_size)  # type: ignore[assignment]
                           if voxel_size else None)
        self.unit = unit if voxel_size else None
        self.metadata = {}

    def _read_block(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        mapped = numpy.memmap(self.path, dtype=self._file_dtype, mode="r", shape=self._shape_zyx)
        block = numpy.array(mapped[z0:z1, y0:y1, x0:x1], dtype=self.dtype)
        del mapped  # the last reference: unmapped here
        return block[numpy.newaxis]


def open_raw_volume(path: str | os.PathLike, shape_zyx: tuple[int, int, int],
                    dtype: str | numpy.dtype, byteorder: str = "little", *,
                    voxel_size: tuple[float, float, float] | None = None,
                    unit: str = "micrometer") -> RawVolumeReader:
    """Open a raw volume of ``shape_zyx`` voxels of ``dtype`` stored in ``byteorder``.

    Raises CorruptImage when the file size is not exactly the declared voxels' size, and
    ValueError for a bad declaration.  ``voxel_size`` (z, y, x) is in ``unit``.
    """
    return RawVolumeReader(path, shape_zyx, dtype, byteorder, voxel_size=voxel_size, unit=unit)
