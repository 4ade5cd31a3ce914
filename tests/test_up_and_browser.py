"""`tilescope up` as a new user runs it, then a real Chromium logs in, uploads a 16-bit TIFF and views its tiles."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy
import psutil
import pytest
import requests
from PIL import Image

from portal.embedded_redis import free_port
from tests.conftest import launched_chromium
from tiler.synthetic import write_synthetic_tiff

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


class RunningPortal:
    """A `tilescope up` process and everything it printed."""

    def __init__(self, data_dir: Path, port: int):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TILESCOPE_")}
        env.update(TILESCOPE_DATA_DIR=str(data_dir), TILESCOPE_PORT=str(port), TILESCOPE_WEB_WORKERS="2",
                   PYTHONUNBUFFERED="1")
        self.url = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, "-m", "portal.cli", "up"], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output)
            if match:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in the output of `tilescope up`:\n{self.output}")

    def interrupt(self, timeout: float = 40) -> int:
        os.kill(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=timeout)


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    running = RunningPortal(tmp_path_factory.mktemp("up") / "var", free_port())
    try:
        running.password = running.wait_for(r"password: (\S+)").group(1)
        running.wait_for(r"Tilescope is running at")
        yield running
    finally:
        if running.process.poll() is None:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait()
        running.process.stdout.close()


def test_up_prints_how_to_log_in_and_serves_the_login_page(portal):
    assert f"Tilescope is running at {portal.url}" in portal.output
    assert "login: admin@localhost" in portal.output
    assert "embedded redis-server" in portal.output
    page = requests.get(f"{portal.url}/", timeout=10)
    assert page.status_code == 200 and page.url.endswith("/login?next=/")
    assert requests.get(f"{portal.url}/api/v1/projects", timeout=10).status_code == 401


@pytest.fixture(scope="module")
def browser():
    """One browser for a module's tests (see tests.conftest.launched_chromium)."""
    with launched_chromium() as launched:
        yield launched


