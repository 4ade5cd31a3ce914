"""Zarr v3 shard files (blosc chunks, crc32c index) encoded in the caller's threads and written."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import google_crc32c
import numcodecs
import numpy
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec

__all__ = ["EMPTY_CHUNK", "ShardFileWriter", "ShardStream", "morton_order"]

#: Index entry (offset and length) of a chunk that is not stored: it reads as the fill value 0.
EMPTY_CHUNK = 2**64 - 1

#: numcodecs' shuffle numbers for zarr's blosc shuffle names.
BLOSC_SHUFFLES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}

#: Runs ``encode`` over a list of chunk arrays, like ``map``; lets a caller use a thread pool.
MapFunction = Callable[[Callable[[numpy.ndarray], bytes | None], list], Iterable]


def morton_order(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every index of a grid of ``shape`` in Z-order (zarr's compressed Morton code order).

    Bit ``b`` of every dimension that still has bits is taken in dimension order, so the
    order is the one zarr uses for the chunks inside a shard.
    """
    bits = [(size - 1).bit_length() for size in shape]

    def code(index: tuple[int, ...]) -> int:
        value, position = 0, 0
        for bit in range(max(bits, default=0)):
            for dim, dim_bits in enumerate(bits):
                if bit < dim_bits:
                    value |= ((index[dim] >> bit) & 1) << position
                    position += 1
        return value

    return sorted(itertools.product(*(range(size) for size in shape)), key=code)


