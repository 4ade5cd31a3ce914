"""One entry point for any source: a 2D image becomes a 2D pyramid, a volume a 3D one."""

from __future__ import annotations

import os
from collections.abc import Callable

from tiler.pyramid import PyramidSummary, write_pyramid
from tiler.readers.base import ImageSource
from tiler.readers.volume_base import VolumeSource
from tiler.volume_pyramid import write_volume_pyramid

#: Default memory budget of a 3D conversion, in bytes.
DEFAULT_VOLUME_MEMORY_BUDGET = 1 << 30


def build_pyramid(source: ImageSource | VolumeSource, dest: str | os.PathLike, *, tile_size: int = 256,
                  progress: Callable[[float, str], None] | None = None, name: str | None = None,
                  memory_budget: int = DEFAULT_VOLUME_MEMORY_BUDGET, threads: int | None = None,
                  scheduler: str | None = None) -> PyramidSummary:
    """Write the OME-Zarr pyramid of `source` to `dest` (atomically), 2D or 3D as the source is.

    `scheduler` (a dask.distributed address) runs the work on that cluster, whose workers must
    see the source file and `dest` at the same paths (see write_pyramid, write_volume_pyramid).
    """
    if isinstance(source, VolumeSource):
        return write_volume_pyramid(source, dest, progress=progress, name=name, threads=threads,
                                    memory_budget=memory_budget, scheduler=scheduler)
    return write_pyramid(source, dest, tile_size=tile_size, progress=progress, name=name, threads=threads,
                         scheduler=scheduler)
