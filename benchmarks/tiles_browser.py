"""Viewport fill time in headless Chromium: Tilescope's viewer page vs the same OpenSeadragon on nginx-served dzsave tiles.

The clock is the page's own: performance.now() (0 = navigation start) in the first animation
frame where OpenSeadragon's tiled image is fully loaded (every tile the viewport needs at its
best level is loaded and drawn) and no image job is in flight -- the condition of the browser
test.  An init script polls it every frame on both pages, so both are measured alike.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORTS = {
    "laptop 1920×1080": {"viewport": {"width": 1920, "height": 1080}},
    "phone 390×844 @3x": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
                          "device_scale_factor": 3},
}

FILLED_PROBE = """
(() => {
  const check = () => {
    const state = window.tilescope, viewer = state && state.viewer;
    const item = viewer && viewer.world && viewer.world.getItemCount() > 0 && viewer.world.getItemAt(0);
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
                 timeout_ms: int = 120_000) -> dict:
    """Median-of-``repeats`` fill times per viewport for both pages; fresh context (cold cache) every load."""
    from playwright.sync_api import sync_playwright

    results: dict = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            storage = _logged_in_state(browser, tilescope_url.split("/datasets/")[0], login)
            for name, options in VIEWPORTS.items():
                runs: dict[str, list[dict]] = {"tilescope": [], "nginx": []}
                box = None
                for repeat in range(repeats):
                    order = ["tilescope", "nginx"] if repeat % 2 == 0 else ["nginx", "tilescope"]
                    if box is None:  # the static page copies the size and place of Tilescope's viewer element
                        order = ["tilescope", "nginx"]
                    for target in order:
                        if target == "tilescope":
                            run = _load(browser, tilescope_url, options, storage, timeout_ms, "/tiles/")
                            box = box or run.pop("box")
                        else:
                            url = f"{static_url}?x={box['x']:.0f}&y={box['y']:.0f}&w={box['w']:.0f}&h={box['h']:.0f}"
                            run = _load(browser, url, options, None, timeout_ms, "/dz_files/")
                        run.pop("box", None)
                        runs[target].append(run)
                results[name] = {"viewer_box": box, **runs}
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


def _load(browser, url: str, options: dict, storage: dict | None, timeout_ms: int, tile_marker: str) -> dict:
    context = browser.new_context(storage_state=storage, **options)
    try:
        page = context.new_page()
        page.add_init_script(FILLED_PROBE)
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
        box = page.evaluate("(() => { const r = document.getElementById('viewer').getBoundingClientRect(); "
                            "return {x: r.x, y: r.y, w: r.width, h: r.height}; })()")
        return {"fill_ms": filled_ms, "wall_ms": wall_ms, "tile_requests": tiles["requests"],
                "tile_failures": tiles["failed"], "box": box}
    finally:
        context.close()
