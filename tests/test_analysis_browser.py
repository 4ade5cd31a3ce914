"""The analysis UI in a real Chromium: a result page on a phone and a laptop (label overlay, plots, sortable table,
CSV, object card, share link opened without an account), and classifier scribbles painted in the viewer."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy
import pytest
from PIL import Image

from portal.embedded_redis import free_port
from portal.settings import Settings
from tests.analysis_helpers import DISKS, RECTANGLE, finished_result, run_jobs
from tests.conftest import PASSWORD, serving
from tests.test_up_and_browser import ARTIFACTS, browser, non_blank  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("empty_database_url", ["sqlite"], indirect=True)]

LAPTOP = {"viewport": {"width": 1440, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
OVERLAY_LOADED = ("window.tilescope && window.tilescope.overlay && window.tilescope.overlay.tilesLoaded > 0 && "
                  "window.tilescope.viewer.imageLoader.jobsInProgress === 0 && "
                  "window.tilescope.viewer.world.getItemAt(0).getFullyLoaded()")
VIEWER_LOADED = ("window.tilescope && window.tilescope.viewer && window.tilescope.viewer.world.getItemAt(0) && "
                 "window.tilescope.viewer.world.getItemAt(0).getFullyLoaded()")


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def settings(tmp_path, database_url, redis_server, port):
    """The shared settings, with the live server's address as base URL (share links are mailed with it)."""
    return Settings(data_dir=tmp_path / "var", database_url=database_url, redis_url=redis_server.url,
                    secret_key="test-secret", log_level="WARNING", base_url=f"http://127.0.0.1:{port}")


@pytest.fixture
def live_url(app, port):
    """The app served over HTTP on `port` (the settings' base URL), for the browser."""
    with serving(app, port) as url:
        yield url


def log_in(page, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=email]", "ana@example.org")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def on_screen(page, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of level-0 image pixel (x, y) in the viewer."""
    box = page.locator("#viewer").bounding_box()
    u, v = page.evaluate(f"(() => {{ const p = window.tilescope.viewer.world.getItemAt(0)"
                         f".imageToViewerElementCoordinates(new OpenSeadragon.Point({x}, {y})); return [p.x, p.y]; }})()")
    return box["x"] + u, box["y"] + v


def pixels(png: bytes) -> numpy.ndarray:
    return numpy.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=numpy.int16)


def watch(page) -> dict[str, list]:
    """Statuses of label tiles, and script errors, seen by a page."""
    seen = {"label_tiles": [], "label_urls": [], "errors": []}

    def response(r):
        if "/labels/tiles/" in r.url:
            seen["label_tiles"].append(r.status)
            seen["label_urls"].append(r.url)

    page.on("response", response)
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    return seen


