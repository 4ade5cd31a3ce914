"""Viewport fill time in headless Chromium: Tilescope's viewer page vs the same OpenSeadragon on nginx-served dzsave tiles.

The clock is the page's own: performance.now() (0 = navigation start) in the first animation
frame where OpenSeadragon's tiled image is fully loaded (every tile the viewport needs at its
best level is loaded and drawn) and no image job is in flight -- the condition of the browser
test.  An init script polls it every frame on both pages, so both are measured alike.

Two things bound the fill time on loopback more than the server does, and are reported:
- Without a GPU, Chromium's WebGL is software (SwiftShader) and OpenSeadragon 6's default WebGL
  drawer runs at a few frames per second; WebGL is switched off (--disable-webgl) so that
  OpenSeadragon uses its canvas drawer at ~60 fps, as a real laptop or phone draws with a GPU
  (--browser-webgl keeps the software WebGL).
- OpenSeadragon requests at most maxTilesPerFrame (default 1; 10 in the first frame after
  opening, halving each frame) new tiles per frame.  The "viewer-limit lifted" variant sets
  64 on the tiled image as soon as it exists, on both pages alike, so the server's speed shows.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
NO_WEBGL = ["--disable-webgl"]
#: Variants: name -> maxTilesPerFrame set on the tiled image (None: OpenSeadragon's default, as shipped).
VARIANTS = {"as shipped": None, "viewer limit lifted (maxTilesPerFrame 64)": 64}
VIEWPORTS = {
    "laptop 1920×1080": {"viewport": {"width": 1920, "height": 1080}},
    "phone 390×844 @3x": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
                          "device_scale_factor": 3},
}

FILLED_PROBE = """
(() => {
  const tune = %s;
  const check = () => {
    const state = window.tilescope, viewer = state && state.viewer;
    const item = viewer && viewer.world && viewer.world.getItemCount() > 0 && viewer.world.getItemAt(0);
    if (item && tune && item.maxTilesPerFrame !== tune) {
      item.maxTilesPerFrame = tune;
      item._currentMaxTilesPerFrame = tune;
    }
    if (item && item.getFullyLoaded() && viewer.imageLoader.jobsInProgress === 0
        && !(item._lastDrawn && item._lastDrawn.length === 0)) {
      window.__tilesFilledAt = performance.now();
      return;
    }
    requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
})();
"""

#: The plain page: OpenSeadragon with viewer.js's options and tile source geometry, over dzsave's files.
STATIC_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>OpenSeadragon on static tiles</title>
<style>html, body {{ margin: 0; background: #111; }} #viewer {{ position: absolute; background: #000; }}</style>
</head><body><div id="viewer"></div>
<script src="osd/openseadragon.min.js"></script>
<script>
const info = {info};
const box = Object.fromEntries(new URLSearchParams(location.search));
const element = document.getElementById('viewer');
Object.assign(element.style, {{left: `${{box.x || 0}}px`, top: `${{box.y || 0}}px`,
  width: `${{box.w || window.innerWidth}}px`, height: `${{box.h || window.innerHeight}}px`}});
const maxLevel = Math.ceil(Math.log2(Math.max(info.width, info.height, 2)));
// The same options as frontend/static/js/viewer.js; tiles at dzsave's paths (OSD level = DZI level).
window.tilescope = {{ viewer: OpenSeadragon({{
  element, prefixUrl: 'osd/images/',
  tileSources: {{ width: info.width, height: info.height, tileSize: info.tile_size, tileOverlap: 0,
    minLevel: Math.max(0, maxLevel - (info.levels - 1)), maxLevel,
    getTileUrl: (level, x, y) => `dz_files/${{level}}/${{x}}_${{y}}.jpg` }},
  showNavigator: window.innerWidth > 600, navigatorPosition: 'TOP_RIGHT', showRotationControl: false,
  gestureSettingsTouch: {{ pinchRotate: false, flickEnabled: true }},
  maxZoomPixelRatio: 4, visibilityRatio: 0.5, timeout: 60000,
}}) }};
</script></body></html>
"""


def write_static_page(static_root: Path, osd_dir: Path, width: int, height: int, levels: int, tile: int) -> str:
    """Copy OpenSeadragon beside dzsave's tiles and write the plain viewer page; return its path."""
    shutil.copytree(osd_dir, static_root / "osd", dirs_exist_ok=True)
    info = json.dumps({"width": width, "height": height, "tile_size": tile, "levels": levels})
    (static_root / "view.html").write_text(STATIC_PAGE.format(info=info))
    return "/view.html"


def measure_fill(tilescope_url: str, login: tuple[str, str], static_url: str, repeats: int,
                 webgl: bool = False, timeout_ms: int = 120_000) -> dict:
    """Fill times per variant and viewport for both pages, ``repeats`` loads each, alternating which
    goes first; a fresh context (empty cache) for every load."""
    from playwright.sync_api import sync_playwright

    results: dict = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS + ([] if webgl else NO_WEBGL))
        try:
            storage = _logged_in_state(browser, tilescope_url.split("/datasets/")[0], login)
            for variant, tune in VARIANTS.items():
                probe = FILLED_PROBE % ("null" if tune is None else int(tune))
                for name, options in VIEWPORTS.items():
                    runs: dict[str, list[dict]] = {"tilescope": [], "nginx": []}
                    box = None
                    for repeat in range(repeats):
                        # the static page copies the size and place of Tilescope's viewer element: Tilescope first once
                        order = ["tilescope", "nginx"] if repeat % 2 == 0 or box is None else ["nginx", "tilescope"]
                        for target in order:
                            if target == "tilescope":
                                run = _load(browser, tilescope_url, options, storage, probe, timeout_ms, "/tiles/")
                                box = box or run["box"]
                            else:
                                url = f"{static_url}?x={box['x']:.0f}&y={box['y']:.0f}&w={box['w']:.0f}&h={box['h']:.0f}"
                                run = _load(browser, url, options, None, probe, timeout_ms, "/dz_files/")
                            runs[target].append(run)
                    results[f"{name}, {variant}"] = {"viewer_box": box, **runs}
        finally:
            browser.close()
    return results


