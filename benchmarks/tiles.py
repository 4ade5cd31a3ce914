"""Tile serving speed, side by side in one run: Tilescope vs large_image (render) and vs nginx + dzsave (browser, HTTP).

    .venv/bin/python benchmarks/tiles.py                 # 16384² image, 512³ volume: ~3 minutes
    .venv/bin/python benchmarks/tiles.py --quick         # 4096², 256³: ~1.5 minutes
    .venv/bin/python benchmarks/tiles.py --git-ref HEAD  # measure a commit instead of the work tree
    .venv/bin/python benchmarks/tiles.py --skip-browser --skip-http   # render cost only

1. In-process render cost per 256² tile: tiler.render.render_tile on Tilescope's pyramid vs
   large_image getTile on a libvips pyramidal TIFF (deflate: lossless, like Tilescope's zarr
   chunks, so both decode and JPEG-encode), same random tiles across all levels, JPEG Q85;
   cold (fresh process, files evicted from the page cache) and warm (the same tiles again);
   plus a cProfile of render_tile, cold and warm.
2. Viewport fill time in headless Chromium (1920×1080 and a 390×844 @3x phone), fresh context
   per load, median of 5: Tilescope's viewer page vs the same OpenSeadragon on dzsave tiles
   served by nginx (see tiles_browser.py for the two things that bound it besides the server).
3. HTTP: cold p50 (first request per tile, one connection), then wrk with 32 connections for
   10 s on random level-0 tiles: Tilescope (`tilescope up`), nginx static, and nginx's
   proxy_cache in front of Tilescope (per-token and shared keys), warmed first; and cold
   level-0 XY and XZ tiles of a 3D volume.

Needs, besides the project's venv: a peer venv with large_image and pyvips (--peer-python),
nginx, wrk (else a slower Python load generator) and /usr/bin/chromium; missing ones are
named with the command that installs them.  Results and their reading: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiles_common import TILE, evict_from_page_cache, level_shapes, read_json, tile_sample, write_json  # noqa: E402
from tiles_report import report  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_PEER_PYTHON = "/tmp/benchvenv/bin/python"

INSTALL = {
    "peer": ("a Python with large_image and pyvips (kept out of the project's venv):\n"
             "      python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install 'large-image[tiff]' pyvips pyvips-binary\n"
             "    (or point --peer-python / TILESCOPE_BENCH_PEER_PYTHON at one)"),
    "nginx": "nginx:  apt-get update && apt-get install -y nginx-light",
    "wrk": "wrk (optional; without it a slower Python load generator runs):  apt-get install -y wrk",
    "chromium": "Chromium at /usr/bin/chromium:  apt-get install -y chromium   (or --skip-browser)",
}


def main() -> None:
    options = parse_args()
    if options.git_ref:
        run_on_snapshot(options.git_ref)
    missing = prerequisites(options)
    if missing:
        print("benchmarks/tiles.py cannot run; install:\n" + "\n".join(f"  - {INSTALL[m]}" for m in missing),
              file=sys.stderr)
        sys.exit(2)
    if not shutil.which("wrk") and not options.skip_http:
        print(f"note: {INSTALL['wrk']}")
    size = options.size or (4096 if options.quick else 16384)
    own_workdir = options.workdir is None
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="tilescope-bench-tiles-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)
    results: dict = {"size": size, "machine": machine(), "command": " ".join([Path(sys.executable).name] + sys.argv),
                     "code": os.environ.get("TILESCOPE_BENCH_CODE", f"working tree of {REPO}")}
    print(f"tile benchmark: {size}×{size} uint8, workdir {workdir}\nmachine: {results['machine']['cpu']}, "
          f"{results['machine']['nproc']} CPUs, Python {platform.python_version()}\ncode: {results['code']}")
    clock = Clock()
    try:
        inputs = prepare_inputs(workdir, size, options.peer_python, clock)
        if options.volume and not options.skip_http:
            inputs["volume"] = prepare_volume(workdir, options.volume, clock)
        results["inputs"] = inputs
        if not options.skip_render:
            results["render"] = bench_render(workdir, size, options, inputs, clock)
        if not (options.skip_http and options.skip_browser):
            results.update(bench_served(workdir, size, options, inputs, clock))
    finally:
        if not options.keep:
            cleanup(workdir, own_workdir)
    results["phases_s"] = clock.phases
    results["machine"]["loadavg_end"] = os.getloadavg()
    report(results)
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=1, default=str))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4096² image, 3 browser loads per case")
    parser.add_argument("--size", type=int, help="image side in pixels (default 16384, --quick 4096)")
    parser.add_argument("--per-level", type=int, default=60, help="random tiles per level for the render cost")
    parser.add_argument("--repeats", type=int, help="browser loads per viewport and server (default 5, --quick 3)")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cold-tiles", type=int, default=100, help="level-0 tiles fetched once each for cold p50")
    parser.add_argument("--volume", type=int, help="side of the 3D uint8 volume for cold XY/XZ tiles "
                        "(default 512, --quick 256; 0 skips)")
    parser.add_argument("--peer-python", default=os.environ.get("TILESCOPE_BENCH_PEER_PYTHON", DEFAULT_PEER_PYTHON),
                        help="Python with large_image[tiff] and pyvips")
    parser.add_argument("--workdir", help="keep inputs here and reuse them (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep every file made")
    parser.add_argument("--skip-render", action="store_true")
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--browser-webgl", action="store_true",
                        help="keep Chromium's (software, GPU-less) WebGL: OpenSeadragon then draws a few frames per second")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile pass of render_tile")
    parser.add_argument("--json", help="write every number here")
    parser.add_argument("--git-ref", help="measure this commit (extracted with git archive into a temporary "
                        "folder) instead of the working tree, e.g. HEAD while others edit the tree")
    options = parser.parse_args()
    options.repeats = options.repeats or (3 if options.quick else 5)
    if options.volume is None:
        options.volume = 256 if options.quick else 512
    return options


def run_on_snapshot(ref: str) -> None:
    """Extract ``ref`` with `git archive`, add these benchmark files, and run this script there."""
    snapshot = Path(tempfile.mkdtemp(prefix="tilescope-bench-code-"))
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(snapshot)], input=archive.stdout, check=True)
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref], capture_output=True, text=True,
                                check=True).stdout.strip()
        for own in HERE.glob("tiles*.py"):
            shutil.copy2(own, snapshot / "benchmarks" / own.name)
        arguments, skip = [], False
        for argument in sys.argv[1:]:  # drop --git-ref REF / --git-ref=REF
            if skip:
                skip = False
            elif argument == "--git-ref":
                skip = True
            elif not argument.startswith("--git-ref="):
                arguments.append(argument)
        env = dict(os.environ, PYTHONPATH=str(snapshot), TILESCOPE_BENCH_CODE=f"{ref} ({commit}) via git archive")
        print(f"measuring {ref} = {commit}, extracted to {snapshot}", flush=True)
        code = subprocess.run([sys.executable, str(snapshot / "benchmarks" / "tiles.py"), *arguments], env=env,
                              cwd=snapshot).returncode
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)
    sys.exit(code)


def prerequisites(options: argparse.Namespace) -> list[str]:
    missing = []
    peer = subprocess.run([options.peer_python, str(HERE / "tiles_peer.py"), "check"], capture_output=True, text=True) \
        if Path(options.peer_python).exists() else None
    if peer is None or peer.returncode:
        missing.append("peer")
    else:
        options.peer_versions = peer.stdout.strip()
    if not (options.skip_http and options.skip_browser) and not shutil.which("nginx"):
        missing.append("nginx")
    if not options.skip_browser and not Path("/usr/bin/chromium").exists():
        missing.append("chromium")
    return missing


def machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "loadavg_start": os.getloadavg(), "platform": platform.platform(),
            "python": platform.python_version()}


class Clock:
    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    def __call__(self, name: str):
        clock = self

        class Phase:
            def __enter__(self):
                self.started = time.perf_counter()
                print(f"-- {name} ...", flush=True)

            def __exit__(self, *exc):
                clock.phases[name] = round(time.perf_counter() - self.started, 1)
                print(f"   {name}: {clock.phases[name]:.1f} s", flush=True)

        return Phase()


# ------------------------------------------------------------------ inputs


def prepare_inputs(workdir: Path, size: int, peer_python: str, clock: Clock) -> dict:
    """The synthetic TIFF, Tilescope's pyramid of it, the peers' pyramidal TIFFs and dzsave tiles."""
    from tiler.synthetic import write_synthetic_tiff

    source = workdir / f"synthetic_{size}_uint8.tif"
    peer_dir = workdir / f"peer_{size}"
    pyramid = workdir / f"tilescope_{size}.ome.zarr"
    timings: dict = {}
    if not source.exists():
        with clock("generate synthetic TIFF"):
            partial = source.with_name(source.name + ".partial")
            write_synthetic_tiff(partial, (size, size), "uint8", tile=TILE)
            partial.rename(source)
    if not (peer_dir / "done.json").exists():
        with clock("libvips tiffsave (deflate, jpeg) + dzsave"):
            shutil.rmtree(peer_dir, ignore_errors=True)
            _run([peer_python, str(HERE / "tiles_peer.py"), "prepare", str(source), str(peer_dir),
                  str(peer_dir / "done.json")])
    timings.update(read_json(peer_dir / "done.json"))
    if not pyramid.exists():
        with clock("Tilescope write_pyramid"):
            import tiler

            started = time.perf_counter()
            with tiler.open_image(source) as image:
                tiler.write_pyramid(image, pyramid)
            timings["write_pyramid_s"] = time.perf_counter() - started
    return {"source": str(source), "pyramid": str(pyramid), "peer_dir": str(peer_dir),
            "static_root": str(peer_dir / "static"), "timings_s": timings}


def prepare_volume(workdir: Path, side: int, clock: Clock) -> str | None:
    """A side³ uint8 multi-page TIFF of the synthetic volume (None when the code has no 3D writer)."""
    try:
        from tiler.synthetic_volume import write_synthetic_tiff_stack
    except ImportError:
        print("no tiler.synthetic_volume.write_synthetic_tiff_stack: skipping the 3D tiles")
        return None
    path = workdir / f"volume_{side}_uint8.tif"
    if not path.exists():
        with clock("generate synthetic volume"):
            partial = path.with_name(path.name + ".partial")
            write_synthetic_tiff_stack(partial, (side, side, side), "uint8")
            partial.rename(path)
    return str(path)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


# ------------------------------------------------------------------ 1. render cost


def bench_render(workdir: Path, size: int, options, inputs: dict, clock: Clock) -> dict:
    tiles = tile_sample(size, options.per_level)
    tiles_json = workdir / "render_tiles.json"
    write_json(tiles_json, tiles)
    out: dict = {"tiles": len(tiles), "levels": len(level_shapes(size))}
    with clock("render cost: Tilescope render_tile"):
        _run([sys.executable, str(HERE / "tiles_render.py"), "time", inputs["pyramid"], str(tiles_json),
              str(workdir / "render_tilescope.json")])
        out["tilescope"] = read_json(workdir / "render_tilescope.json")
    if not options.no_profile:
        with clock("cProfile of Tilescope render_tile (cold pass, then warm pass)"):
            profile = workdir / "render_profile.txt"
            _run([sys.executable, str(HERE / "tiles_render.py"), "profile", inputs["pyramid"], str(tiles_json),
                  str(profile)])
            out["profile"] = profile.read_text()
    for name in ("deflate", "jpeg"):
        with clock(f"render cost: large_image on the {name} TIFF"):
            target = workdir / f"render_large_image_{name}.json"
            _run([options.peer_python, str(HERE / "tiles_peer.py"), "render",
                  str(Path(inputs["peer_dir"]) / f"peer_{name}.tif"), str(tiles_json), str(target)])
            out[f"large_image_{name}"] = read_json(target)
    return out


# ------------------------------------------------------------------ 2 and 3: served tiles


def bench_served(workdir: Path, size: int, options, inputs: dict, clock: Clock) -> dict:
    from tiles_browser import measure_fill, write_static_page
    from tiles_servers import Nginx, Portal, load_test, prime, sequential_get

    out: dict = {}
    static_root = Path(inputs["static_root"])
    levels = len(level_shapes(size))
    dz_top = math.ceil(math.log2(size))
    static_page = write_static_page(static_root, REPO / "frontend/static/vendor/openseadragon", size, size, levels, TILE)
    tiles_per_side = -(-size // TILE)
    portal = nginx = None
    try:
        with clock("start tilescope up, upload and convert"):
            portal = Portal(workdir / "portal_data")
            portal.login()
            info = portal.upload(Path(inputs["source"]))
            nginx = Nginx(workdir / "nginx", static_root, portal.port)
            # the volume twice, one dataset per plane: neither plane's tiles find chunks the other decoded
            volumes = {plane: portal.upload(Path(inputs["volume"])) for plane in ("xy", "xz")} \
                if inputs.get("volume") else None
        out["dataset"] = {k: info[k] for k in ("id", "width", "height", "tile_size", "levels")}
        tilescope_pattern = portal.tile_path(info, 0, "%d", "%d")
        static_pattern = f"/dz_files/{dz_top}/%d_%d.jpg"

        if not options.skip_http:
            with clock("HTTP cold p50 (first request per tile)"):
                rng = random.Random(11)
                picks = rng.sample(range(tiles_per_side ** 2), min(options.cold_tiles, tiles_per_side ** 2))
                cold = [(i // tiles_per_side, i % tiles_per_side) for i in picks]
                for pyramid in portal.pyramid_dirs():
                    evict_from_page_cache(pyramid)
                for row, col in cold:
                    evict_from_page_cache(static_root / "dz_files" / str(dz_top) / f"{col}_{row}.jpg")
                out["http_cold"] = {
                    "tilescope": sequential_get(portal.url, [tilescope_pattern % (r, c) for r, c in cold]),
                    "nginx": sequential_get(nginx.url(), [static_pattern % (c, r) for r, c in cold]),
                }

            if volumes:
                with clock("HTTP cold: XY and XZ tiles of the 3D volume"):
                    out["volume_cold"] = volume_cold(portal, volumes, options.volume)

        if not options.skip_browser:
            with clock(f"browser fill time ({options.repeats} loads per viewport and server)"):
                out["browser"] = measure_fill(f"{portal.url}/datasets/{info['id']}/view",
                                              ("admin@localhost", portal.password),
                                              nginx.url() + static_page, options.repeats, webgl=options.browser_webgl)

        if not options.skip_http:
            load = {"connections": options.connections, "seconds": options.seconds}
            rows = cols = tiles_per_side
            out["http_load"] = {}
            with clock("HTTP load: nginx static"):
                out["http_load"]["nginx static (dzsave)"] = load_test(
                    nginx.url(), static_pattern, rows, cols, True, workdir, **load)
            with clock("HTTP load: Tilescope (gunicorn)"):
                out["http_load"]["Tilescope (gunicorn)"] = load_test(
                    portal.url, tilescope_pattern, rows, cols, False, workdir, **load)
            every_tile = [tilescope_pattern % (r, c) for r in range(rows) for c in range(cols)]
            for label, which in (("nginx proxy_cache → Tilescope, per-token key", "proxy"),
                                 ("nginx proxy_cache → Tilescope, shared key + cached auth", "shared")):
                with clock(f"HTTP load: {label} (priming {len(every_tile)} tiles first)"):
                    primed = prime(nginx.url(which), every_tile)
                    check = prime(nginx.url(which), random.Random(5).sample(every_tile, min(50, len(every_tile))))
                    result = load_test(nginx.url(which), tilescope_pattern, rows, cols, False, workdir, **load)
                    result.update(primed=primed, after_priming=check)
                    out["http_load"][label] = result
    finally:
        if nginx:
            nginx.stop()
        if portal:
            portal.stop()
    return out


def volume_cold(portal, infos: dict, side: int, limit: int = 32) -> dict:
    """First request of level-0 XY and XZ tiles of the volume (one dataset per plane), each tile in
    chunks no earlier tile touched.

    Tiles are picked one slab of chunks apart along the plane's normal, so neither the page
    cache (files evicted) nor Tilescope's decoded-chunk cache has seen them.
    """
    from tiles_servers import sequential_get

    chunk = 64
    for pyramid in portal.pyramid_dirs():
        meta = json.loads((pyramid / "0" / "zarr.json").read_text())
        if len(meta["shape"]) == 4:
            codec = meta["codecs"][0]
            inner = codec["configuration"]["chunk_shape"] if codec["name"] == "sharding_indexed" else \
                meta["chunk_grid"]["configuration"]["chunk_shape"]
            chunk = int(inner[-1])
        evict_from_page_cache(pyramid)
    rng = random.Random(7)
    result: dict = {"side": side, "chunk": chunk}
    for plane, info in infos.items():
        rows, cols = (-(-n // info["tile_size"]) for n in info["planes"][plane][0]["shape"])
        tiles = [(slab * chunk + rng.randrange(chunk), row, col)
                 for slab in range(side // chunk) for row in range(rows) for col in range(cols)]
        tiles = rng.sample(tiles, min(limit, len(tiles)))
        paths = [portal.tile_path(info, 0, row, col) + f"&plane={plane}&slice={index}" for index, row, col in tiles]
        result[plane] = sequential_get(portal.url, paths)
    return result


def cleanup(workdir: Path, own_workdir: bool) -> None:
    if own_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
        return
    for name in ("portal_data", "nginx"):  # inputs stay in a --workdir for the next run
        shutil.rmtree(workdir / name, ignore_errors=True)
    for stale in workdir.glob("wrk_*.lua"):
        stale.unlink()


if __name__ == "__main__":
    main()
