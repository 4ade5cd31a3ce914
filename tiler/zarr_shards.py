"""Whole zarr v3 shards (blosc chunks, crc32c index) encoded in the caller's thread and written."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import google_crc32c
import numcodecs
import numpy
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec

__all__ = ["EMPTY_CHUNK", "ShardFileWriter", "morton_order"]

#: Index entry (offset and length) of a chunk that is not stored: it reads as the fill value 0.
EMPTY_CHUNK = 2**64 - 1

#: numcodecs' shuffle numbers for zarr's blosc shuffle names.
BLOSC_SHUFFLES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


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
    """Writes whole shards of one zarr v3 array created with a sharding + blosc codec.

    The array's metadata comes from zarr; only the shard bytes are made here: each inner chunk
    padded with zeros to the chunk shape and blosc-compressed exactly as zarr would, stored in
    Morton order, followed by the (offset, length) index and its crc32c.  Chunks whose bytes are
    all zero are not stored (they read back as the fill value 0), like zarr's default.
    Thread-safe: each call encodes in the calling thread, so several shards encode in parallel.
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
        self._folder = Path(root) / array.path
        self._dtype = numpy.dtype(array.dtype).newbyteorder("<")
        self._shape = tuple(array.shape)
        self._shard_shape = tuple(array.shards or array.chunks)
        self._chunk_shape = tuple(sharding.chunk_shape)
        self._grid = tuple(shard // chunk for shard, chunk in
                           zip(self._shard_shape, self._chunk_shape, strict=True))
        self._order = morton_order(self._grid)

    def write(self, start: tuple[int, ...], block: numpy.ndarray) -> int:
        """Write every shard that ``block`` (placed at array index ``start``) fills.

        ``start`` must lie on the shard grid and ``block`` must cover its shards up to the
        array's edge; one file is written per shard.  Returns the bytes written.
        """
        if any(s % size for s, size in zip(start, self._shard_shape, strict=True)):
            raise ValueError(f"block start {start} is not on the shard grid {self._shard_shape}")
        written = 0
        ranges = [range(s, s + n, size) for s, n, size in
                  zip(start, block.shape, self._shard_shape, strict=True)]
        for origin in itertools.product(*ranges):
            part = block[tuple(slice(o - s, o - s + size) for o, s, size in
                               zip(origin, start, self._shard_shape, strict=True))]
            expected = tuple(min(size, total - o) for o, size, total in
                             zip(origin, self._shard_shape, self._shape, strict=True))
            if part.shape != expected:
                raise ValueError(f"shard at {origin} has shape {part.shape}, expected {expected}")
            coords = tuple(o // size for o, size in zip(origin, self._shard_shape, strict=True))
            written += self._write_shard(coords, part)
        return written

    def _write_shard(self, coords: tuple[int, ...], part: numpy.ndarray) -> int:
        index = numpy.full(self._grid + (2,), EMPTY_CHUNK, dtype="<u8")
        pieces: list[bytes] = []
        offset = 0
        for chunk in self._order:
            data = self._chunk_bytes(part, chunk)
            if data is None:
                continue
            encoded = self._compressor.encode(data)
            index[chunk] = (offset, len(encoded))
            pieces.append(encoded)
            offset += len(encoded)
        path = self._folder / self._metadata.encode_chunk_key(coords)
        if not pieces:  # all chunks empty: no file, like zarr
            return 0
        index_bytes = index.tobytes()
        pieces.append(index_bytes)
        pieces.append(numpy.uint32(google_crc32c.value(index_bytes)).astype("<u4").tobytes())
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.writelines(pieces)
        return offset + len(index_bytes) + 4

    def _chunk_bytes(self, part: numpy.ndarray, chunk: tuple[int, ...]) -> numpy.ndarray | None:
        """The chunk's pixels, zero-padded to the full chunk shape, or None when all zero."""
        region = tuple(slice(c * size, (c + 1) * size) for c, size in zip(chunk, self._chunk_shape,
                                                                          strict=True))
        view = part[region]
        if view.size == 0:
            return None
        if view.shape == self._chunk_shape:
            data = numpy.ascontiguousarray(view, dtype=self._dtype)
        else:
            data = numpy.zeros(self._chunk_shape, dtype=self._dtype)
            data[tuple(slice(0, n) for n in view.shape)] = view
        if not data.view(numpy.uint8).any():
            return None
        return data


def _is_little_bytes_then(codecs: tuple, second: type, dtype: object) -> bool:
    """True for the codec list (bytes little-endian, ``second``); 1-byte types have no endian."""
    if len(codecs) != 2 or not isinstance(codecs[0], BytesCodec):
        return False
    endian = codecs[0].endian
    little = endian.value == "little" if endian is not None else numpy.dtype(dtype).itemsize == 1
    return little and isinstance(codecs[1], second)