def _logged_in_state(browser, base: str, login: tuple[str, str]) -> dict:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base}/login")
    page.fill("input[name=email]", login[0])
    page.fill("input[name=password]", login[1])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    state = context.storage_state()
    context.close()
    return state


def _load(browser, url: str, options: dict, storage: dict | None, probe: str, timeout_ms: int,
          tile_marker: str) -> dict:
    context = browser.new_context(storage_state=storage, **options)
    try:
        page = context.new_page()
        page.add_init_script(probe)
        tiles = {"requests": 0, "failed": 0}

        def on_response(response) -> None:
            if tile_marker in response.url:
                tiles["requests"] += 1
                tiles["failed"] += response.status != 200

        page.on("response", on_response)
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_function("window.__tilesFilledAt !== undefined", timeout=timeout_ms, polling=50)
        wall_ms = (time.perf_counter() - started) * 1e3
        filled_ms = page.evaluate("window.__tilesFilledAt")
        timing = page.evaluate("""(marker) => {
            const tiles = performance.getEntriesByType('resource').filter(e => e.name.includes(marker));
            const durations = tiles.map(e => e.duration).sort((a, b) => a - b);
            return {first_tile_ms: Math.min(...tiles.map(e => e.startTime)),
                    last_tile_ms: Math.max(...tiles.map(e => e.responseEnd)),
                    tile_median_ms: durations[Math.floor(durations.length / 2)]}; }""", tile_marker)
        box = page.evaluate("(() => { const r = document.getElementById('viewer').getBoundingClientRect(); "
                            "return {x: r.x, y: r.y, w: r.width, h: r.height}; })()")
        return {"fill_ms": filled_ms, "wall_ms": wall_ms, "tile_requests": tiles["requests"],
                "tile_failures": tiles["failed"], "box": box, **timing}
    finally:
        context.close()