def log_in_and_create_project(page, portal, project: str) -> None:
    page.goto(f"{portal.url}/")
    page.fill("input[name=email]", "admin@localhost")
    page.fill("input[name=password]", portal.password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{portal.url}/")
    page.fill("input[name=name]", project)
    page.click("text=Create project")
    page.wait_for_selector("text=Upload an image")


def non_blank(png: bytes) -> float:
    """Standard deviation of the grey levels of a screenshot: near 0 when nothing was drawn."""
    return float(numpy.asarray(Image.open(io.BytesIO(png)).convert("L")).std())


@pytest.mark.browser
def test_upload_a_16_bit_tiff_and_view_its_tiles(portal, browser, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    tiff = write_synthetic_tiff(tmp_path / "mosaic-4096.tif", (4096, 4096), "uint16", tile=256, pixel_size_um=0.5)
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = context.new_page()
    tile_statuses: list[int] = []
    page.on("response", lambda r: tile_statuses.append(r.status) if "/tiles/" in r.url else None)

    log_in_and_create_project(page, portal, "SEM mosaics")

    page.set_input_files("input[type=file]", str(tiff))
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/datasets/[0-9a-f-]+$"), timeout=60_000)
    page.wait_for_selector("text=Open in viewer", timeout=180_000)
    page.screenshot(path=str(ARTIFACTS / "dataset-laptop.png"))

    page.click("text=Open in viewer")
    page.wait_for_function("window.tilescope && window.tilescope.tilesLoaded > 0 && "
                           "window.tilescope.viewer.imageLoader.jobsInProgress === 0 && "
                           "window.tilescope.viewer.world.getItemAt(0).getFullyLoaded()", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "viewer-page-laptop.png"))
    shot = page.locator("#viewer").screenshot(path=str(ARTIFACTS / "viewer-laptop.png"))
    assert non_blank(shot) > 5, "the viewer canvas looks blank"
    assert tile_statuses and all(status == 200 for status in tile_statuses), tile_statuses
    first_count = len(tile_statuses)

    page.evaluate("window.tilescope.viewer.viewport.zoomBy(8); window.tilescope.viewer.viewport.applyConstraints()")
    page.wait_for_function(f"window.tilescope.tilesLoaded > {page.evaluate('window.tilescope.tilesLoaded')} && "
                           "window.tilescope.viewer.imageLoader.jobsInProgress === 0", timeout=60_000)
    assert len(tile_statuses) > first_count, "zooming in fetched no new tiles"
    assert all(status == 200 for status in tile_statuses)
    assert "µm" in page.inner_text(".scalebar")
    page.locator("#viewer").screenshot(path=str(ARTIFACTS / "viewer-zoomed.png"))

    page.wait_for_function("window.location.hash.includes('zoom=')", timeout=10_000)
    state = page.evaluate("window.location.hash")
    shared = context.new_page()
    shared.goto(page.url)
    shared.wait_for_function("window.tilescope && window.tilescope.viewer && window.tilescope.tilesLoaded > 0")
    got = shared.evaluate("(() => { const v = window.tilescope.viewer.viewport; "
                          "const c = v.viewportToImageCoordinates(v.getCenter(true)); "
                          "return [c.x, c.y, v.viewportToImageZoom(v.getZoom(true))]; })()")
    params = dict(part.split("=") for part in state.lstrip("#").split("&"))
    assert abs(got[0] - float(params["x"])) < 2 and abs(got[1] - float(params["y"])) < 2, (got, params)
    assert abs(got[2] / float(params["zoom"]) - 1) < 0.01, (got, params)
    shared.close()

    with page.expect_download() as download_info:
        page.click("#download-view")
    png = Path(download_info.value.path()).read_bytes()
    exported = Image.open(io.BytesIO(png))
    assert exported.format == "PNG" and exported.width > 100 and non_blank(png) > 1

    # channel panel: inverting changes what is drawn
    page.goto(page.url.split("#")[0])
    page.wait_for_function("window.tilescope && window.tilescope.viewer && "
                           "window.tilescope.viewer.world.getItemAt(0) && window.tilescope.viewer.world.getItemAt(0).getFullyLoaded()")
    before = page.locator("#viewer").screenshot()
    page.click("#show-channels")
    page.wait_for_selector("#channel-list .channel")
    page.screenshot(path=str(ARTIFACTS / "viewer-channels-laptop.png"))
    page.check("#channel-list input.invert")
    page.wait_for_function("window.tilescope.viewer.world.getItemCount() === 1 && "
                           "window.tilescope.viewer.world.getItemAt(0).getFullyLoaded() && "
                           "window.tilescope.viewer.world.getItemAt(0).source.getTileUrl(0,0,0).includes('invert=1')",
                           timeout=30_000)
    after = page.locator("#viewer").screenshot()
    mean = lambda png: float(numpy.asarray(Image.open(io.BytesIO(png)).convert("L")).mean())  # noqa: E731
    assert abs(mean(after) - mean(before)) > 20, (mean(before), mean(after))
    page.click("#show-channels")

    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                device_scale_factor=2, storage_state=context.storage_state())
    phone_page = phone.new_page()
    phone_page.goto(page.url)
    phone_page.wait_for_function("window.tilescope && window.tilescope.tilesLoaded > 0 && "
                                 "window.tilescope.viewer.imageLoader.jobsInProgress === 0", timeout=60_000)
    assert non_blank(phone_page.screenshot(path=str(ARTIFACTS / "viewer-phone.png"))) > 5
    phone.close()
    context.close()


