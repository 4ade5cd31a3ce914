"""An opened OME-Zarr pyramid, 2D (c, y, x) or 3D (c, z, y, x): metadata, plane geometry, chunk-cached reads."""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Sequence
from pathlib import Path

import numpy
import zarr

from tiler.chunk_cache import default_chunk_cache, read_chunked
from tiler.display import default_colors
from tiler.errors import CorruptImage, InvalidParameter, OutOfRange
from tiler.ome_zarr_format import ImageMetadata, VolumeMetadata, parse_pyramid_attrs
from tiler.readers.base import default_channel_names
from tiler.shard_reader import ShardedArrayReader, open_shard_reader
from tiler.storage import Location, as_location

__all__ = ["PLANES", "VOLUME_TILE_SIZE", "Pyramid"]

#: Planes a volume can be cut along; a 2D image has only "xy".
PLANES = ("xy", "xz", "yz")
#: For each plane, the (z, y, x) axes of its rows and columns and of its normal (the slice axis).
PLANE_AXES = {"xy": (1, 2, 0), "xz": (0, 2, 1), "yz": (0, 1, 2)}
#: Tile side of volumes (a multiple of the chunk side near this): small 3D chunks would
#: otherwise make many tiny tile requests.
VOLUME_TILE_SIZE = 256
_AXIS_NAMES = "zyx"
#: Read chunks of our own shard layout directly (tiler.shard_reader) rather than through zarr;
#: False forces zarr's read path everywhere (for tests and comparisons).
FAST_SHARD_READS = True


