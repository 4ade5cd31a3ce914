"""The Markdown report of benchmarks/tiles.py: every measured number in tables, with the ratios against the targets."""

from __future__ import annotations

import math

#: Targets of issue 4, as ratios against the peers measured in the same run.
TARGET_RENDER_VS_LARGE_IMAGE = 0.5
TARGET_FILL_VS_NGINX = 1.5


def _verdict(ratio: float, target: float) -> str:
    if math.isnan(ratio):
        return "n/a"
    return f"{ratio:.2f}× (target ≤ {target}×: {'met' if ratio <= target else 'NOT met'})"


def _median(values: list[float]) -> float:
    values = sorted(values)
    if not values:
        return math.nan
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def report(results: dict) -> None:
    print(f"\n## Results: {results['size']}² uint8, {results['machine']['nproc']} × {results['machine']['cpu']}")
    render = results.get("render")
    if render:
        ts, li, lj = render["tilescope"], render["large_image_deflate"], render["large_image_jpeg"]
        print(f"\n### 1. In-process render cost per 256² JPEG tile ({render['tiles']} random tiles over "
              f"{render['levels']} levels, ms)\n")
        print("| tool | cold median | cold p95 | warm median | warm p95 | bytes/tile |\n|---|---:|---:|---:|---:|---:|")
        for label, row, warm_key in (("Tilescope render_tile (OME-Zarr, blosc-zstd)", ts, "warm"),
                                     ("large_image getTile, deflate TIFF (tile cache bypassed)", li, "warm"),
                                     ("large_image getTile, deflate TIFF (its tile cache on)", li, "warm_cached"),
                                     ("large_image getTile, JPEG TIFF (tile cache bypassed)", lj, "warm")):
            print(f"| {label} | {row['cold']['median_ms']:.2f} | {row['cold']['p95_ms']:.2f} | "
                  f"{row[warm_key]['median_ms']:.3f} | {row[warm_key]['p95_ms']:.3f} | {row['bytes_per_tile']:.0f} |")
        if "every_tile_cold" in ts and "every_tile_cold" in li:
            a, b = ts["every_tile_cold"], li["every_tile_cold"]
            print(f"\nEvery tile cold (files evicted, and Tilescope's decoded-chunk cache emptied, before each tile; "
                  f"median / p95 ms): Tilescope {a['median_ms']:.2f} / {a['p95_ms']:.2f}, large_image (deflate, tile "
                  f"cache bypassed) {b['median_ms']:.2f} / {b['p95_ms']:.2f}: {a['median_ms'] / b['median_ms']:.2f}×")
        for label, row in (("Tilescope", ts), ("large_image (deflate)", li)):
            if row.get("resident_after_cold"):
                res, size = row["resident_after_cold"]
                print(f"{label}: {res / 2**20:.1f} of {size / 2**20:.1f} MiB of its files in the page cache after the "
                      f"cold pass (what the kernel read for it, read-ahead included)")
        cold_ratio = ts["cold"]["median_ms"] / li["cold"]["median_ms"]
        warm_ratio = ts["warm"]["median_ms"] / li["warm"]["median_ms"]
        print(f"\nTilescope / large_image (deflate), cold median: {_verdict(cold_ratio, TARGET_RENDER_VS_LARGE_IMAGE)}")
        print(f"Tilescope / large_image (deflate), warm median, both rendering: "
              f"{_verdict(warm_ratio, TARGET_RENDER_VS_LARGE_IMAGE)}")
        print("render_tile steps, warm median ms: " + ", ".join(f"{k} {v:.3f}" for k, v in ts["phases_warm"].items()))
        print(f"open: Tilescope {ts['open_ms']:.0f} ms, large_image {li['open_ms']:.0f} ms (imports included)")
        if render.get("profile"):
            print("\n### cProfile of render_tile\n\n" + render["profile"])
    browser = results.get("browser")
    if browser:
        print("\n### 2. Headless Chromium: navigation → every visible tile drawn (ms, fresh context per load)\n")
        print("| viewport, viewer | Tilescope median | nginx + dzsave median | ratio | target ≤ 1.5× | tiles (T / n) | "
              "first tile requested at (T / n) | tile response median (T / n) |\n|---|---:|---:|---:|---|---:|---:|---:|")
        for name, runs in browser.items():
            t = _median([r["fill_ms"] for r in runs["tilescope"]])
            n = _median([r["fill_ms"] for r in runs["nginx"]])
            tiles = f"{_median([r['tile_requests'] for r in runs['tilescope']]):.0f} / " \
                    f"{_median([r['tile_requests'] for r in runs['nginx']]):.0f}"
            first = " / ".join(f"{_median([r['first_tile_ms'] for r in runs[k]]):.0f}" for k in ("tilescope", "nginx"))
            each = " / ".join(f"{_median([r['tile_median_ms'] for r in runs[k]]):.1f}" for k in ("tilescope", "nginx"))
            print(f"| {name} | {t:.0f} | {n:.0f} | {t / n:.2f}× | {'met' if t / n <= TARGET_FILL_VS_NGINX else 'NOT met'} "
                  f"| {tiles} | {first} | {each} |")
            loads = {target: ", ".join(f"{r['fill_ms']:.0f}" for r in runs[target]) for target in ("tilescope", "nginx")}
            print(f"|  (every load) | {loads['tilescope']} | {loads['nginx']} | | | | | |")
    cold = results.get("http_cold")
    if cold:
        print("\n### 3a. HTTP, first request per level-0 tile (one connection, ms)\n")
        print("| server | p50 | p95 | n | non-200 | bytes/tile |\n|---|---:|---:|---:|---:|---:|")
        for name, row in cold.items():
            print(f"| {name} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['n']} | {row['non_200']} | "
                  f"{row['bytes_per_tile']:.0f} |")
        print(f"\nTilescope / nginx cold p50: {cold['tilescope']['p50_ms'] / cold['nginx']['p50_ms']:.1f}×")
    load = results.get("http_load")
    if load:
        base = load["nginx static (dzsave)"]
        tool = base["tool"]
        print(f"\n### 3b. HTTP load, random level-0 tiles, 32 connections ({tool})\n")
        print("| server | tiles/s | p50 ms | p99 ms | errors | tiles/s vs nginx |\n|---|---:|---:|---:|---:|---:|")
        for name, row in load.items():
            print(f"| {name} | {row['tiles_per_s']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                  f"{row['non_2xx']}{' ' + row['socket_errors'] if row['socket_errors'] else ''} | "
                  f"{row['tiles_per_s'] / base['tiles_per_s']:.2f}× |")
        for name, row in load.items():
            if "primed" in row:
                print(f"{name}: priming {row['primed']}, then {row['after_priming']}")
    volume = results.get("volume_cold")
    if volume:
        print(f"\n### 3c. HTTP, first request per level-0 tile of a {volume['side']}³ uint8 volume "
              f"({volume['chunk']}³ chunks; every tile in chunks not read before; ms)\n")
        print("| plane | p50 | p95 | n | non-200 | bytes/tile |\n|---|---:|---:|---:|---:|---:|")
        for plane in ("xy", "xz"):
            row = volume[plane]
            print(f"| {plane} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['n']} | {row['non_200']} | "
                  f"{row['bytes_per_tile']:.0f} |")
    print(f"\nphases (s): {results['phases_s']}")
    print(f"load average (1, 5, 15 min) at start {results['machine']['loadavg_start']}, "
          f"at end {results['machine']['loadavg_end']} (other work on the machine skews every number)")
