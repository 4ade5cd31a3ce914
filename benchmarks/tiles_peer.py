"""The peers' side of the tile benchmark, run by the PEER venv's Python (large_image, pyvips):

    python tiles_peer.py check
    python tiles_peer.py prepare SOURCE_TIFF OUTDIR OUT_JSON   # pyramidal TIFFs + OUTDIR/static/dz_files
    python tiles_peer.py render TIFF TILES OUT_JSON            # large_image getTile cost

TILES is a JSON list of [level, row, col] with level 0 = full resolution, as Tilescope counts;
large_image counts z up from the smallest level, so z = levels - 1 - level.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiles_common import (  # noqa: E402
    JPEG_QUALITY, TILE, evict_from_page_cache, every_tile_cold, read_json, resident_bytes, summary_ms, timed_passes,
    write_json,
)

INSTALL_HINT = ("python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install 'large-image[tiff]' "
                "pyvips pyvips-binary")


def check() -> None:
    import large_image
    import large_image_source_tiff  # noqa: F401
    import pyvips

    print(f"large_image {large_image.__version__}, pyvips {pyvips.__version__}, "
          f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}")


def prepare(source: str, outdir: str, out_json: str) -> None:
    """The peers' inputs from the same synthetic TIFF: pyramidal TIFFs for large_image, dzsave tiles for nginx."""
    import pyvips

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    common = {"tile": True, "pyramid": True, "tile_width": TILE, "tile_height": TILE, "bigtiff": True}
    for name, options in (("deflate", {"compression": "deflate"}),
                          ("jpeg", {"compression": "jpeg", "Q": JPEG_QUALITY})):
        started = time.perf_counter()
        image = pyvips.Image.new_from_file(source, access="sequential")
        image.tiffsave(str(out / f"peer_{name}.tif"), **common, **options)
        timings[f"tiffsave_{name}_s"] = time.perf_counter() - started
    started = time.perf_counter()
    image = pyvips.Image.new_from_file(source, access="sequential")
    (out / "static").mkdir(exist_ok=True)
    image.dzsave(str(out / "static" / "dz"), tile_size=TILE, overlap=0, suffix=f".jpg[Q={JPEG_QUALITY}]")
    timings["dzsave_s"] = time.perf_counter() - started
    write_json(out_json, timings)


def render(tiff: str, tiles_json: str, out_json: str) -> None:
    """Cold pass (fresh process, file evicted from the page cache), then warm passes, with and without large_image's
    tile cache, then every tile cold (file evicted before each tile, tile cache bypassed)."""
    tiles = [tuple(t) for t in read_json(tiles_json)]
    evicted = evict_from_page_cache(Path(tiff))
    started = time.perf_counter()
    import large_image

    options = {"encoding": "JPEG", "jpegQuality": JPEG_QUALITY}
    source = large_image.open(tiff, **options)
    open_seconds = time.perf_counter() - started
    levels = source.levels
    meta = source.getMetadata()
    if (meta["tileWidth"], meta["tileHeight"]) != (TILE, TILE):
        raise SystemExit(f"{tiff}: large_image sees {meta['tileWidth']}x{meta['tileHeight']} tiles")

    def fetcher(src):
        return lambda tile: src.getTile(tile[2], tile[1], levels - 1 - tile[0])

    cold = timed_passes(tiles, fetcher(source), 1)[0]
    resident = resident_bytes(Path(tiff))
    warm = timed_passes(tiles, fetcher(source), 2)
    # getTile is wrapped by large_image's tile cache (methodcache); its __wrapped__ renders every time.
    render_only = getattr(type(source).getTile, "__wrapped__", None)
    if render_only is None:
        raise SystemExit("large_image's getTile has no __wrapped__: cannot measure it without its tile cache")
    uncached = lambda tile: render_only(source, tile[2], tile[1], levels - 1 - tile[0])  # noqa: E731
    warm_uncached = timed_passes(tiles, uncached, 2)
    result = {"tool": f"large_image {large_image.__version__} ({type(source).__name__})",
              "open_ms": open_seconds * 1e3, "levels": levels, "evicted_files": evicted,
              "cold": summary_ms(cold), "resident_after_cold": resident, "warm_cached": summary_ms(warm[0] + warm[1]),
              "warm": summary_ms(warm_uncached[0] + warm_uncached[1]),
              "every_tile_cold": summary_ms(every_tile_cold(tiles, uncached, Path(tiff))),
              "bytes_per_tile": sum(len(uncached(t)) for t in tiles[:50]) / min(50, len(tiles))}
    write_json(out_json, result)


if __name__ == "__main__":
    {"check": check, "prepare": prepare, "render": render}[sys.argv[1]](*sys.argv[2:])
