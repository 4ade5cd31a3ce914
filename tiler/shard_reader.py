"""Direct reads of inner chunks from our own zarr v3 shards (blosc chunks, crc32c index at the end)."""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from pathlib import Path

import google_crc32c
import imagecodecs
import numpy

from tiler.errors import CorruptImage

__all__ = ["INDEX_CACHE_ENTRIES", "ShardedArrayReader", "open_shard_reader"]

#: Shard indexes each reader keeps decoded (1 KiB for 8×8 chunks, 8 KiB for 8³).
INDEX_CACHE_ENTRIES = 512
#: Index entry (offset and length) of a chunk that is not stored: it reads as the fill value.
_EMPTY = 2**64 - 1
_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float32", "float64"}
_BLOSC_KEYS = {"typesize", "cname", "clevel", "shuffle", "blocksize"}


class ShardedArrayReader:
    """Reads inner chunks of one sharded zarr v3 array as our writers lay it out, without zarr.

    Supported (``supports``): a regular chunk grid with the default chunk key encoding and one
    ``sharding_indexed`` codec whose chunks are ``bytes`` (little-endian) + ``blosc`` and whose
    index is ``bytes`` (little-endian) + ``crc32c`` at the end of the shard.  Anything else
    raises ValueError here; callers then read through zarr.  Thread-safe: each read opens,
    ``pread``s and closes the shard file, and decoded shard indexes sit in a locked LRU.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            meta = json.loads((self.path / "zarr.json").read_bytes())
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read {self.path / 'zarr.json'}: {error}") from error
        problem = _layout_problem(meta)
        if problem:
            raise ValueError(f"unsupported zarr layout at {self.path}: {problem}")
        sharding = meta["codecs"][0]["configuration"]
        self.shape = tuple(int(n) for n in meta["shape"])
        self.shard_shape = tuple(int(n) for n in meta["chunk_grid"]["configuration"]["chunk_shape"])
        self.chunk_shape = tuple(int(n) for n in sharding["chunk_shape"])
        self.grid = tuple(s // c for s, c in zip(self.shard_shape, self.chunk_shape, strict=True))
        self.chunk_grid = tuple(math.ceil(n / c) for n, c in zip(self.shape, self.chunk_shape,
                                                                  strict=True))
        self.dtype = numpy.dtype(meta["data_type"]).newbyteorder("<")
        self.fill_value = meta["fill_value"]
        self._separator = meta["chunk_key_encoding"].get("configuration", {}).get("separator", "/")
        self._chunk_bytes = math.prod(self.chunk_shape) * self.dtype.itemsize
        self._entries = math.prod(self.grid)
        self._index_bytes = self._entries * 16 + 4
        self._indexes: OrderedDict[str, numpy.ndarray | None] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def supports(path: str | os.PathLike) -> bool:
        """True if the array folder ``path`` has a layout this reader handles."""
        try:
            meta = json.loads((Path(path) / "zarr.json").read_bytes())
        except (OSError, ValueError):
            return False
        return not _layout_problem(meta)

    def shard_path(self, shard: tuple[int, ...]) -> str:
        """The file of the shard at shard-grid position ``shard``."""
        key = self._separator.join(["c", *(str(i) for i in shard)])
        return os.path.join(self.path, *key.split("/"))

    def read_chunk(self, chunk: tuple[int, ...]) -> numpy.ndarray:
        """Inner chunk ``chunk`` (grid coordinates) as a full chunk-shaped array; edge chunks
        include zarr's padding.  CorruptImage if the shard file is damaged."""
        chunk = tuple(int(i) for i in chunk)
        if len(chunk) != len(self.chunk_grid) or not all(
                0 <= i < n for i, n in zip(chunk, self.chunk_grid, strict=True)):
            raise IndexError(f"chunk {chunk} outside the chunk grid {self.chunk_grid}")
        inner = 0  # position of the chunk in its shard's index, in C order
        for i, g in zip(chunk, self.grid, strict=True):
            inner = inner * g + i % g
        path = self.shard_path(tuple(i // g for i, g in zip(chunk, self.grid, strict=True)))
        with self._lock:
            index = self._indexes.get(path, False)
            if index is not False:
                self._indexes.move_to_end(path)
        if index is False:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                index = None  # zarr writes no file for a shard with no chunks stored
            else:
                try:
                    index = self._read_index(fd, path)
                    offset, nbytes = index[inner].tolist()
                    data = None if offset == _EMPTY else _pread_exact(fd, nbytes, offset, path)
                finally:
                    os.close(fd)
            with self._lock:
                self._indexes[path] = index
                while len(self._indexes) > INDEX_CACHE_ENTRIES:
                    self._indexes.popitem(last=False)
            if index is not None:
                return self._decode(data, path)
        if index is None:
            return self._filled()
        offset, nbytes = index[inner].tolist()
        if offset == _EMPTY:
            return self._filled()
        fd = os.open(path, os.O_RDONLY)
        try:
            data = _pread_exact(fd, nbytes, offset, path)
        finally:
            os.close(fd)
        return self._decode(data, path)

    def _read_index(self, fd: int, path: str) -> numpy.ndarray:
        """(offset, length) of each chunk of the shard, in C order, after checking the index."""
        size = os.fstat(fd).st_size
        if size < self._index_bytes:
            raise CorruptImage(f"shard {path} is too short for its index")
        raw = _pread_exact(fd, self._index_bytes, size - self._index_bytes, path)
        body, crc = raw[:-4], int.from_bytes(raw[-4:], "little")
        if google_crc32c.value(body) != crc:
            raise CorruptImage(f"shard {path} has a damaged index (crc32c mismatch)")
        index = numpy.frombuffer(body, dtype="<u8").reshape(*self.grid, 2)
        stored = index[..., 0] != _EMPTY
        ends = index[..., 0][stored] + index[..., 1][stored]
        if ends.size and (ends.max() > size - self._index_bytes or
                          (index[..., 0][stored] > ends).any()):
            raise CorruptImage(f"shard {path} index points outside the file")
        return index.reshape(-1, 2)

    def _decode(self, data: bytes | None, path: str) -> numpy.ndarray:
        if data is None:
            return self._filled()
        out = numpy.empty(self.chunk_shape, dtype=self.dtype)
        try:
            # the blosc header (16 bytes) holds the decoded size at bytes 4-8
            if len(data) < 16 or int.from_bytes(data[4:8], "little") != self._chunk_bytes:
                raise ValueError("decoded size is not the chunk size")
            # one thread: a chunk is 2-8 blosc blocks, too few to pay for waking blosc's pool
            imagecodecs.blosc_decode(data, numthreads=1, out=out.reshape(-1).view(numpy.uint8))
        except (RuntimeError, ValueError) as error:
            raise CorruptImage(f"shard {path} has a chunk that does not decode: {error}") from None
        return out if self.dtype.isnative else out.astype(self.dtype.newbyteorder("="))

    def _filled(self) -> numpy.ndarray:
        return numpy.full(self.chunk_shape, self.fill_value, dtype=self.dtype.newbyteorder("="))


def open_shard_reader(path: str | os.PathLike) -> ShardedArrayReader | None:
    """A ShardedArrayReader for the array folder ``path``, or None if its layout is not ours."""
    try:
        return ShardedArrayReader(path)
    except ValueError:
        return None


def _pread_exact(fd: int, nbytes: int, offset: int, path: str) -> bytes:
    data = os.pread(fd, nbytes, offset)
    if len(data) != nbytes:
        raise CorruptImage(f"shard {path} is truncated")
    return data


def _layout_problem(meta: dict) -> str | None:
    """Why ``meta`` (an array's zarr.json) is not a layout ShardedArrayReader reads, or None."""
    try:
        if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
            return "not a zarr v3 array"
        if meta.get("storage_transformers"):
            return "storage transformers"
        if meta["data_type"] not in _DTYPES:
            return f"data type {meta['data_type']!r}"
        fill = meta.get("fill_value")
        if isinstance(fill, bool) or not isinstance(fill, int | float):
            return f"fill value {fill!r}"
        grid = meta["chunk_grid"]
        if grid.get("name") != "regular":
            return "irregular chunk grid"
        encoding = meta["chunk_key_encoding"]
        if encoding.get("name") != "default" or encoding.get("configuration", {}).get(
                "separator", "/") not in ("/", "."):
            return "chunk key encoding"
        codecs = meta["codecs"]
        if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
            return "not sharded"
        config = codecs[0]["configuration"]
        if config.get("index_location", "end") != "end":
            return "shard index not at the end"
        itemsize = numpy.dtype(meta["data_type"]).itemsize
        inner = config["codecs"]
        if not (len(inner) == 2 and _little_bytes(inner[0], itemsize)
                and inner[1].get("name") == "blosc"
                and set(inner[1].get("configuration", {})) <= _BLOSC_KEYS):
            return "chunk codecs are not bytes + blosc"
        index_codecs = config["index_codecs"]
        if not (len(index_codecs) == 2 and _little_bytes(index_codecs[0], 8)
                and index_codecs[1].get("name") == "crc32c"):
            return "index codecs are not bytes + crc32c"
        shape, shards = meta["shape"], grid["configuration"]["chunk_shape"]
        chunks = config["chunk_shape"]
        if not (len(shape) == len(shards) == len(chunks) and all(
                isinstance(c, int) and c > 0 and s % c == 0 for s, c in zip(shards, chunks,
                                                                              strict=True))):
            return "shard shape is not a multiple of the chunk shape"
    except (KeyError, TypeError, AttributeError) as error:
        return f"malformed metadata ({error})"
    return None


def _little_bytes(codec: dict, itemsize: int) -> bool:
    """True for a ``bytes`` codec that is little-endian (or has no endian, for 1-byte types)."""
    if codec.get("name") != "bytes":
        return False
    endian = (codec.get("configuration") or {}).get("endian")
    return endian == "little" or (endian is None and itemsize == 1)