@pytest.mark.browser
def test_a_volume_in_the_viewer_switches_planes_and_slices(portal, browser, tmp_path):
    from tiler.synthetic_volume import write_synthetic_zip_stack

    archive = write_synthetic_zip_stack(tmp_path / "ct-stack.zip", (48, 160, 200), "uint16", fmt="tiff")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    tile_urls: list[str] = []
    page.on("response", lambda r: tile_urls.append(r.url) if "/tiles/" in r.url and r.status == 200 else None)
    log_in_and_create_project(page, portal, "CT volumes")
    page.set_input_files("input[type=file]", str(archive))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("text=Open in viewer", timeout=120_000)
    assert "200 × 160 × 48" in page.inner_text("main")
    page.click("text=Open in viewer")
    loaded = ("window.tilescope && window.tilescope.viewer && window.tilescope.viewer.world.getItemCount() === 1 && "
              "window.tilescope.viewer.world.getItemAt(0).getFullyLoaded()")
    page.wait_for_function(loaded, timeout=60_000)
    assert page.is_visible("#volume-controls")
    xy = page.locator("#viewer").screenshot()
    page.click("button[data-plane=xz]")
    page.wait_for_function(loaded + " && window.tilescope.plane === 'xz'", timeout=60_000)
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "viewer-volume-xz.png"))
    assert any("plane=xz" in url for url in tile_urls)
    before = page.locator("#viewer").screenshot()
    assert before != xy
    page.fill("#slice", "10")
    page.dispatch_event("#slice", "input")
    page.wait_for_function(loaded + " && window.tilescope.viewer.world.getItemAt(0).source.getTileUrl(0,0,0).includes('slice=10')",
                           timeout=60_000)
    assert any("plane=xz" in url and "slice=10" in url for url in tile_urls)
    assert non_blank(page.locator("#viewer").screenshot()) > 5

    assert page.evaluate("window.tilescope.sidePanes.map((p) => p.plane)") == ["xy", "yz"]  # linked panes (wide screen)
    before_click = page.evaluate("({...window.tilescope.slice})")
    box = page.locator("#viewer").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)  # a point in the XZ pane
    page.wait_for_function(f"window.tilescope.slice.yz !== {before_click['yz']}", timeout=10_000)
    clicked = page.evaluate("({...window.tilescope.slice})")
    assert clicked["xz"] == 10, "the clicked pane's own slice stays"
    for _ in range(100):  # the side pane fetches the new slice's tiles
        if any("plane=yz" in url and f"slice={clicked['yz']}" in url for url in tile_urls):
            break
        page.wait_for_timeout(100)
    else:
        raise AssertionError(f"no yz tiles for slice {clicked['yz']}")
    page.wait_for_function("window.tilescope.sidePanes.every((p) => p.viewer.world.getItemCount() === 1 && "
                           "p.viewer.world.getItemAt(0).getFullyLoaded())", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "viewer-volume-ortho.png"))
    page.wait_for_function("window.location.hash.includes('slice=10')", timeout=10_000)
    shared = context.new_page()
    shared.goto(page.url)
    shared.wait_for_function(loaded, timeout=60_000)
    assert shared.evaluate("[window.tilescope.plane, window.tilescope.slice.xz]") == ["xz", 10]
    assert shared.input_value("#slice") == "10"
    context.close()


def test_ctrl_c_stops_web_worker_and_redis(portal):
    redis_port = portal.wait_for(r"embedded redis-server on redis://127.0.0.1:(\d+)").group(1)
    children = psutil.Process(portal.process.pid).children(recursive=True)
    names = " ".join(" ".join(child.cmdline()) for child in children)
    assert f"redis-server 127.0.0.1:{redis_port}" in names and "gunicorn" in names and "worker" in names, names
    assert portal.interrupt() == 0, portal.output
    assert "all stopped." in portal.output
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"outlived `tilescope up`: {alive}"
    assert requests_refused(portal.url)


def requests_refused(url: str) -> bool:
    try:
        requests.get(url, timeout=3)
    except requests.ConnectionError:
        return True
    return False


def test_nothing_outlives_a_killed_tilescope_up(tmp_path):
    """Even a SIGKILLed supervisor leaves no web server, worker or redis-server behind."""
    running = RunningPortal(tmp_path / "var", free_port())
    try:
        running.wait_for(r"Tilescope is running at")
        children = psutil.Process(running.process.pid).children(recursive=True)
        assert len(children) >= 4, children  # redis, gunicorn master + workers, worker
        running.process.kill()
        running.process.wait()
        gone, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], f"orphaned: {[' '.join(p.cmdline()) for p in alive]}"
    finally:
        running.process.stdout.close()
