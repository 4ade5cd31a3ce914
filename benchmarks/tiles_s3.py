"""Tiles from S3 (a loopback S3 server) vs a local folder, cold and warm, through the tiler's render path."""

# .venv/bin/python benchmarks/tiles_s3.py                      # 8192² uint8 mosaic, 200 tiles, 3 rounds
# .venv/bin/python benchmarks/tiles_s3.py --size 4096 --tiles 100 --rounds 1   # quick
# .venv/bin/python benchmarks/tiles_s3.py --order sweep         # a block of neighbouring tiles, row by row
# .venv/bin/python benchmarks/tiles_s3.py --endpoint http://127.0.0.1:9000 --key K --secret S --bucket B
#                                                               # a real S3-compatible server (MinIO, Ceph RGW)
#
# One pyramid is built once and published twice: into a local folder and into a bucket. Each round, for each store,
# in alternating order: "cold" = a fresh process state (open-pyramid cache and chunk cache emptied) rendering the
# same sample of level-0 tiles once (every chunk comes from the store; local files stay in the page cache,
# so local cold = decode + render from memory); "warm" = the same tiles again (chunk cache hits). By default the
# S3 server is moto's standalone server (pure Python) on loopback, a pessimistic stand-in for a real object store.
# --order random (default) samples tiles anywhere; --order sweep takes a square block of neighbouring tiles (at the
# grid's centre) row-major, like a viewer filling a screen.

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tiler.chunk_cache import configure_chunk_cache, default_chunk_cache  # noqa: E402
from tiler.pyramid import write_pyramid  # noqa: E402
from tiler.readers import open_image  # noqa: E402
from tiler.render import open_pyramid, render_tile  # noqa: E402
from tiler.storage import open_store  # noqa: E402
from tiler.synthetic import write_synthetic_tiff  # noqa: E402


def build(workdir: Path, size: int) -> Path:
    pyramid = workdir / f"mosaic-{size}.ome.zarr"
    if not (pyramid / "zarr.json").exists():
        source = write_synthetic_tiff(workdir / f"mosaic-{size}.tif", (size, size), "uint8", tile=256)
        with open_image(source) as image:
            write_pyramid(image, pyramid, tile_size=256)
    return pyramid


def pick_tiles(rows: int, cols: int, count: int, order: str) -> list[tuple[int, int]]:
    """``count`` level-0 tiles: a random sample, or a centred block of neighbours row-major ("sweep")."""
    count = min(count, rows * cols)
    if order == "random":
        return random.Random(7).sample([(r, c) for r in range(rows) for c in range(cols)], count)
    width = min(cols, math.ceil(math.sqrt(count)))
    top, left = max(0, (rows - math.ceil(count / width)) // 2), (cols - width) // 2
    block = [(r, c) for r in range(top, rows) for c in range(left, left + width)]
    return block[:count]


def time_tiles(location, tiles) -> list[float]:
    pyramid = open_pyramid(location)
    times = []
    for row, col in tiles:
        start = time.perf_counter()
        render_tile(pyramid, 0, row, col, fmt="jpeg")
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(ordered), 3),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
            "mean_ms": round(statistics.fmean(ordered), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=8192, help="side of the square uint8 mosaic")
    parser.add_argument("--tiles", type=int, default=200, help="level-0 tiles sampled per pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--order", choices=("random", "sweep"), default="random",
                        help="random tiles, or a block of neighbouring tiles row by row")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tilescope-bench-s3")
    parser.add_argument("--endpoint", help="S3 endpoint (default: start moto's server on loopback)")
    parser.add_argument("--key", default="bench")
    parser.add_argument("--secret", default="bench-secret")
    parser.add_argument("--bucket", help="an existing bucket (default: a new one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    configure_chunk_cache(256 << 20)
    pyramid = build(args.workdir, args.size)

    server = None
    if args.endpoint is None:
        from tests.s3 import ACCESS_KEY, SECRET_KEY, start_s3_server

        server = start_s3_server()
        args.endpoint, args.key, args.secret = server.endpoint, ACCESS_KEY, SECRET_KEY
    options = {"endpoint_url": args.endpoint, "key": args.key, "secret": args.secret,
               "client_kwargs": {"region_name": "us-east-1"}}
    try:
        if args.bucket is None:
            import boto3

            args.bucket = f"bench-{int(time.time())}"
            boto3.client("s3", endpoint_url=args.endpoint, aws_access_key_id=args.key,
                         aws_secret_access_key=args.secret, region_name="us-east-1").create_bucket(Bucket=args.bucket)
        local_store = open_store(args.workdir / "store")
        s3_store = open_store(f"s3://{args.bucket}/bench", options)
        stores = {"local": local_store, "s3": s3_store}
        locations = {}
        for name, store in stores.items():
            location = store.location(f"pyramids/{pyramid.name}")
            location.delete()
            staged = args.workdir / f"staged-{name}"
            shutil.rmtree(staged, ignore_errors=True)
            shutil.copytree(pyramid, staged)
            start = time.perf_counter()
            location.publish_tree(staged)
            print(f"published to {name} in {time.perf_counter() - start:.1f} s")
            locations[name] = location
        rows, cols = open_pyramid(locations["local"]).tile_grid(0)
        tiles = pick_tiles(rows, cols, args.tiles, args.order)
        results: dict = {name: {"cold": [], "warm": []} for name in stores}
        for round_ in range(args.rounds):
            order = list(stores) if round_ % 2 == 0 else list(reversed(stores))
            for name in order:
                open_pyramid.cache_clear()
                default_chunk_cache().clear()
                results[name]["cold"] += time_tiles(locations[name], tiles)
                results[name]["warm"] += time_tiles(locations[name], tiles)
        report = {"machine": platform.node(), "size": args.size, "tiles": len(tiles), "rounds": args.rounds,
                  "order": args.order,
                  "endpoint": "moto (loopback)" if server else args.endpoint,
                  "results": {name: {kind: summary(times) for kind, times in kinds.items()}
                              for name, kinds in results.items()}}
        for kind in ("cold", "warm"):
            local, s3 = report["results"]["local"][kind], report["results"]["s3"][kind]
            report[f"{kind}_ratio_s3_over_local"] = round(s3["median_ms"] / local["median_ms"], 2)
        print(json.dumps(report, indent=1))
        print("\n| ms per tile | local median | local p95 | S3 median | S3 p95 | S3 / local |")
        print("|---|---:|---:|---:|---:|---:|")
        for kind in ("cold", "warm"):
            local, s3 = report["results"]["local"][kind], report["results"]["s3"][kind]
            print(f"| {kind} | {local['median_ms']} | {local['p95_ms']} | {s3['median_ms']} | {s3['p95_ms']} | "
                  f"{report[f'{kind}_ratio_s3_over_local']}× |")
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
