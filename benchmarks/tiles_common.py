"""Helpers shared by the tile benchmark's processes (standard library only: the peer venv imports it too)."""

from __future__ import annotations

import ctypes
import json
import math
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

#: Every tile in the comparison is a 256² tile, as Tilescope's default chunk and dzsave's tile size.
TILE = 256
#: madvise advice that drops a mapping's pages from the process (Linux).
MADV_DONTNEED = 4
#: JPEG quality of every tile: Tilescope's render_tile default; large_image and dzsave are set to it.
JPEG_QUALITY = 85


def percentile(values: Iterable[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in [0, 1]) of ``values``; NaN when empty."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: list[float]) -> dict:
    """Median, p95 and count of per-tile times given in seconds, as milliseconds."""
    return {"median_ms": percentile(seconds, 0.5) * 1e3, "p95_ms": percentile(seconds, 0.95) * 1e3,
            "n": len(seconds)}


def level_shapes(size: int, tile: int = TILE) -> list[tuple[int, int]]:
    """(height, width) of each level of a size² image, halving (rounding up) until it fits one tile."""
    shapes = [(size, size)]
    while max(shapes[-1]) > tile:
        height, width = shapes[-1]
        shapes.append(((height + 1) // 2, (width + 1) // 2))
    return shapes


def tile_sample(size: int, per_level: int, seed: int = 4) -> list[tuple[int, int, int]]:
    """Distinct random tiles (level, row, col), up to ``per_level`` of each level (level 0 = full size).

    Levels are shuffled together so that no tool reads one level's tiles in a row.
    """
    rng = random.Random(seed)
    tiles = []
    for level, (height, width) in enumerate(level_shapes(size)):
        rows, cols = -(-height // TILE), -(-width // TILE)
        picks = rng.sample(range(rows * cols), min(per_level, rows * cols))
        tiles += [(level, index // cols, index % cols) for index in picks]
    rng.shuffle(tiles)
    return tiles


def evict_from_page_cache(path: Path) -> int:
    """Drop the files under ``path`` (or the file) from the OS page cache; return how many files.

    fsync first (only clean pages can be dropped), then posix_fadvise(DONTNEED): only these
    files leave the cache, unlike a machine-wide drop_caches.  The kernel keeps pages that a
    process has mapped, so this process's own mappings of the files (libtiff maps the whole
    TIFF) are zapped first with madvise(DONTNEED); they fault back in on the next access.
    """
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    _unmap_pages({os.path.realpath(file) for file in files})
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return len(files)


def _unmap_pages(paths: set[str]) -> None:
    """madvise(MADV_DONTNEED) every mapping of ``paths`` in this process (Linux; else nothing)."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return
    spans = []
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] in paths:
            start, end = (int(value, 16) for value in fields[0].split("-"))
            spans.append((start, end - start))
    if spans:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        for start, length in spans:
            libc.madvise(start, length, MADV_DONTNEED)


def resident_bytes(path: Path) -> tuple[int, int] | None:
    """(bytes of the files under ``path`` in the OS page cache, their total size), from util-linux
    ``fincore``; None without it.  Shows how much of a "cold" pass the kernel really read."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if not shutil.which("fincore") or not files:
        return None
    done = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE",
                           *map(str, files)], capture_output=True, text=True, check=False)
    if done.returncode:
        return None
    pairs = [line.split() for line in done.stdout.splitlines() if line.strip()]
    return sum(int(res) for res, _ in pairs), sum(int(size) for _, size in pairs)


def every_tile_cold(tiles: list, fetch: Callable[[object], bytes], path: Path,
                    forget: Callable[[], None] = lambda: None) -> list[float]:
    """Seconds per tile when each tile's data must come from disk: before every tile (untimed),
    ``path``'s files are dropped from the page cache and ``forget()`` empties the tool's own
    decoded-data caches.  What a tool keeps of a file's layout (shard indexes, TIFF tile
    offsets) stays, as it would in a server."""
    evict_from_page_cache(path)  # fsync once: the files are not written, so their pages stay clean
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    real_paths = {os.path.realpath(file) for file in files}
    times = []
    for tile in tiles:
        _unmap_pages(real_paths)
        for file in files:
            fd = os.open(file, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        forget()
        started = time.perf_counter()
        body = fetch(tile)
        times.append(time.perf_counter() - started)
        if not body:
            raise RuntimeError(f"empty tile {tile}")
    return times


def timed_passes(tiles: list, fetch: Callable[[object], bytes], passes: int) -> list[list[float]]:
    """Seconds per tile for ``passes`` passes over ``tiles``; every fetch must return non-empty bytes."""
    results = []
    for _ in range(passes):
        times = []
        for tile in tiles:
            started = time.perf_counter()
            body = fetch(tile)
            times.append(time.perf_counter() - started)
            if not body:
                raise RuntimeError(f"empty tile {tile}")
        results.append(times)
    return results


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_json(path: str | os.PathLike, data: object) -> None:
    Path(path).write_text(json.dumps(data, indent=1))


def read_json(path: str | os.PathLike) -> object:
    return json.loads(Path(path).read_text())