def test_result_page_on_laptop_and_phone_and_through_a_share_link(live_url, browser, settings, analysed, disks_dataset):
    ARTIFACTS.mkdir(exist_ok=True)
    result_url = f"{live_url}/results/{analysed}"
    objects = len(DISKS) + 1
    context = browser.new_context(**LAPTOP, accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_url)
    page = context.new_page()
    seen = watch(page)
    log_in(page, live_url)
    page.goto(result_url)
    page.wait_for_function(OVERLAY_LOADED, timeout=60_000)
    page.wait_for_selector("#objects-table tbody tr")
    assert seen["label_tiles"] and all(status == 200 for status in seen["label_tiles"]), seen["label_tiles"]
    page.screenshot(path=str(ARTIFACTS / "result-laptop.png"))
    page.screenshot(path=str(ARTIFACTS / "result-laptop-full.png"), full_page=True)

    measures = page.inner_text("#measures")
    assert f"{objects}\nobject count" in measures and "%" in measures, measures
    for plot in ("#size-plot", "#intensity-plot"):
        assert page.locator(f"{plot} svg.plot rect.plot-bar").count() > 0, plot
        assert page.locator(f"{plot} svg.plot text.plot-label").count() == 2, plot

    # the overlay: hiding it changes the drawn pixels; outlines are other tiles
    with_labels = pixels(page.locator("#viewer").screenshot())
    page.uncheck(".overlay-on")
    page.wait_for_function("window.tilescope.viewer.world.getItemCount() === 1")
    page.wait_for_timeout(200)
    without_labels = pixels(page.locator("#viewer").screenshot())
    assert numpy.abs(with_labels - without_labels).mean() > 1, "hiding the labels changed nothing"
    page.keyboard.press("l")  # the key brings them back
    page.wait_for_function("window.tilescope.overlay.visible && window.tilescope.viewer.world.getItemCount() === 2")
    page.click(".overlay-controls [data-mode=outline]")
    page.wait_for_function("window.tilescope.viewer.world.getItemCount() === 2 && "
                           "window.tilescope.viewer.world.getItemAt(1).source.getTileUrl(0, 0, 0).includes('outline=1') && "
                           "window.tilescope.viewer.world.getItemAt(1).getFullyLoaded()", timeout=30_000)
    assert any("outline=1" in url for url in seen["label_urls"])
    page.locator("#viewer").screenshot(path=str(ARTIFACTS / "result-outlines-laptop.png"))
    page.click(".overlay-controls [data-mode=fill]")

    # hovering an object shows its measurements
    r, c, radius = DISKS[3]
    x, y = on_screen(page, c, r)
    page.mouse.move(x - 20, y - 20)
    page.mouse.move(x, y, steps=4)
    page.wait_for_selector(".object-card:not([hidden])", timeout=10_000)
    card = page.inner_text(".object-card")
    assert re.search(r"Object \d+", card) and "voxels" in card, card
    assert page.evaluate("window.tilescope.overlay.lookups") <= 5  # at most one per 125 ms, cached by position
    page.screenshot(path=str(ARTIFACTS / "result-hover-laptop.png"))

    # the table sorts, and a row shows its object
    page.click("th[data-column=voxels] button")
    page.wait_for_function("document.querySelector('th[data-column=voxels]').getAttribute('aria-sort') === 'descending'")
    voxels = [int(text.replace(",", "")) for text in page.locator("td[data-column=voxels]").all_inner_texts()]
    r0, r1, c0, c1 = RECTANGLE
    assert voxels == sorted(voxels, reverse=True) and voxels[0] == (r1 - r0) * (c1 - c0) and len(voxels) == objects
    page.click("#objects-table tbody tr >> nth=0")
    page.wait_for_function(f"""(() => {{ const v = window.tilescope.viewer.viewport;
        const c = window.tilescope.viewer.world.getItemAt(0).viewportToImageCoordinates(v.getCenter(true));
        return Math.abs(c.x - {(c0 + c1) / 2}) < 3 && Math.abs(c.y - {(r0 + r1) / 2}) < 3; }})()""", timeout=10_000)
    assert page.locator(".object-highlight").count() == 1
    page.wait_for_timeout(1300)  # the zoom animation
    page.screenshot(path=str(ARTIFACTS / "result-row-zoom-laptop.png"))
    page.click("th[data-column=voxels] button")
    page.wait_for_function("document.querySelector('th[data-column=voxels]').getAttribute('aria-sort') === 'ascending'")
    voxels = [int(text.replace(",", "")) for text in page.locator("td[data-column=voxels]").all_inner_texts()]
    assert voxels == sorted(voxels)

    with page.expect_download() as download:
        page.click("#csv-link")
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[0][0] == "label" and len(rows) == 1 + objects

    assert "threshold" in page.inner_text("#provenance") and page.get_attribute("#prov-link", "href").endswith(".json")

    # a share link, copied
    page.fill("#share-form input[name=label]", "reviewer 2")
    page.click("#share-form button[type=submit]")
    page.wait_for_selector("#share-new:not([hidden])")
    share_url = page.input_value("#share-url")
    assert share_url.startswith(f"{live_url}/s/"), share_url
    page.wait_for_selector("#share-list li.share-active")
    assert "reviewer 2" in page.inner_text("#share-list")
    page.click("#share-copy")
    page.wait_for_function("document.querySelector('#share-copy').textContent.includes('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == share_url
    page.screenshot(path=str(ARTIFACTS / "result-shared-laptop.png"), full_page=True)

    # the same page on a phone: the overlay, and a tap on an object
    phone = browser.new_context(**PHONE, storage_state=context.storage_state())
    phone_page = phone.new_page()
    phone_seen = watch(phone_page)
    phone_page.goto(result_url)
    phone_page.wait_for_function(OVERLAY_LOADED, timeout=60_000)
    phone_page.wait_for_selector("#objects-table tbody tr")
    assert phone_seen["label_tiles"] and all(status == 200 for status in phone_seen["label_tiles"])
    phone_page.wait_for_timeout(300)
    phone_page.screenshot(path=str(ARTIFACTS / "result-phone.png"))
    phone_page.screenshot(path=str(ARTIFACTS / "result-phone-full.png"), full_page=True)
    x, y = on_screen(phone_page, c, r)
    phone_page.touchscreen.tap(x, y)
    phone_page.wait_for_selector(".object-card:not([hidden])", timeout=10_000)
    phone_page.screenshot(path=str(ARTIFACTS / "result-phone-tap.png"))
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways on a phone"
    assert phone_seen["errors"] == []
    phone.close()

    # the viewer shows the same labels with ?result=
    page.goto(f"{live_url}/datasets/{disks_dataset}/view?result={analysed}")
    page.wait_for_function(OVERLAY_LOADED, timeout=60_000)
    page.click("#show-overlay")
    page.wait_for_selector("#overlay-panel .overlay-controls")
    page.screenshot(path=str(ARTIFACTS / "viewer-overlay-laptop.png"))

    # the share link, opened by someone without an account
    anonymous = browser.new_context(**PHONE)
    stranger = anonymous.new_page()
    stranger_seen = watch(stranger)
    stranger.goto(share_url)
    stranger.wait_for_url(result_url)
    stranger.wait_for_function(OVERLAY_LOADED, timeout=60_000)
    stranger.wait_for_selector("#objects-table tbody tr")
    assert stranger_seen["label_tiles"] and all(status == 200 for status in stranger_seen["label_tiles"])
    assert stranger.locator("#objects-table tbody tr").count() == objects
    assert stranger.locator("#share-panel, #reproduce-panel, .logout, .open-full").count() == 0
    assert "read-only" in stranger.inner_text(".result-head")
    stranger.wait_for_timeout(300)
    stranger.screenshot(path=str(ARTIFACTS / "result-shared-phone.png"), full_page=True)
    assert stranger_seen["errors"] == []

    # revoked: the list says so, and the link no longer opens the result
    page.goto(result_url)
    page.wait_for_selector("#share-list li.share-active")
    page.click("#share-list li.share-active .revoke")
    page.wait_for_selector("#share-list li.share-revoked")
    response = stranger.goto(result_url)
    assert response.status in (401, 404) or "/login" in stranger.url, response.status
    anonymous.close()

    # reproduce: the rerun's page and the original's say whether the outputs match
    page.click("#reproduce")
    page.wait_for_selector("#reproduce-status a")
    job_id = page.get_attribute("#reproduce-status a", "href").rsplit("/", 1)[1]
    run_jobs(settings)
    rerun = finished_result(settings, job_id)
    page.goto(f"{live_url}/results/{rerun}")
    page.wait_for_selector("#reproduction-badge:not([hidden])")
    assert "outputs match ✓" in page.inner_text("#reproduction-badge")
    page.goto(result_url)
    page.wait_for_selector("#reproduction-badge:not([hidden])")
    assert "reproduced: outputs match ✓" in page.inner_text("#reproduction-badge")
    page.wait_for_selector("#reproductions li")

    # the dataset page lists both results
    page.goto(f"{live_url}/datasets/{disks_dataset}")
    assert page.locator("#results .result-list li").count() == 2
    assert f"{objects} objects" in page.inner_text("#results")
    page.click(f"#results a[href='/results/{analysed}']")
    page.wait_for_url(result_url)
    page.goto(f"{live_url}/datasets/{disks_dataset}")
    page.screenshot(path=str(ARTIFACTS / "dataset-results-laptop.png"))
    assert seen["errors"] == []
    context.close()


def test_classifier_scribbles_painted_in_the_viewer(live_url, browser, settings, disks_dataset):
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(**LAPTOP)
    page = context.new_page()
    seen = watch(page)
    log_in(page, live_url)
    page.goto(f"{live_url}/datasets/{disks_dataset}/view")
    page.wait_for_function(VIEWER_LOADED, timeout=60_000)
    page.click("#show-analysis")
    page.wait_for_selector("#analysis-method option[value=classifier]", state="attached")

    # the form follows the schema, and the server's objections are shown beside it
    page.select_option("#analysis-method", "local")
    page.fill("#analysis-panel input[name=block_size]", "50")
    page.click("#analysis-panel button[type=submit]")
    page.wait_for_selector("#analysis-panel .form-error:not([hidden])")
    assert "odd" in page.inner_text("#analysis-panel .form-error")

    page.select_option("#analysis-method", "classifier")
    assert page.locator("#analysis-panel input[name=min_size]").count() == 1
    page.click("#analysis-panel button[type=submit]")
    assert "two classes" in page.inner_text("#analysis-panel .form-error")

    # paint: "object" on a disk, "background" beside it
    page.click(".paint-toggle")
    assert page.evaluate("window.tilescope.painting")
    r, c, radius = DISKS[3]
    x, y = on_screen(page, c, r)
    page.mouse.move(x - 8, y)
    page.mouse.down()
    page.mouse.move(x + 8, y + 2, steps=6)
    page.mouse.up()
    page.click(".class-chips .chip >> nth=0")
    x, y = on_screen(page, c + 60, r - 60)
    page.mouse.move(x - 30, y)
    page.mouse.down()
    page.mouse.move(x + 30, y + 10, steps=10)
    page.mouse.up()
    assert page.locator(".scribble-layer path.scribble").count() == 2
    page.screenshot(path=str(ARTIFACTS / "viewer-painting-laptop.png"))
    centre = page.evaluate("window.tilescope.viewer.viewport.getCenter(true).x")
    page.click(".paint-toggle")  # done: the image pans again, the strokes stay in place
    assert not page.evaluate("window.tilescope.painting")
    page.fill("#analysis-recipients", "boss@lab.org, me@lab.org")
    with page.expect_request(lambda request: request.method == "POST" and request.url.endswith("/analyses")) as sent:
        page.click("#analysis-panel button[type=submit]")
    payload = sent.value.post_data_json
    assert page.evaluate("window.tilescope.viewer.viewport.getCenter(true).x") == centre
    assert payload["method"] == "classifier" and payload["recipients"] == ["boss@lab.org", "me@lab.org"]
    params = payload["params"]
    assert params["class_names"] == ["background", "object"]
    strokes = params["scribbles"]
    assert [s["class"] for s in strokes] == [1, 0]
    for stroke in strokes:
        assert stroke["z"] == 0 and 1 <= stroke["radius"] <= 64 and len(stroke["points"]) >= 2
        assert all(0 <= px < 640 and 0 <= py < 480 for px, py in stroke["points"])
    first = numpy.array(strokes[0]["points"])
    assert numpy.abs(first - [c, r]).max() < 12, first  # on the disk, in image pixels
    page.wait_for_selector("#analysis-panel .submitted:not([hidden])")
    job_link = page.get_attribute("#analysis-panel .submitted a", "href")
    assert re.fullmatch(r"/jobs/[0-9a-f-]{36}", job_link), job_link
    page.screenshot(path=str(ARTIFACTS / "viewer-analysis-queued-laptop.png"))

    # the worker trains on the scribbles; the result names the classes
    run_jobs(settings)
    result_id = finished_result(settings, job_link.rsplit("/", 1)[1])
    page.goto(f"{live_url}/results/{result_id}")
    page.wait_for_function(OVERLAY_LOADED, timeout=60_000)
    page.wait_for_selector("#objects-table tbody tr")
    assert "object" in page.locator("td[data-column=class]").first.inner_text()
    assert seen["errors"] == []

    # on a phone, a finger paints
    phone = browser.new_context(**PHONE, storage_state=context.storage_state())
    phone_page = phone.new_page()
    phone_page.goto(f"{live_url}/datasets/{disks_dataset}/view")
    phone_page.wait_for_function(VIEWER_LOADED, timeout=60_000)
    phone_page.tap("#show-analysis")
    phone_page.wait_for_selector("#analysis-method option[value=classifier]", state="attached")
    phone_page.select_option("#analysis-method", "classifier")
    phone_page.screenshot(path=str(ARTIFACTS / "viewer-analyse-phone.png"))
    phone_page.tap(".paint-toggle")
    x, y = on_screen(phone_page, c, r)
    touch = phone.new_cdp_session(phone_page)
    touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for step in range(1, 8):
        touch.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x + 3 * step, "y": y + step}]})
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    phone_page.wait_for_function("document.querySelectorAll('.scribble-layer path.scribble').length === 1")
    assert "object: 1" in phone_page.inner_text(".stroke-count")
    assert non_blank(phone_page.screenshot(path=str(ARTIFACTS / "viewer-painting-phone.png"))) > 5
    phone.close()
    context.close()


