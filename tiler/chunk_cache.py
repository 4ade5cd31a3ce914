"""Decoded pyramid chunks in a thread-safe LRU with a byte budget, and chunk-wise region reads through it."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy

__all__ = [
    "DEFAULT_CHUNK_CACHE_BYTES",
    "CacheStats",
    "ChunkCache",
    "configure_chunk_cache",
    "default_chunk_cache",
    "read_chunk_view",
    "read_chunked",
]

#: Byte budget of the default cache until ``configure_chunk_cache`` says otherwise.
DEFAULT_CHUNK_CACHE_BYTES = 256 << 20


@dataclass(frozen=True)
class CacheStats:
    """Counters of a ChunkCache: lookups served from memory, decodes, bytes and entries held."""

    hits: int
    misses: int
    bytes: int
    entries: int
    max_bytes: int


class ChunkCache:
    """Least-recently-used arrays under a byte budget; safe to share between threads.

    Arrays handed out are read-only and shared: copy before modifying.  A key that several
    threads ask for at once is loaded by one of them while the others wait for it.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, numpy.ndarray] = OrderedDict()
        self._loading: dict[Hashable, threading.Lock] = {}  # held while a key loads
        self._lock = threading.Lock()
        self._bytes = self._hits = self._misses = 0

    @property
    def stats(self) -> CacheStats:
        """Current counters."""
        with self._lock:
            return CacheStats(self._hits, self._misses, self._bytes, len(self._entries),
                              self.max_bytes)

    def clear(self) -> None:
        """Forget every entry (counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def get_or_load(self, key: Hashable, loader: Callable[[], numpy.ndarray]) -> numpy.ndarray:
        """The array cached under ``key``, or ``loader()`` (stored, if it fits the budget)."""
        with self._lock:
            if (value := self._entries.get(key)) is not None:
                self._entries.move_to_end(key)
                self._hits += 1
                return value
            if (pending := self._loading.get(key)) is None:
                self._loading[key] = _held_lock()
                self._misses += 1
        if pending is not None:  # another thread is loading it: wait for that
            return self.get_many([key], lambda keys: {keys[0]: loader()})[key]
        value = None
        try:
            value = _read_only(loader())
        finally:
            with self._lock:
                if value is not None:
                    self._store(key, value)
                self._loading.pop(key).release()
        return value

    def get_many(
        self, keys: Iterable[Hashable],
        load_missing: Callable[[list[Hashable]], dict[Hashable, numpy.ndarray]],
    ) -> dict[Hashable, numpy.ndarray]:
        """Arrays of all ``keys``; ``load_missing(keys)`` is called once with those not cached
        (so they can be decoded together) and must return an array for each of them."""
        found: dict[Hashable, numpy.ndarray] = {}
        mine: list[Hashable] = []
        waiting: list[tuple[Hashable, threading.Lock]] = []
        with self._lock:
            for key in dict.fromkeys(keys):
                if (value := self._entries.get(key)) is not None:
                    self._entries.move_to_end(key)
                    self._hits += 1
                    found[key] = value
                elif (pending := self._loading.get(key)) is not None:
                    waiting.append((key, pending))
                else:
                    self._loading[key] = _held_lock()
                    self._misses += 1
                    mine.append(key)
        if mine:
            found.update(self._load(mine, load_missing))
        for key, pending in waiting:
            pending.acquire()  # released by the loading thread when it is done
            pending.release()
            with self._lock:
                value = self._entries.get(key)
                if value is not None:
                    self._hits += 1
            found[key] = value if value is not None else self._load_unshared(key, load_missing)
        return found

    def _load(self, keys: list[Hashable], load_missing) -> dict[Hashable, numpy.ndarray]:
        values: dict[Hashable, numpy.ndarray] = {}
        try:
            loaded = load_missing(list(keys))
            values = {key: _read_only(loaded[key]) for key in keys}
        finally:
            with self._lock:  # stored before the waiters wake, so that they find them
                for key, value in values.items():
                    self._store(key, value)
                for key in keys:
                    self._loading.pop(key).release()
        return values

    def _load_unshared(self, key: Hashable, load_missing) -> numpy.ndarray:
        """Load ``key`` for a waiter whose loader failed or whose entry was already evicted."""
        with self._lock:
            self._misses += 1
        value = _read_only(load_missing([key])[key])
        with self._lock:
            self._store(key, value)
        return value

    def _store(self, key: Hashable, value: numpy.ndarray) -> None:
        size = value.nbytes
        if size > self.max_bytes:
            return
        if (old := self._entries.pop(key, None)) is not None:
            self._bytes -= old.nbytes
        self._entries[key] = value
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes


def _held_lock() -> threading.Lock:
    """A lock already acquired: whoever loads a key releases it, and waiters acquire it to wait
    (cheaper to make than a threading.Event)."""
    lock = threading.Lock()
    lock.acquire()
    return lock


def _read_only(array: numpy.ndarray) -> numpy.ndarray:
    array = numpy.asarray(array)
    array.flags.writeable = False
    return array


_default_cache: ChunkCache | None = ChunkCache(DEFAULT_CHUNK_CACHE_BYTES)


def configure_chunk_cache(max_bytes: int) -> None:
    """Replace the default cache used by pyramid reads with an empty one of ``max_bytes``;
    0 disables caching (each read then goes straight to storage)."""
    global _default_cache
    if max_bytes < 0:
        raise ValueError("max_bytes must be >= 0")
    _default_cache = ChunkCache(max_bytes) if max_bytes else None


def default_chunk_cache() -> ChunkCache | None:
    """The cache pyramid reads use, or None when caching is disabled."""
    return _default_cache


def read_chunked(
    array, prefix: Hashable, channels: Sequence[int], box: Sequence[tuple[int, int]],
    cache: ChunkCache | None, reader=None,
) -> numpy.ndarray:
    """``array[channels, box...]`` (a channel-first zarr array; ``box`` is a (start, stop) per
    further axis, already bounds-checked) assembled from whole decoded chunks out of ``cache``.

    Chunks are cached under ``(prefix, chunk index)``; the chunks not cached are read with one
    storage request (their bounding box), so their decoding runs in parallel.  Without a cache
    the region is read directly.  With a ``reader`` (a ShardedArrayReader of the same array)
    chunks are read one by one through it instead of through zarr.
    """
    channels = list(channels)
    if cache is None and reader is None:
        low, high = min(channels), max(channels) + 1
        block = numpy.asarray(array[(slice(low, high), *(slice(a, b) for a, b in box))])
        return block if len(channels) == high - low else block[[c - low for c in channels]]
    chunk_shape = tuple(int(side) for side in array.chunks)
    per_channel = chunk_shape[0]
    grid = [range(start // side, (stop - 1) // side + 1)
            for (start, stop), side in zip(box, chunk_shape[1:], strict=True)]
    channel_chunks = sorted({channel // per_channel for channel in channels})
    keys = [(prefix, index) for index in itertools.product(channel_chunks, *grid)]

    def read_direct(missing: list) -> dict:
        return {key: _read_whole_chunk(reader, key[1], chunk_shape, array.shape) for key in missing}

    def load_missing(missing: list) -> dict:
        if reader is not None:
            return read_direct(missing)
        indices = numpy.array([index for _, index in missing])
        low, high = indices.min(axis=0), indices.max(axis=0) + 1
        bounds = [(int(a) * side, min(int(b) * side, size)) for a, b, side, size in
                  zip(low, high, chunk_shape, array.shape, strict=True)]
        block = numpy.asarray(array[tuple(slice(a, b) for a, b in bounds)])
        loaded = {}
        for key in missing:
            parts = tuple(slice(i * side - a, min((i + 1) * side, size) - a) for i, side, (a, _),
                          size in zip(key[1], chunk_shape, bounds, array.shape, strict=True))
            loaded[key] = block[parts].copy()
        return loaded

    chunks = cache.get_many(keys, load_missing) if cache is not None else load_missing(keys)
    out = numpy.empty((len(channels), *(stop - start for start, stop in box)), array.dtype)
    for (_, index), chunk in chunks.items():
        origin = [i * side for i, side in zip(index[1:], chunk_shape[1:], strict=True)]
        source, target = [], []
        for (start, stop), first, extent in zip(box, origin, chunk.shape[1:], strict=True):
            low, high = max(start, first), min(stop, first + extent)
            source.append(slice(low - first, high - first))
            target.append(slice(low - start, high - start))
        rows = [n for n, channel in enumerate(channels) if channel // per_channel == index[0]]
        inside = [channels[n] - index[0] * per_channel for n in rows]
        if len(rows) == 1:
            out[(rows[0], *target)] = chunk[(inside[0], *source)]
        else:
            out[(rows, *target)] = chunk[(inside, *source)]
    return out


def read_chunk_view(
    reader, prefix: Hashable, channels: Sequence[int], box: Sequence[tuple[int, int]],
    cache: ChunkCache | None,
) -> numpy.ndarray | None:
    """What ``read_chunked`` returns, as a read-only view of one decoded chunk (no copy) when
    ``box`` and ``channels`` lie in a single chunk; None otherwise.  ``reader`` (the array's
    ShardedArrayReader) reads the chunk on a cache miss, and ``cache`` keeps it under the key
    ``read_chunked`` uses, so both share the chunks they decode."""
    chunk_shape, shape = reader.chunk_shape, reader.shape
    index = []
    for (start, stop), side in zip(box, chunk_shape[1:], strict=True):
        first = start // side
        if (stop - 1) // side != first:
            return None
        index.append(first)
    per_channel = chunk_shape[0]
    if not channels:
        return None
    channel_chunk = channels[0] // per_channel
    if any(channel // per_channel != channel_chunk for channel in channels):
        return None
    key = (prefix, (channel_chunk, *index))
    if cache is None:
        chunk = _read_whole_chunk(reader, key[1], chunk_shape, shape)
        chunk.flags.writeable = False
    else:
        chunk = cache.get_or_load(
            key, lambda: _read_whole_chunk(reader, key[1], chunk_shape, shape))
    first_channel = channel_chunk * per_channel
    inside = [channel - first_channel for channel in channels]
    picked = slice(inside[0], inside[-1] + 1) if inside == list(
        range(inside[0], inside[-1] + 1)) else inside
    return chunk[(picked, *(slice(start - i * side, stop - i * side) for (start, stop), i, side
                            in zip(box, index, chunk_shape[1:], strict=True)))]


def _read_whole_chunk(reader, index: tuple[int, ...], chunk_shape: tuple[int, ...],
                      shape: tuple[int, ...]) -> numpy.ndarray:
    """Chunk ``index`` through ``reader``, cut to the array's extent at its edges."""
    chunk = reader.read_chunk(index)
    for i, side, size in zip(index, chunk_shape, shape, strict=True):
        if (i + 1) * side > size:
            break
    else:
        return chunk
    edge = tuple(slice(0, min(side, size - i * side)) for i, side, size in
                 zip(index, chunk_shape, shape, strict=True))
    return chunk[edge].copy()
