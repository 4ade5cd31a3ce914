"""Synthetic images of known objects (disks, balls) and their pyramids, for tests and benchmarks."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy

from tiler.pyramid import write_pyramid
from tiler.readers.base import ImageSource
from tiler.readers.volume_base import VolumeSource
from tiler.volume_pyramid import write_volume_pyramid

__all__ = ["ArrayImage", "ArrayVolume", "draw_objects", "grid_objects", "write_array_pyramid"]

#: An object: its centre ((z,) y, x, in voxels) and radius (voxels).
SyntheticObject = tuple[tuple[float, ...], float]


def draw_objects(shape: tuple[int, ...], objects: Sequence[SyntheticObject], *,
                 dtype: str = "uint8", background: int = 30, foreground: int = 200,
                 noise: int = 10, seed: int = 0) -> numpy.ndarray:
    """An image of ``shape`` ((y, x) or (z, y, x)): ``background``, disks or balls (voxels
    within ``radius`` of the centre) at ``foreground``, plus uniform noise in 0..``noise``."""
    image = numpy.full(shape, background, dtype=dtype)
    for centre, radius in objects:
        box = tuple(slice(max(0, math.floor(c - radius)), min(size, math.ceil(c + radius) + 1))
                    for c, size in zip(centre, shape, strict=True))
        grids = numpy.ogrid[box]
        distance = sum((grid - c) ** 2 for grid, c in zip(grids, centre, strict=True))
        image[box][distance <= radius * radius] = foreground
    if noise:
        rng = numpy.random.default_rng(seed)
        image += rng.integers(0, noise + 1, size=shape, dtype=image.dtype)
    return image


def grid_objects(shape: tuple[int, ...], radius: tuple[float, float], *, gap: int = 2,
                 fill: float = 1.0, seed: int = 0) -> list[SyntheticObject]:
    """Non-touching objects, one per cell of a grid of (2 * max radius + gap) cells with a
    random radius in ``radius`` and a random offset inside the cell; a share ``fill`` of the
    cells get one."""
    rng = numpy.random.default_rng(seed)
    low, high = radius
    cell = int(math.ceil(2 * high)) + gap
    counts = [max(1, size // cell) for size in shape]
    objects = []
    for position in itertools.product(*(range(count) for count in counts)):
        if rng.random() >= fill:
            continue
        size = float(rng.uniform(low, high))
        slack = (cell - gap) / 2 - size
        centre = tuple(float(p * cell + gap / 2 + (cell - gap) / 2 + rng.uniform(-slack, slack))
                       for p in position)
        objects.append((centre, size))
    return objects


class ArrayImage(ImageSource):
    """An in-memory (c, y, x) array as an ImageSource."""

    format_name = "ARRAY"

    @classmethod
    def sniff(cls, header: bytes) -> bool:
        return False

    def __init__(self, data: numpy.ndarray, pixel_size: tuple[float, float] | None = None,
                 unit: str | None = None) -> None:
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        self.channel_names = [f"channel {index}" for index in range(data.shape[0])]
        self.pixel_size, self.unit = pixel_size, unit

    def _read(self, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        return self.data[:, y0:y1, x0:x1].copy()


class ArrayVolume(VolumeSource):
    """An in-memory (c, z, y, x) array as a VolumeSource."""

    format_name = "ARRAY"

    def __init__(self, data: numpy.ndarray,
                 voxel_size: tuple[float, float, float] | None = None,
                 unit: str | None = None) -> None:
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        self.channel_names = [f"channel {index}" for index in range(data.shape[0])]
        self.voxel_size, self.unit, self.metadata = voxel_size, unit, {}

    def _read_block(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int
                    ) -> numpy.ndarray:
        return self.data[:, z0:z1, y0:y1, x0:x1].copy()


def write_array_pyramid(data: numpy.ndarray, dest: str | os.PathLike, *,
                        pixel_size: tuple[float, ...] | None = None, unit: str | None = None,
                        tile_size: int = 256, chunk: int = 64, threads: int = 1) -> Path:
    """Write ``data`` as a pyramid at ``dest``: an image if it is (y, x) or (c, y, x), a volume
    if it is (c, z, y, x); ``pixel_size`` is (y, x) or (z, y, x) in ``unit``."""
    dest = Path(dest)
    if data.ndim == 2:
        data = data[numpy.newaxis]
    if data.ndim == 3:
        write_pyramid(ArrayImage(data, pixel_size, unit), dest,  # type: ignore[arg-type]
                      tile_size=tile_size, threads=threads)
    else:
        write_volume_pyramid(ArrayVolume(data, pixel_size, unit), dest,  # type: ignore[arg-type]
                             chunk=chunk, threads=threads)
    return dest
