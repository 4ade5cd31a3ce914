"""Tilescope's in-process tile render cost, in a fresh interpreter: `python tiles_render.py PYRAMID TILES OUT [PROFILE]`.

TILES is a JSON list of [level, row, col] (level 0 = full resolution).  The pyramid's files are
evicted from the page cache first, so the first pass is cold (first touch in a fresh process,
data read from disk); two more passes over the same tiles are the warm ones.  With PROFILE, a
fourth pass runs under cProfile -- in this thread and in zarr's event-loop thread, where zarr
reads shard indexes and chunks and decodes them -- and both reports go to that file.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiles_common import JPEG_QUALITY, evict_from_page_cache, read_json, summary_ms, timed_passes, write_json  # noqa: E402

PROFILE_LINES = 15


def main(pyramid_path: str, tiles_path: str, out_path: str, profile_path: str | None = None) -> None:
    tiles = [tuple(t) for t in read_json(tiles_path)]
    evicted = evict_from_page_cache(Path(pyramid_path))
    started = time.perf_counter()
    from tiler.render import open_pyramid, render_tile

    pyramid = open_pyramid(pyramid_path)
    open_seconds = time.perf_counter() - started

    def fetch(tile):
        return render_tile(pyramid, *tile, fmt="jpeg", quality=JPEG_QUALITY)

    cold, *warm = timed_passes(tiles, fetch, 3)
    result = {"tool": "tilescope render_tile", "open_ms": open_seconds * 1e3, "evicted_files": evicted,
              "cold": summary_ms(cold), "warm": summary_ms(warm[0] + warm[1]),
              "bytes_per_tile": sum(len(fetch(t)) for t in tiles[:50]) / min(50, len(tiles))}
    result["phases_warm"] = phases(pyramid, tiles)
    if profile_path:
        Path(profile_path).write_text(profile(tiles, fetch))
    write_json(out_path, result)


def phases(pyramid, tiles: list) -> dict:
    """Median ms per tile of render_tile's three steps (read, window to 8 bits, JPEG encode), warm."""
    from tiler.display import encode_image, to_display_pixels

    times: dict[str, list[float]] = {"read_region": [], "to_display_pixels": [], "encode_image": []}
    size = pyramid.tile_size
    for level, row, col in tiles:
        height, width = pyramid.levels[level]
        y0, x0 = row * size, col * size
        started = time.perf_counter()
        data = pyramid.read_region(level, y0, min(y0 + size, height), x0, min(x0 + size, width))
        read = time.perf_counter()
        pixels = to_display_pixels(data, pyramid.windows, pyramid.colors)
        mapped = time.perf_counter()
        encode_image(pixels, "jpeg", quality=JPEG_QUALITY)
        done = time.perf_counter()
        times["read_region"].append(read - started)
        times["to_display_pixels"].append(mapped - read)
        times["encode_image"].append(done - mapped)
    return {step: summary_ms(values)["median_ms"] for step, values in times.items()}


def profile(tiles: list, fetch) -> str:
    """cProfile of one warm pass: the calling thread, then zarr's event-loop thread."""
    from zarr.core.sync import _get_loop

    loop = _get_loop()
    loop_profile = cProfile.Profile()
    switched = threading.Event()

    def switch(on: bool) -> None:  # runs in the loop thread: cProfile hooks the thread that enables it
        loop_profile.enable() if on else loop_profile.disable()
        switched.set()

    loop.call_soon_threadsafe(switch, True)
    switched.wait(10)
    main_profile = cProfile.Profile()
    main_profile.enable()
    for tile in tiles:
        fetch(tile)
    main_profile.disable()
    switched.clear()
    loop.call_soon_threadsafe(switch, False)
    switched.wait(10)
    return (f"## calling thread (render_tile), {len(tiles)} tiles, sorted by cumulative time\n"
            + _top(main_profile) + "\n## zarr event-loop thread (shard index reads, chunk reads, decode)\n"
            + _top(loop_profile))


def _top(profiler: cProfile.Profile) -> str:
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(PROFILE_LINES)
    lines = text.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    total = next((line.strip() for line in lines if "function calls" in line), "")
    kept = [_short_paths(line) for line in lines[start:] if line.strip()]
    return "\n".join([total] + kept) + "\n"


def _short_paths(line: str) -> str:
    """Paths relative to the code measured, to site-packages or to the standard library."""
    import sysconfig

    code = str(Path(__file__).resolve().parent.parent) + "/"
    for prefix, short in ((code, ""), (sysconfig.get_paths()["purelib"] + "/", ""),
                          (sysconfig.get_paths()["stdlib"] + "/", "")):
        line = line.replace(prefix, short)
    return line


if __name__ == "__main__":
    main(*sys.argv[1:])
