"""Direct reads of inner chunks from our own zarr v3 shards (blosc chunks, crc32c index at the end), local or in S3."""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict

import google_crc32c
import imagecodecs
import numpy

from tiler.errors import CorruptImage
from tiler.storage import Location, as_location

__all__ = ["INDEX_CACHE_ENTRIES", "RAW_CACHE_BYTES", "READ_AHEAD_BYTES", "RawChunkCache",
           "ShardedArrayReader", "open_shard_reader", "raw_chunk_cache"]

#: Shard indexes each reader keeps decoded (1 KiB for 8×8 chunks, 8 KiB for 8³).
INDEX_CACHE_ENTRIES = 512
#: Most bytes one ranged GET of an object-store shard fetches: the chunk asked for plus the
#: chunks stored right after it in the file (zarr's Morton order keeps them close on screen).
READ_AHEAD_BYTES = 1 << 20
#: Budget of the compressed chunks fetched ahead and not yet asked for, all readers together.
RAW_CACHE_BYTES = 32 << 20
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
    ``pread``s and closes the shard file, and decoded shard indexes sit in a locked LRU.  In
    an object store a missed chunk is fetched with the chunks stored right after it (one
    ranged GET of up to READ_AHEAD_BYTES); their compressed bytes wait in ``raw_chunk_cache``
    and are decoded only when asked for.
    """

    def __init__(self, path: str | os.PathLike | Location) -> None:
        self.location = as_location(path)
        local = self.location.local_path
        self.path = local if local is not None else self.location
        try:
            meta = json.loads((self.location / "zarr.json").read_bytes())
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read {self.location / 'zarr.json'}: {error}") from error
        problem = _layout_problem(meta)
        if problem:
            raise ValueError(f"unsupported zarr layout at {self.location}: {problem}")
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
        self._token = object()  # this reader's part of raw_chunk_cache keys; never reused

    @staticmethod
    def supports(path: str | os.PathLike | Location) -> bool:
        """True if the array folder ``path`` has a layout this reader handles."""
        try:
            meta = json.loads((as_location(path) / "zarr.json").read_bytes())
        except (OSError, ValueError):
            return False
        return not _layout_problem(meta)

    def shard_path(self, shard: tuple[int, ...]) -> str:
        """The file of the shard at shard-grid position ``shard``."""
        key = self._separator.join(["c", *(str(i) for i in shard)])
        if isinstance(self.path, Location):
            return key
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
        if isinstance(self.path, Location):
            return self._read_remote(path, inner, index)
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
            self._remember_index(path, index)
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

    def _remember_index(self, shard: str, index: numpy.ndarray | None) -> None:
        """Keep a shard's decoded index (None: no such shard) in the LRU of INDEX_CACHE_ENTRIES."""
        with self._lock:
            self._indexes[shard] = index
            while len(self._indexes) > INDEX_CACHE_ENTRIES:
                self._indexes.popitem(last=False)

    def _read_remote(self, key: str, inner: int, index) -> numpy.ndarray:
        """read_chunk for a shard in an object store: its index once (size, then a ranged
        read of the tail); a chunk from raw_chunk_cache, else one ranged read of it and the
        chunks stored after it (READ_AHEAD_BYTES), whose bytes are kept for later."""
        shard = self.location / key
        if index is False:
            try:
                size = shard.size()
            except FileNotFoundError:
                index = None
            else:
                index = self._read_index(None, str(shard), size,
                                         lambda n, at: _exact(shard.read_range(at, n), n, shard))
            self._remember_index(key, index)
        if index is None:
            return self._filled()
        offset, nbytes = index[inner].tolist()
        if offset == _EMPTY:
            return self._filled()
        data = raw_chunk_cache.pop((self._token, key, inner))
        if data is None:
            run = _run_after(index, offset + nbytes, offset + max(READ_AHEAD_BYTES, nbytes))
            end = int(index[run[-1]].sum()) if run else offset + nbytes
            fetched = shard.read_range(offset, end - offset)
            data = _exact(fetched[:nbytes], nbytes, shard)
            ahead = []
            for neighbour in run:
                start, length = (int(n) for n in index[neighbour])
                if start + length - offset > len(fetched):
                    break  # the object ended early: that chunk reports it when asked for
                ahead.append(((self._token, key, neighbour),
                              fetched[start - offset:start - offset + length]))
            raw_chunk_cache.put_many(ahead)
        return self._decode(data, str(shard))

    def _read_index(self, fd: int | None, path: str, size: int | None = None,
                    read=None) -> numpy.ndarray:
        """(offset, length) of each chunk of the shard, in C order, after checking the index."""
        if size is None:
            size = os.fstat(fd).st_size
        if size < self._index_bytes:
            raise CorruptImage(f"shard {path} is too short for its index")
        if read is None:
            raw = _pread_exact(fd, self._index_bytes, size - self._index_bytes, path)
        else:
            raw = read(self._index_bytes, size - self._index_bytes)
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


class RawChunkCache:
    """Compressed chunks fetched ahead of being asked for: a locked LRU of at most
    ``max_bytes`` bytes; a chunk leaves it when taken (its decoded form is cached above)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def pop(self, key: tuple) -> bytes | None:
        """The bytes under ``key``, removed from the cache, or None."""
        with self._lock:
            data = self._entries.pop(key, None)
            if data is not None:
                self.nbytes -= len(data)
            return data

    def put_many(self, items: list[tuple[tuple, bytes]]) -> None:
        """Keep each (key, bytes), dropping the least recently stored beyond the budget."""
        with self._lock:
            for key, data in items:
                old = self._entries.pop(key, None)
                if old is not None:
                    self.nbytes -= len(old)
                if len(data) <= self.max_bytes:
                    self._entries[key] = data
                    self.nbytes += len(data)
            while self.nbytes > self.max_bytes:
                self.nbytes -= len(self._entries.popitem(last=False)[1])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0


#: The read-ahead chunks of every reader, keyed by (reader token, shard key, chunk position).
raw_chunk_cache = RawChunkCache(RAW_CACHE_BYTES)


def _run_after(index: numpy.ndarray, end: int, limit: int) -> list[int]:
    """Positions of the stored chunks that follow byte ``end`` back to back in the shard file
    (in file order, whatever their index order), as far as byte ``limit``."""
    offsets, lengths = index[:, 0], index[:, 1]
    candidates = numpy.flatnonzero((offsets >= end) & (offsets < limit))
    run = []
    for position in candidates[numpy.argsort(offsets[candidates], kind="stable")].tolist():
        start, length = int(offsets[position]), int(lengths[position])
        if start != end or start + length > limit:
            break
        run.append(position)
        end = start + length
    return run


def open_shard_reader(path: str | os.PathLike | Location) -> ShardedArrayReader | None:
    """A ShardedArrayReader for the array folder ``path``, or None if its layout is not ours."""
    try:
        return ShardedArrayReader(path)
    except ValueError:
        return None


def _exact(data: bytes, nbytes: int, where: Location) -> bytes:
    if len(data) != nbytes:
        raise CorruptImage(f"shard {where} is truncated")
    return data


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
