"""Tilescope's in-process tile render cost, each run in a fresh interpreter:

    python tiles_render.py time PYRAMID TILES OUT_JSON
    python tiles_render.py profile PYRAMID TILES OUT_TXT

TILES is a JSON list of [level, row, col] (level 0 = full resolution).  The pyramid's files are
evicted from the page cache first, so the first pass is cold (first touch in a fresh process,
data read from disk); two more passes over the same tiles are the warm ones.  Then each tile
once more with the files evicted and the decoded-chunk cache emptied before it ("every tile
cold").  `profile` runs a
cold pass and then a warm pass under cProfile, in this thread and in zarr's event-loop thread
(where zarr reads shard indexes and chunks and decodes them), top lines by cumulative time.
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

from tiles_common import (  # noqa: E402
    JPEG_QUALITY, evict_from_page_cache, every_tile_cold, read_json, resident_bytes, summary_ms, timed_passes, write_json,
)

PROFILE_LINES = 15


def opened(pyramid_path: str):
    """Evict the pyramid from the page cache, open it; return (render function, open seconds, files evicted)."""
    evicted = evict_from_page_cache(Path(pyramid_path))
    started = time.perf_counter()
    from tiler.render import open_pyramid, render_tile

    pyramid = open_pyramid(pyramid_path)
    open_seconds = time.perf_counter() - started

    def fetch(tile):
        return render_tile(pyramid, *tile, fmt="jpeg", quality=JPEG_QUALITY)

    return fetch, open_seconds, evicted


def time_tiles(pyramid_path: str, tiles_path: str, out_path: str) -> None:
    tiles = [tuple(t) for t in read_json(tiles_path)]
    fetch, open_seconds, evicted = opened(pyramid_path)
    cold = timed_passes(tiles, fetch, 1)[0]
    resident = resident_bytes(Path(pyramid_path))
    warm = timed_passes(tiles, fetch, 2)
    result = {"tool": "tilescope render_tile", "open_ms": open_seconds * 1e3, "evicted_files": evicted,
              "cold": summary_ms(cold), "resident_after_cold": resident, "warm": summary_ms(warm[0] + warm[1]),
              "bytes_per_tile": sum(len(fetch(t)) for t in tiles[:50]) / min(50, len(tiles))}
    result["phases_warm"] = phases(fetch, tiles)
    result["every_tile_cold"] = summary_ms(every_tile_cold(tiles, fetch, Path(pyramid_path), forget_decoded_chunks()))
    write_json(out_path, result)


def forget_decoded_chunks():
    """A function that empties Tilescope's decoded-chunk cache (keeping its budget)."""
    from tiler import chunk_cache

    def forget() -> None:
        cache = chunk_cache.default_chunk_cache()
        if cache is not None:
            cache.clear()

    return forget


def phases(fetch, tiles: list) -> dict:
    """Median ms per tile of render_tile's steps, warm: display mapping and encoding are timed by
    wrapping the functions tiler.render calls (whichever of these names it has); reading is the rest."""
    import tiler.render as render_module

    steps = [name for name in ("resolved_pixels", "to_display_pixels", "encode_image") if hasattr(render_module, name)]
    spent: dict[str, float] = {}
    originals = {name: getattr(render_module, name) for name in steps}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started
        return wrapper

    times: dict[str, list[float]] = {"read (the rest)": [], **{name: [] for name in steps}}
    try:
        for name, function in originals.items():
            setattr(render_module, name, timed(name, function))
        for tile in tiles:
            spent.clear()
            started = time.perf_counter()
            fetch(tile)
            total = time.perf_counter() - started
            for name in steps:
                times[name].append(spent.get(name, 0.0))
            times["read (the rest)"].append(total - sum(spent.values()))
    finally:
        for name, function in originals.items():
            setattr(render_module, name, function)
    return {step: summary_ms(values)["median_ms"] for step, values in times.items()}


def profile_tiles(pyramid_path: str, tiles_path: str, out_path: str) -> None:
    tiles = [tuple(t) for t in read_json(tiles_path)]
    fetch, _, _ = opened(pyramid_path)
    cold = profile(tiles, fetch, "cold (first touch, files evicted from the page cache)")
    warm = profile(tiles, fetch, "warm (the same tiles again)")
    Path(out_path).write_text(cold + "\n" + warm)


def profile(tiles: list, fetch, title: str) -> str:
    """cProfile of one pass over ``tiles``: the calling thread, then zarr's event-loop thread."""
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
    return (f"## {title}: calling thread (render_tile), {len(tiles)} tiles, by cumulative time\n"
            + _top(main_profile) + f"\n## {title}: zarr's event-loop thread\n" + _top(loop_profile))


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
    {"time": time_tiles, "profile": profile_tiles}[sys.argv[1]](*sys.argv[2:])
