"""Pyramid speed, side by side in one run: Tilescope vs libvips (2D) and ome-zarr-py (3D)."""

# .venv/bin/python benchmarks/pyramid.py                      # the issue's sizes
# .venv/bin/python benchmarks/pyramid.py --size2d 8192 --size3d 256
# .venv/bin/python benchmarks/pyramid.py --quick              # 4096² and 128³, seconds
# .venv/bin/python benchmarks/pyramid.py --size2d 0 --same-codec  # 3D only, + ome-zarr-py zstd-1
#
# Each tool runs in its own fresh interpreter; wall time, CPU time and peak RSS come from
# os.wait4 on that process.  Inputs are generated once into --workdir and reused; outputs are
# deleted after each run unless --keep.  Results and their reading: docs/benchmarks.md.

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import Measurement, generate, own_rss_mib, print_table, ratio, run_tool  # noqa: E402
from _tools import VOLUME_WRITER_MODULES  # noqa: E402

#: Targets from issue 3: Tilescope wall time / peer wall time (and RSS) must not exceed these.
TARGET_VS_DZSAVE = 1.0
TARGET_VS_TIFFSAVE = 0.5
TARGET_RSS_VS_VIPS = 2.0
TARGET_3D_SPEEDUP = 3.0
#: The sizes the targets are stated for.
ISSUE_SIZE_2D, ISSUE_SIZE_3D = 16384, 1024


def main() -> None:
    options = _parse_args()
    workdir = Path(options.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; measuring process {own_rss_mib():.0f} MiB RSS")
    results: dict = {}
    if options.size2d:
        results["2d"] = bench_2d(workdir, options.size2d, options.repeat, options.keep)
    if options.size3d:
        results["3d"] = bench_3d(workdir, options.size3d, options.keep, options.same_codec)
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2))


def bench_2d(workdir: Path, size: int, repeat: int, keep: bool) -> dict:
    source = generate("2d", workdir / f"input_2d_{size}_uint8.tif", size)
    runs = [("tilescope", "out_2d.ome.zarr"), ("vips-dzsave", "out_2d_dz"),
            ("vips-tiffsave", "out_2d_vips.tif")]
    rows: list[Measurement] = []
    for attempt in range(repeat):
        for tool, name in runs:
            output = workdir / name
            _remove(workdir, name)
            label = tool if repeat == 1 else f"{tool} #{attempt + 1}"
            rows.append(run_tool(tool, source, output, label=label))
            if not keep:
                _remove(workdir, name)
    print_table(rows, f"2D: {size} x {size} uint8 tiled deflate BigTIFF "
                      f"({source.stat().st_size / 1e6:.0f} MB)")
    best = {tool: _best(rows, tool) for tool, _ in runs}
    ours, dz, tiff = best["tilescope"], best["vips-dzsave"], best["vips-tiffsave"]
    checks = [
        ("wall vs vips dzsave", ratio(ours, dz, "wall_s"), TARGET_VS_DZSAVE),
        ("wall vs vips tiffsave (deflate)", ratio(ours, tiff, "wall_s"), TARGET_VS_TIFFSAVE),
        ("peak RSS vs vips dzsave", ratio(ours, dz, "peak_rss_mib"), TARGET_RSS_VS_VIPS),
        ("peak RSS vs vips tiffsave", ratio(ours, tiff, "peak_rss_mib"), TARGET_RSS_VS_VIPS),
    ]
    _print_checks(checks, "best of each tool" if repeat > 1 else "")
    if size < ISSUE_SIZE_2D:
        print(f"  (the targets are for {ISSUE_SIZE_2D}²; small images are dominated by Python "
              "start-up and imports, ~0.35 s and ~52 MiB)")
    return {"size": size, "runs": [row.as_dict() for row in rows],
            "ratios": {name: value for name, value, _ in checks}}


def bench_3d(workdir: Path, size: int, keep: bool, same_codec: bool = False) -> dict:
    source = generate("3d", workdir / f"input_3d_{size}_uint16", size)
    rows = []
    if not any(importlib.util.find_spec(name) for name in VOLUME_WRITER_MODULES):
        print("\n3D Tilescope: skipped: 3D writer not available")
        ours = None
    else:
        _remove(workdir, "out_3d.ome.zarr")
        ours = run_tool("tilescope-3d", source, workdir / "out_3d.ome.zarr")
        rows.append(ours)
        if not keep:
            _remove(workdir, "out_3d.ome.zarr")
    peers = ["ome-zarr-py"] + (["ome-zarr-py-same-codec"] if same_codec else [])
    for tool in peers:
        _remove(workdir, "out_3d_omezarr.ome.zarr")
        rows.append(run_tool(tool, source, workdir / "out_3d_omezarr.ome.zarr"))
        if not keep:
            _remove(workdir, "out_3d_omezarr.ome.zarr")
    print_table(rows, f"3D: {size}³ uint16, a folder of {size} TIFF slices "
                      f"({size ** 3 * 2 / 2**30:.2f} GiB)")
    speedups = {}
    for peer in rows[1 if ours else 0:]:
        speedup = speedups[peer.tool] = ratio(peer, ours, "wall_s") if ours else None
        if speedup is None:
            print(f"speed-up vs {peer.tool}: not measured")
        else:
            verdict = "met" if speedup >= TARGET_3D_SPEEDUP else "NOT met"
            print(f"speed-up vs {peer.tool}: {speedup:.2f}x "
                  f"(target >= {TARGET_3D_SPEEDUP}x: {verdict})")
    return {"size": size, "runs": [row.as_dict() for row in rows],
            "speedup": speedups.get("ome-zarr-py"), "speedups": speedups}


def _best(rows: list[Measurement], tool: str) -> Measurement:
    """The fastest successful run of ``tool`` (or its failed run, to show why)."""
    mine = [row for row in rows if row.tool.split(" #")[0] == tool]
    good = [row for row in mine if row.ok]
    return min(good, key=lambda row: row.wall_s) if good else mine[0]


def _print_checks(checks: list[tuple[str, float | None, float]], note: str) -> None:
    print(f"\nTilescope ratios{f' ({note})' if note else ''}:")
    for name, value, target in checks:
        if value is None:
            print(f"  {name:<34} not measured")
            continue
        verdict = "met" if value <= target else "NOT met"
        print(f"  {name:<34} {value:5.2f}x  (target <= {target}x: {verdict})")


def _remove(workdir: Path, name: str) -> None:
    for path in (workdir / name, workdir / f"{name}.dzi", workdir / f"{name}_files"):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size2d", type=int, default=ISSUE_SIZE_2D,
                        help="2D side in px (0 skips 2D)")
    parser.add_argument("--size3d", type=int, default=ISSUE_SIZE_3D,
                        help="3D side in px (0 skips 3D)")
    parser.add_argument("--quick", action="store_true", help="small sizes: 4096² and 128³")
    parser.add_argument("--repeat", type=int, default=1, help="run each 2D tool N times")
    parser.add_argument("--workdir", default="/tmp/tilescope-bench",
                        help="where inputs are cached and outputs written")
    parser.add_argument("--keep", action="store_true", help="keep the outputs")
    parser.add_argument("--same-codec", action="store_true",
                        help="3D: also run ome-zarr-py with Tilescope's codec (zstd-1)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    options = parser.parse_args()
    if options.quick:
        options.size2d, options.size3d = min(options.size2d, 4096), min(options.size3d, 128)
    return options


if __name__ == "__main__":
    main()