class ShardFileWriter:
    """Makes the shard files of one zarr v3 array created with a sharding + blosc codec.

    The array's metadata comes from zarr; only the shard bytes are made here: each inner chunk
    padded with zeros to the chunk shape and blosc-compressed exactly as zarr would, then the
    (offset, length) index and its crc32c.  Chunks whose bytes are all zero are not stored
    (they read back as the fill value 0), like zarr's default.  ``write`` makes whole shards
    at once, byte-identical to zarr's; ``stream`` appends them a slab of chunks at a time.
    Thread-safe: chunks are encoded in the calling threads (blosc releases the GIL).
    """

    def __init__(self, array: zarr.Array, root: str | os.PathLike) -> None:
        metadata = array.metadata
        codecs = getattr(metadata, "codecs", ())
        sharding = codecs[0] if len(codecs) == 1 else None
        if not (isinstance(sharding, ShardingCodec) and sharding.index_location.value == "end"
                and _is_little_bytes_then(sharding.codecs, BloscCodec, array.dtype)
                and _is_little_bytes_then(sharding.index_codecs, Crc32cCodec, "<u8")
                and metadata.fill_value == 0):
            raise ValueError("ShardFileWriter needs sharding(bytes little-endian, blosc) "
                             "with a crc32c index at the end and fill value 0")
        blosc: BloscCodec = sharding.codecs[1]
        self._compressor = numcodecs.Blosc(
            cname=blosc.cname.value, clevel=blosc.clevel,
            shuffle=BLOSC_SHUFFLES[blosc.shuffle.value], blocksize=blosc.blocksize,
            typesize=blosc.typesize,
        )
        self._metadata = metadata
        self.folder = Path(root) / array.path
        self._dtype = numpy.dtype(array.dtype).newbyteorder("<")
        self.shape = tuple(array.shape)
        self.shard_shape = tuple(array.shards or array.chunks)
        self.chunk_shape = tuple(sharding.chunk_shape)
        self.grid = tuple(shard // chunk for shard, chunk in
                          zip(self.shard_shape, self.chunk_shape, strict=True))
        self._order: list[tuple[int, ...]] | None = None

    def write(self, start: tuple[int, ...], block: numpy.ndarray) -> int:
        """Write every shard that ``block`` (placed at array index ``start``) fills.

        ``start`` must lie on the shard grid and ``block`` must cover its shards up to the
        array's edge; one file is written per shard.  Returns the bytes written.
        """
        if any(s % size for s, size in zip(start, self.shard_shape, strict=True)):
            raise ValueError(f"block start {start} is not on the shard grid {self.shard_shape}")
        written = 0
        ranges = [range(s, s + n, size) for s, n, size in
                  zip(start, block.shape, self.shard_shape, strict=True)]
        for origin in itertools.product(*ranges):
            part = block[tuple(slice(o - s, o - s + size) for o, s, size in
                               zip(origin, start, self.shard_shape, strict=True))]
            expected = tuple(min(size, total - o) for o, size, total in
                             zip(origin, self.shard_shape, self.shape, strict=True))
            if part.shape != expected:
                raise ValueError(f"shard at {origin} has shape {part.shape}, expected {expected}")
            coords = tuple(o // size for o, size in zip(origin, self.shard_shape, strict=True))
            written += self._write_shard(coords, part)
        return written

    def _write_shard(self, coords: tuple[int, ...], part: numpy.ndarray) -> int:
        if self._order is None:
            self._order = morton_order(self.grid)
        index = numpy.full(self.grid + (2,), EMPTY_CHUNK, dtype="<u8")
        pieces: list[bytes] = []
        offset = 0
        for chunk in self._order:
            region = tuple(slice(c * size, (c + 1) * size)
                           for c, size in zip(chunk, self.chunk_shape, strict=True))
            view = part[region]
            encoded = self.encode_chunk(view) if view.size else None
            if encoded is None:
                continue
            index[chunk] = (offset, len(encoded))
            pieces.append(encoded)
            offset += len(encoded)
        if not pieces:  # all chunks empty: no file, like zarr
            return 0
        pieces.append(shard_index_bytes(index))
        path = self.shard_path(coords)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.writelines(pieces)
        return offset + len(pieces[-1])

    def encode_chunk(self, view: numpy.ndarray) -> bytes | None:
        """A chunk's pixels zero-padded to the chunk shape and compressed; None if all zero.

        ``view`` may leave out leading axes of chunk size 1 (e.g. the channel).
        """
        shape = self.chunk_shape[len(self.chunk_shape) - view.ndim:]
        if view.shape == shape:
            data = numpy.ascontiguousarray(view, dtype=self._dtype)
        else:
            data = numpy.zeros(shape, dtype=self._dtype)
            data[tuple(slice(0, n) for n in view.shape)] = view
        raw = data.reshape(-1).view(numpy.uint8)
        if raw.size % 8 == 0:
            raw = raw.view(numpy.uint64)  # the same test on 8 times fewer elements
        if not raw.any():
            return None
        return self._compressor.encode(data)

    def shard_path(self, coords: tuple[int, ...]) -> Path:
        """The file of the shard at grid position ``coords``."""
        return self.folder / self._metadata.encode_chunk_key(coords)

    def stream(self, box: tuple[int, ...]) -> ShardStream:
        """A ShardStream writing the shards that cover ``box``."""
        return ShardStream(self, box)


def shard_index_bytes(index: numpy.ndarray) -> bytes:
    """A shard's (offset, length) index as stored at its end: little-endian, then crc32c."""
    data = index.astype("<u8", copy=False).tobytes()
    return data + numpy.uint32(google_crc32c.value(data)).astype("<u4").tobytes()


class ShardStream:
    """Writes the whole shards of an array that cover ``box``, one slab of chunks at a time.

    The array has a leading channel axis of chunk size 1, e.g. (c, z, y, x); ``box`` is
    (start, stop) of every other axis, flattened: (z0, z1, y0, y1, x0, x1), on the shard grid
    (each stop at a shard edge or the array's end).  ``write_layer`` hands in every voxel of
    one slab of the box, one chunk deep along the first of those axes (the last may be
    thinner); its chunks are encoded and appended to their shard files.  ``close`` appends
    each shard's index.  Shards with nothing stored get no file.  Memory: one slab and its
    encoded chunks.  Chunks are in slab order, not zarr's Morton order: the bytes differ from
    zarr's, the content read back does not.
    """

    def __init__(self, writer: ShardFileWriter, box: tuple[int, ...]) -> None:
        if writer.chunk_shape[0] != 1 or len(box) != 2 * (len(writer.shape) - 1):
            raise ValueError(f"box {box} does not fit an array of chunks {writer.chunk_shape}")
        self._writer = writer
        self._box = box
        self._lows, self._highs = box[0::2], box[1::2]
        self._chunk = writer.chunk_shape[1:]
        self._shard = writer.shard_shape[1:]
        self._grid = writer.grid[1:]
        self._files: dict[tuple[int, ...], list] = {}  # shard key -> [offset, index]
        self._next = box[0]

    def write_layer(self, start: int, layer: numpy.ndarray, map_function: MapFunction = map
                    ) -> None:
        """Store slab ``layer`` (c, depth, *box sides) beginning at index ``start``.

        Slabs come in order along the first axis, each starting on the chunk grid.
        ``map_function`` (e.g. a thread pool's ``map``) runs the encoding of the chunks.
        """
        sides = tuple(high - low for low, high in zip(self._lows[1:], self._highs[1:],
                                                       strict=True))
        if start != self._next or start % self._chunk[0] or layer.shape[2:] != sides:
            raise ValueError(f"layer at {start} of shape {layer.shape} does not continue the "
                             f"stream at {self._next} over {self._box}")
        self._next = start + layer.shape[1]
        corners = list(itertools.product(*(range(low, high, size) for low, high, size in
                                           zip(self._lows[1:], self._highs[1:], self._chunk[1:],
                                               strict=True))))
        origins = [(c, start, *corner) for c in range(layer.shape[0]) for corner in corners]
        views = [layer[(origin[0], slice(None), *(slice(o - low, o - low + size) for o, low, size
                                                  in zip(origin[2:], self._lows[1:],
                                                         self._chunk[1:], strict=True)))]
                 for origin in origins]
        by_shard: dict[tuple[int, ...], list] = {}
        for origin, encoded in zip(origins, map_function(self._writer.encode_chunk, views),
                                   strict=True):
            if encoded is not None:
                shard = (origin[0], *(o // size for o, size in zip(origin[1:], self._shard,
                                                                   strict=True)))
                by_shard.setdefault(shard, []).append((origin[1:], encoded))
        for shard, pieces in by_shard.items():
            self._append(shard, pieces)

    def _append(self, shard: tuple[int, ...], pieces: list) -> None:
        """Append one slab's encoded chunks to a shard file, noting them in its index."""
        entry = self._files.get(shard)
        path = self._writer.shard_path(shard)
        if entry is None:
            entry = self._files[shard] = [0, numpy.full(self._grid + (2,), EMPTY_CHUNK, "<u8")]
            path.parent.mkdir(parents=True, exist_ok=True)
        for origin, encoded in pieces:
            inner = tuple((o % size) // chunk for o, size, chunk in
                          zip(origin, self._shard, self._chunk, strict=True))
            entry[1][inner] = (entry[0], len(encoded))
            entry[0] += len(encoded)
        with open(path, "ab") as handle:
            handle.writelines(encoded for _, encoded in pieces)

    def close(self) -> None:
        """Append every shard's index and crc32c; the shards are then complete."""
        for shard, (_, index) in self._files.items():
            with open(self._writer.shard_path(shard), "ab") as handle:
                handle.write(shard_index_bytes(index))
        self._files.clear()


def _is_little_bytes_then(codecs: tuple, second: type, dtype: object) -> bool:
    """True for the codec list (bytes little-endian, ``second``); 1-byte types have no endian."""
    if len(codecs) != 2 or not isinstance(codecs[0], BytesCodec):
        return False
    endian = codecs[0].endian
    little = endian.value == "little" if endian is not None else numpy.dtype(dtype).itemsize == 1
    return little and isinstance(codecs[1], second)
