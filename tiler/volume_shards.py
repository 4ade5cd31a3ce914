"""Zarr v3 shard files written as a stream: chunk layers compressed and appended, the index last."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import google_crc32c
import numcodecs
import numpy
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec

__all__ = ["EMPTY_CHUNK", "ShardStream"]

#: Index entry (offset and length) of a chunk that is not stored: it reads as the fill value 0.
EMPTY_CHUNK = 2**64 - 1
#: numcodecs' shuffle numbers for zarr's blosc shuffle names.
BLOSC_SHUFFLES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}

#: Runs ``encode(chunks)`` for a list of chunk arrays; lets the caller spread it over threads.
MapFunction = Callable[[Callable[[numpy.ndarray], bytes | None], list], Iterable]


def _codec_of(array: zarr.Array) -> tuple[ShardingCodec, BloscCodec]:
    """The array's sharding and blosc codecs; ValueError unless the layout is the expected one."""
    metadata = array.metadata
    codecs = getattr(metadata, "codecs", ())
    sharding = codecs[0] if len(codecs) == 1 else None
    ok = (isinstance(sharding, ShardingCodec) and sharding.index_location.value == "end"
          and len(sharding.codecs) == 2 and isinstance(sharding.codecs[0], BytesCodec)
          and isinstance(sharding.codecs[1], BloscCodec)
          and [type(c) for c in sharding.index_codecs] == [BytesCodec, Crc32cCodec]
          and metadata.fill_value == 0)
    if not ok:
        raise ValueError("ShardStream needs sharding(bytes, blosc) with a crc32c index at the end "
                         "and fill value 0")
    endian = sharding.codecs[0].endian
    if numpy.dtype(array.dtype).itemsize > 1 and (endian is None or endian.value != "little"):
        raise ValueError("ShardStream writes little-endian chunks only")
    return sharding, sharding.codecs[1]  # type: ignore[return-value]


class ShardStream:
    """Writes the whole shards of ``array`` that cover ``box``, one z layer of chunks at a time.

    ``box`` is (z0, z1, y0, y1, x0, x1) on the shard grid (ends at a shard edge or the array's
    end); all channels are written.  Each ``write_layer`` hands in every voxel of one chunk
    layer of the box; its chunks are padded with zeros to the chunk shape, blosc-compressed as
    zarr would, and appended to their shard files.  ``close`` appends each shard's index and
    crc32c.  All-zero chunks are not stored (they read back as 0), as zarr does; a shard with
    nothing stored gets no file.  Memory: one layer and its compressed chunks.
    """

    def __init__(self, array: zarr.Array, root: str | Path,
                 box: tuple[int, int, int, int, int, int]) -> None:
        sharding, blosc = _codec_of(array)
        self._metadata = array.metadata
        self._folder = Path(root) / array.path
        self._dtype = numpy.dtype(array.dtype).newbyteorder("<")
        self._compressor = numcodecs.Blosc(
            cname=blosc.cname.value, clevel=blosc.clevel,
            shuffle=BLOSC_SHUFFLES[blosc.shuffle.value], blocksize=blosc.blocksize or 0)
        self._chunk = tuple(sharding.chunk_shape)[1:]
        self._shard = tuple(array.shards)[1:]  # type: ignore[index]
        self._channels = array.shape[0]
        self._box = box
        self._grid = tuple(s // c for s, c in zip(self._shard, self._chunk, strict=True))
        self._files: dict[tuple[int, ...], list] = {}  # shard key -> [offset, index]
        self._next_z = box[0]

    def write_layer(self, z0: int, layer: numpy.ndarray, map_function: MapFunction = map) -> None:
        """Store chunk layer ``layer`` (c, dz, y1 - y0, x1 - x0) starting at slice ``z0``.

        Layers must come in z order, each starting on the chunk grid.  ``map_function`` (e.g.
        a thread pool's ``map``) runs the compression of the layer's chunks.
        """
        _, _, y0, y1, x0, x1 = self._box
        if z0 != self._next_z or z0 % self._chunk[0] or layer.shape[2:] != (y1 - y0, x1 - x0):
            raise ValueError(f"layer at z {z0} of shape {layer.shape} does not continue the "
                             f"stream at {self._next_z} over {self._box}")
        self._next_z = z0 + layer.shape[1]
        pieces = [(c, y, x) for c in range(self._channels)
                  for y in range(y0, y1, self._chunk[1]) for x in range(x0, x1, self._chunk[2])]
        views = [layer[c, :, y - y0:y - y0 + self._chunk[1], x - x0:x - x0 + self._chunk[2]]
                 for c, y, x in pieces]
        for (c, y, x), encoded in zip(pieces, map_function(self._encode, views), strict=True):
            if encoded is not None:
                self._append((c, z0, y, x), encoded)

    def _encode(self, view: numpy.ndarray) -> bytes | None:
        """A chunk padded to the chunk shape and compressed, or None when all bytes are zero."""
        if view.shape == self._chunk:
            data = numpy.ascontiguousarray(view, dtype=self._dtype)
        else:
            data = numpy.zeros(self._chunk, dtype=self._dtype)
            data[tuple(slice(0, n) for n in view.shape)] = view
        if not data.view(numpy.uint8).any():
            return None
        return self._compressor.encode(data)

    def _append(self, origin: tuple[int, int, int, int], encoded: bytes) -> None:
        channel, z, y, x = origin
        shard = (channel, z // self._shard[0], y // self._shard[1], x // self._shard[2])
        entry = self._files.get(shard)
        if entry is None:
            entry = self._files[shard] = [0, numpy.full(self._grid + (2,), EMPTY_CHUNK, "<u8")]
        inner = tuple((value % size) // chunk for value, size, chunk in
                      zip((z, y, x), self._shard, self._chunk, strict=True))
        entry[1][inner] = (entry[0], len(encoded))
        path = self._path(shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as handle:
            handle.write(encoded)
        entry[0] += len(encoded)

    def _path(self, shard: tuple[int, ...]) -> Path:
        return self._folder / self._metadata.encode_chunk_key(shard)

    def close(self) -> None:
        """Append every shard's index and crc32c; the shards are then complete."""
        for shard, (_, index) in self._files.items():
            index_bytes = index.tobytes()
            checksum = numpy.uint32(google_crc32c.value(index_bytes)).astype("<u4").tobytes()
            with open(self._path(shard), "ab") as handle:
                handle.write(index_bytes + checksum)
        self._files.clear()