#: Balls (z, y, x, radius) of the test volume; the first is the largest.
BALLS = [(20, 48, 40, 12), (12, 30, 96, 7), (30, 70, 100, 8)]


@pytest.fixture
def balls_dataset(settings, logged_in):
    """A 40 × 96 × 128 uint8 volume of bright balls on a noisy background, converted (no worker)."""
    import tifffile

    from tests.conftest import add_converted_dataset

    z, y, x = numpy.mgrid[0:40, 0:96, 0:128]
    volume = numpy.random.default_rng(3).integers(10, 40, z.shape).astype(numpy.uint8)
    for cz, cy, cx, radius in BALLS:
        volume[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= radius**2] = 200
    path = settings.storage_dir("uploads") / "balls.tif"
    tifffile.imwrite(path, volume, imagej=True, metadata={"axes": "ZYX"})
    return add_converted_dataset(settings, path, name="balls")


def test_volume_labels_follow_planes_slices_and_linked_panes(live_url, browser, settings, logged_in, balls_dataset):
    from tests.analysis_helpers import queue_analysis

    response = queue_analysis(logged_in, balls_dataset)
    assert response.status_code == 202, response.get_json()
    run_jobs(settings)
    result_id = finished_result(settings, response.get_json()["job_id"])

    context = browser.new_context(**LAPTOP)  # wide: linked XZ/YZ panes beside the main one
    page = context.new_page()
    seen = watch(page)
    log_in(page, live_url)
    page.goto(f"{live_url}/results/{result_id}")
    page.wait_for_function(OVERLAY_LOADED, timeout=60_000)
    page.wait_for_function("window.tilescope.sidePanes.every((p) => p.viewer.world.getItemCount() === 2 && "
                           "p.viewer.world.getItemAt(1).source.layer === 'labels')", timeout=30_000)
    page.wait_for_selector("#objects-table tbody tr")
    for plane in ("xy", "xz", "yz"):
        assert any(f"plane={plane}" in url for url in seen["label_urls"]), plane
    assert all(status == 200 for status in seen["label_tiles"])

    # a row goes to its object's middle slice
    page.click("th[data-column=voxels] button")  # largest first
    page.wait_for_function("document.querySelector('th[data-column=voxels]').getAttribute('aria-sort') === 'descending'")
    page.click("#objects-table tbody tr >> nth=0")
    z, y, x, radius = BALLS[0]
    page.wait_for_function(f"window.tilescope.plane === 'xy' && window.tilescope.slice.xy === {z}")
    page.wait_for_function(f"window.tilescope.viewer.world.getItemCount() === 2 && "
                           f"window.tilescope.viewer.world.getItemAt(1).source.getTileUrl(0, 0, 0).includes('slice={z}') && "
                           f"window.tilescope.viewer.world.getItemAt(1).getFullyLoaded()", timeout=30_000)
    page.wait_for_timeout(1300)
    page.screenshot(path=str(ARTIFACTS / "result-volume-laptop.png"))

    # the object under the pointer, in 3D
    page.mouse.move(*on_screen(page, x, y))
    page.wait_for_selector(".object-card:not([hidden])", timeout=10_000)
    assert "Object" in page.inner_text(".object-card")

    # another plane: the labels follow
    page.click("button[data-plane=xz]")
    page.wait_for_function("window.tilescope.plane === 'xz' && window.tilescope.viewer.world.getItemCount() === 2 && "
                           "window.tilescope.viewer.world.getItemAt(1).source.getTileUrl(0, 0, 0).includes('plane=xz') && "
                           "window.tilescope.viewer.world.getItemAt(1).getFullyLoaded()", timeout=30_000)
    page.wait_for_timeout(500)
    assert page.locator(".object-highlight").count() == 0, "the XY box stays off the XZ plane"
    page.screenshot(path=str(ARTIFACTS / "result-volume-xz-laptop.png"))
    assert seen["errors"] == []
    context.close()