class Pyramid:
    """An opened OME-Zarr pyramid: metadata read once, level arrays kept open for reading.

    ``ndim`` is 2 for images and 3 for volumes.  ``shape`` and ``dtype`` are level 0's;
    ``levels`` are (height, width) per level for images and (z, y, x) for volumes.  Also
    ``channel_names``, display ``windows`` [(start, end)] and ``colors`` (hex) per channel,
    ``pixel_size`` (y, x), ``voxel_size`` (z, y, x; None for images or when unknown), ``unit``
    and ``tile_size``.  Reads go chunk by chunk through the default ChunkCache.
    """

    def __init__(self, path: Path | Location, metadata: ImageMetadata | VolumeMetadata,
                 arrays: list[zarr.Array], *, tile_size: int | None = None) -> None:
        self.path = path
        self.metadata = metadata
        self._arrays = arrays
        first = arrays[0]
        self.ndim = first.ndim - 1
        self.shape: tuple[int, ...] = tuple(int(side) for side in first.shape)
        self.dtype = numpy.dtype(first.dtype)
        self.levels: list[tuple[int, ...]] = [tuple(int(s) for s in a.shape[1:]) for a in arrays]
        chunk = int(first.chunks[-1])
        if self.ndim == 3:
            tile_size = tile_size or max(chunk, VOLUME_TILE_SIZE // chunk * chunk)
        self.tile_size = int(tile_size or chunk)
        channels = self.shape[0]
        if len(metadata.channels) == channels:
            self.channel_names = [c.label for c in metadata.channels]
            self.windows = [(c.start, c.end) for c in metadata.channels]
            self.colors = [c.color for c in metadata.channels]
        else:  # no usable omero block: fall back on the dtype's range
            self.channel_names = default_channel_names(channels)
            if self.dtype.kind in "iu":
                info = numpy.iinfo(self.dtype)
                self.windows = [(float(info.min), float(info.max))] * channels
            else:
                self.windows = [(0.0, 1.0)] * channels
            self.colors = default_colors(self.channel_names)
        self.unit = metadata.unit
        if isinstance(metadata, VolumeMetadata):
            self.voxel_size = metadata.voxel_size
            self.pixel_size = self.voxel_size[1:] if self.voxel_size else None
        else:
            self.voxel_size = None
            self.pixel_size = metadata.pixel_size
        location = as_location(path)
        self.location = location
        self._cache_prefix = (str(location), _identity(location))
        self._shard_readers = [_shard_reader(location, array) for array in arrays]

    @classmethod
    def open(cls, path: str | os.PathLike | Location, *, tile_size: int | None = None) -> Pyramid:
        """Open the pyramid at ``path`` (a local path or a storage Location, e.g. in S3);
        FileNotFoundError if absent, CorruptImage if unreadable.

        ``tile_size`` overrides the tile side (default: the chunk side for images,
        about VOLUME_TILE_SIZE for volumes).
        """
        location = as_location(path)
        local = location.local_path
        path = local if local is not None else location
        if not (location / "zarr.json").is_file():
            raise FileNotFoundError(f"no pyramid at {path}")
        try:
            store = str(local) if local is not None else location.zarr_store()
            group = zarr.open_group(store, mode="r", zarr_format=3)
            metadata = parse_pyramid_attrs(group.attrs.asdict())
            arrays = [group[level] for level in metadata.level_paths]
        except (KeyError, ValueError, TypeError) as error:
            raise CorruptImage(f"cannot open pyramid {path.name}: {error}") from error
        ndim = 4 if isinstance(metadata, VolumeMetadata) else 3
        if not all(isinstance(array, zarr.Array) and array.ndim == ndim for array in arrays):
            axes = "(c, z, y, x)" if ndim == 4 else "(c, y, x)"
            raise CorruptImage(f"pyramid {path.name} levels are not {axes} arrays")
        return cls(path, metadata, arrays, tile_size=tile_size)  # type: ignore[arg-type]

    # -- geometry ------------------------------------------------------------------------------

    def _check_level(self, level: int) -> tuple[int, ...]:
        if not 0 <= level < len(self.levels):
            raise OutOfRange(
                f"level {level} does not exist; valid levels are 0 to {len(self.levels) - 1}"
            )
        return self.levels[level]

    def _zyx(self, level: int) -> tuple[int, int, int]:
        shape = self._check_level(level)
        return shape if self.ndim == 3 else (1, *shape)  # type: ignore[return-value]

    def check_plane(self, plane: str) -> str:
        """``plane`` if this pyramid has it, else InvalidParameter naming the valid planes."""
        if plane not in PLANES:
            raise InvalidParameter(f"unknown plane {plane!r}; use one of {', '.join(PLANES)}")
        if self.ndim == 2 and plane != "xy":
            raise InvalidParameter(f"plane {plane!r} needs a 3D volume; this 2D image has only "
                                   "the xy plane")
        return plane

    def plane_shape(self, level: int, plane: str) -> tuple[int, int]:
        """(height, width) of one slice: xy (y, x), xz (z, x), yz (z, y)."""
        shape = self._zyx(level)
        rows, cols, _ = PLANE_AXES[self.check_plane(plane)]
        return shape[rows], shape[cols]

    def plane_count(self, level: int, plane: str) -> int:
        """Number of slices of ``plane`` at ``level``: z for xy, y for xz, x for yz (1 in 2D)."""
        shape = self._zyx(level)
        return shape[PLANE_AXES[self.check_plane(plane)][2]]

    def plane_scale(self, level: int, plane: str) -> tuple[float, float]:
        """Physical (row, column) size of a pixel of ``plane`` at ``level``, in ``unit``
        (relative to level 0's 1.0 when the unit is unknown)."""
        self._check_level(level)
        scale = self.metadata.scales[level]
        zyx = scale if self.ndim == 3 else (1.0, *scale)
        rows, cols, _ = PLANE_AXES[self.check_plane(plane)]
        return float(zyx[rows]), float(zyx[cols])

    def level_factors(self, level: int) -> tuple[int, ...]:
        """How many level-0 voxels (z, y, x) — pixels (y, x) for images — one of ``level`` spans."""
        self._check_level(level)
        first, this = self.metadata.scales[0], self.metadata.scales[level]
        return tuple(max(1, round(b / a)) if a > 0 else 1 for a, b in zip(first, this,
                                                                           strict=True))

    def level_slice(self, level: int, plane: str, index: int) -> int:
        """The slice of ``plane`` at ``level`` that holds level-0 slice ``index``."""
        index = self.check_index(0, plane, index)
        axis = PLANE_AXES[plane][2] - (3 - self.ndim)
        factor = self.level_factors(level)[axis] if axis >= 0 else 1
        return min(index // factor, self.plane_count(level, plane) - 1)

    def tile_grid(self, level: int, plane: str = "xy") -> tuple[int, int]:
        """(rows, columns) of tiles of ``plane`` at ``level``."""
        height, width = self.plane_shape(level, plane)
        return math.ceil(height / self.tile_size), math.ceil(width / self.tile_size)

    def check_index(self, level: int, plane: str, index: int) -> int:
        """``index`` as an int if ``plane`` has that slice at ``level``, else OutOfRange."""
        count = self.plane_count(level, plane)
        try:
            index = operator.index(index)
        except TypeError:
            raise InvalidParameter(f"slice index {index!r} is not a whole number") from None
        if not 0 <= index < count:
            raise OutOfRange(f"slice {index} does not exist in the {plane} plane at level "
                             f"{level}; valid slices are 0 to {count - 1}")
        return index

    def _check_channels(self, channels: Sequence[int] | None) -> list[int]:
        count = self.shape[0]
        if channels is None:
            return list(range(count))
        for channel in channels:
            if not (isinstance(channel, int | numpy.integer) and 0 <= channel < count):
                raise InvalidParameter(f"channel {channel!r} does not exist; valid channels "
                                       f"are 0 to {count - 1}")
        return [int(channel) for channel in channels]

    # -- reading -------------------------------------------------------------------------------

    def read_plane(self, level: int, plane: str, index: int, r0: int, r1: int, c0: int,
                   c1: int, *, channels: Sequence[int] | None = None) -> numpy.ndarray:
        """Pixels [r0:r1, c0:c1] of slice ``index`` of ``plane`` at ``level``: (c, h, w).

        ``channels`` picks channels (default all).  Only the chunks the region touches are
        read, through the default chunk cache.  OutOfRange (with the valid range) when the
        level, slice or region does not exist.
        """
        height, width = self.plane_shape(level, plane)
        index = self.check_index(level, plane, index)
        if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
            rows, cols, _ = (_AXIS_NAMES[axis] for axis in PLANE_AXES[plane])
            where = f"level {level}" if self.ndim == 2 else f"the {plane} plane of level {level}"
            raise OutOfRange(
                f"region {rows} {r0}:{r1}, {cols} {c0}:{c1} is outside {where} (valid: "
                f"0 <= {rows}0 < {rows}1 <= {height}, 0 <= {cols}0 < {cols}1 <= {width})"
            )
        selected = self._check_channels(channels)
        if not selected:
            return numpy.zeros((0, r1 - r0, c1 - c0), dtype=self.dtype)
        row_axis, col_axis, normal = PLANE_AXES[plane]
        box = [(0, 0)] * 3
        box[row_axis], box[col_axis], box[normal] = (r0, r1), (c0, c1), (index, index + 1)
        if self.ndim == 2:
            box = box[1:]
        reader = self._shard_readers[level] if FAST_SHARD_READS else None
        data = read_chunked(self._arrays[level], (*self._cache_prefix, level), selected, box,
                            default_chunk_cache(), reader)
        return data.reshape(len(selected), r1 - r0, c1 - c0)

    def read_region(self, level: int, y0: int, y1: int, x0: int, x1: int, *,
                    index: int | None = None,
                    channels: Sequence[int] | None = None) -> numpy.ndarray:
        """Pixels [y0:y1, x0:x1] of every channel at ``level`` as a (c, h, w) array.

        For volumes this is xy slice ``index`` of that level (default: the middle one).
        """
        if index is None:
            index = self.plane_count(level, "xy") // 2
        return self.read_plane(level, "xy", index, y0, y1, x0, x1, channels=channels)

    def array(self, level: int) -> zarr.Array:
        """The zarr array of ``level`` (read-only)."""
        self._check_level(level)
        return self._arrays[level]

    def level_location(self, level: int) -> Location:
        """Where the array of ``level`` is stored (a local folder or an object-store prefix)."""
        self._check_level(level)
        return self.location / self.metadata.level_paths[level]

    def read_level(self, level: int) -> numpy.ndarray:
        """The whole of ``level``, (c, y, x) or (c, z, y, x), bypassing the cache (for the
        small lowest levels)."""
        self._check_level(level)
        return numpy.asarray(self._arrays[level][...])

    def __repr__(self) -> str:
        return (f"<Pyramid {self.path} shape={self.shape} dtype={self.dtype.name} "
                f"levels={len(self.levels)}>")


def _shard_reader(root: Location, array: zarr.Array) -> ShardedArrayReader | None:
    """A direct reader of ``array`` (stored under ``root``) if its layout is ours, else None."""
    reader = open_shard_reader(root / array.path)
    if reader is None or (reader.shape, reader.chunk_shape) != (tuple(array.shape),
                                                                tuple(array.chunks)):
        return None
    if reader.dtype.newbyteorder("=") != numpy.dtype(array.dtype).newbyteorder("="):
        return None
    return reader


def _identity(location: Location) -> tuple | None:
    """What tells this pyramid from another later published at the same place."""
    try:
        return (location / "zarr.json").stamp()
    except OSError:
        return None
