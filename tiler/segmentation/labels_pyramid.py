"""The label pyramid: final ids read block by block and written by the tiler's pyramid writers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy
import zarr

from tiler.errors import CorruptImage
from tiler.ome_zarr_format import NGFF_VERSION
from tiler.pyramid import write_pyramid
from tiler.pyramid_reader import Pyramid
from tiler.readers.base import ImageSource
from tiler.readers.volume_base import VolumeSource
from tiler.segmentation.blocks import ArrayReader, BlockPlan, Box
from tiler.volume_levels import plan_volume_levels
from tiler.volume_pyramid import write_volume_pyramid

__all__ = ["FinalLabels", "write_label_pyramid"]

#: Chunk sides tried, after the image's own, to plan a volume's levels exactly as its
#: pyramid's (the volume writer's ``chunk`` argument is not stored).
VOLUME_CHUNK_CANDIDATES = (64, 32, 128, 16, 256, 8, 512)
#: Shard side of 2D pyramids that are not sharded, in tiles.
DEFAULT_TILES_PER_SHARD = 8


class FinalLabels:
    """Final ids (uint32) of any box: provisional labels read from their array block by block
    and mapped through ``final`` (provisional id -> final id, 0 for dropped objects)."""

    def __init__(self, reader: ArrayReader, plan: BlockPlan, offsets: numpy.ndarray,
                 counts: numpy.ndarray, final: numpy.ndarray) -> None:
        self.reader, self.plan = reader, plan
        self.offsets, self.counts, self.final = offsets, counts, final

    def read(self, box: Box) -> numpy.ndarray:
        out = numpy.empty(tuple(high - low for low, high in box), dtype=numpy.uint32)
        for index, part in self.plan.blocks_in(box):
            start = int(self.offsets[index])
            lut = self.final[start:start + int(self.counts[index]) + 1].copy()
            lut[0] = 0
            target = tuple(slice(p_low - low, p_high - low) for (p_low, p_high), (low, _)
                           in zip(part, box, strict=True))
            out[target] = lut[self.reader.read(0, part)]
        return out


class _LabelImage(ImageSource):
    """FinalLabels of a 2D image as a one-channel ImageSource for write_pyramid."""

    format_name = "LABELS"

    @classmethod
    def sniff(cls, header: bytes) -> bool:
        return False

    def __init__(self, labels: FinalLabels, pixel_size: tuple[float, float],
                 unit: str | None) -> None:
        self.labels = labels
        self.shape = (1, *labels.plan.shape)
        self.dtype = numpy.dtype(numpy.uint32)
        self.channel_names = ["labels"]
        self.pixel_size, self.unit = pixel_size, unit

    def _read(self, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        return self.labels.read(((y0, y1), (x0, x1)))[numpy.newaxis]


class _LabelVolume(VolumeSource):
    """FinalLabels of a volume as a one-channel VolumeSource for write_volume_pyramid."""

    format_name = "LABELS"

    def __init__(self, labels: FinalLabels, voxel_size: tuple[float, float, float],
                 unit: str | None) -> None:
        self.labels = labels
        self.shape = (1, *labels.plan.shape)
        self.dtype = numpy.dtype(numpy.uint32)
        self.channel_names = ["labels"]
        self.voxel_size, self.unit, self.metadata = voxel_size, unit, {}

    def _read_block(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int
                    ) -> numpy.ndarray:
        return self.labels.read(((z0, z1), (y0, y1), (x0, x1)))[numpy.newaxis]


def write_label_pyramid(pyramid: Pyramid, dest: Path, labels: FinalLabels, *, threads: int,
                        memory_budget: int, source_image: str,
                        progress: Callable[[float, str], None] | None = None) -> Path:
    """Write ``labels`` as an NGFF label image at ``dest`` with exactly ``pyramid``'s levels,
    per-level scales, axes (a size-1 c axis), chunks and shard layout; nearest downsampling;
    ``image-label`` metadata whose ``source`` is ``source_image`` (a path relative to
    ``dest``).  RuntimeError if the levels came out different (a bug)."""
    image_label = {"version": NGFF_VERSION, "colors": [], "source": {"image": source_image}}
    first = pyramid.array(0)
    scale, unit = tuple(pyramid.metadata.scales[0]), pyramid.metadata.unit
    if pyramid.ndim == 2:
        tile = int(first.chunks[-1])
        shard = int(first.shards[-1]) if first.shards else tile * DEFAULT_TILES_PER_SHARD
        write_pyramid(_LabelImage(labels, scale, unit), dest, tile_size=tile, shard_size=shard,
                      threads=threads, progress=progress, downsample="nearest",
                      image_label=image_label, memory_budget=memory_budget)
    else:
        chunk, shard_chunks = _volume_layout(pyramid, first)
        write_volume_pyramid(_LabelVolume(labels, scale, unit), dest, chunk=chunk,
                             shard_chunks=shard_chunks, threads=threads, progress=progress,
                             memory_budget=memory_budget, downsample="nearest",
                             image_label=image_label)
    written = Pyramid.open(dest)
    if written.levels != pyramid.levels or written.metadata.scales != pyramid.metadata.scales:
        raise RuntimeError(f"label levels {written.levels} do not match the image's "
                           f"{pyramid.levels}")
    return dest


def _volume_layout(pyramid: Pyramid, first: zarr.Array) -> tuple[int, int]:
    """(chunk, shard_chunks) for which plan_volume_levels gives ``pyramid``'s levels and
    chunks (else just its levels); CorruptImage if no candidate does."""
    chunks = tuple(int(side) for side in first.chunks[1:])
    shards = tuple(int(side) for side in (first.shards or first.chunks)[1:])
    shard_chunks = max(1, max(s // c for s, c in zip(shards, chunks, strict=True)))
    scale = tuple(pyramid.metadata.scales[0])
    shape = tuple(pyramid.shape[1:])
    same_levels = None
    for chunk in dict.fromkeys((max(chunks[1:]), *VOLUME_CHUNK_CANDIDATES)):
        levels = plan_volume_levels(shape, scale, chunk=chunk, shard_chunks=shard_chunks)
        if [level.shape for level in levels] != pyramid.levels or [
                level.scale for level in levels] != [tuple(s) for s in pyramid.metadata.scales]:
            continue
        if levels[0].chunks == chunks:
            return chunk, shard_chunks
        same_levels = same_levels or chunk
    if same_levels is None:
        raise CorruptImage(f"cannot lay out labels like the volume {pyramid.path}: "
                           "its levels were not made by the tiler's volume writer")
    return same_levels, shard_chunks
