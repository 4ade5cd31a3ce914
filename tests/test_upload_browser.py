"""The upload page in a real Chromium: a file and a folder of slices sent with tus-js-client, on a laptop and a phone."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.db import session_scope
from portal.models import Dataset, Upload
from tests.conftest import PASSWORD, csrf_token
from tests.test_up_and_browser import ARTIFACTS, browser  # noqa: F401 (fixture)
from tiler.synthetic import write_synthetic_tiff
from tiler.synthetic_volume import write_synthetic_stack

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("empty_database_url", ["sqlite"], indirect=True)]

LAPTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


@pytest.fixture
def project_id(logged_in):
    headers = {"X-CSRFToken": csrf_token(logged_in, "/")}
    return logged_in.post("/api/v1/projects", json={"name": "Scans"}, headers=headers).json["id"]


def log_in(page, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=email]", "ana@example.org")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def wait_for_progress(page, index: int, fraction: float, timeout: float = 30.0) -> None:
    """Poll (no eval under the page's CSP) until upload `index` has sent `fraction` of its file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.evaluate(f"(e => e.sent / e.file.size)(window.tilescopeUploads[{index}])") >= fraction:
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"upload {index} did not reach {fraction:.0%} within {timeout} s")


def test_files_and_a_folder_uploaded_through_the_page(live_url, browser, settings, project_id, tmp_path):  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    image = Path(write_synthetic_tiff(tmp_path / "section.tif", (500, 700), "uint8", tile=256))
    folder = tmp_path / "femur"
    write_synthetic_stack(folder, (4, 64, 80), "uint16", fmt="tiff")
    errors: list[str] = []
    context = browser.new_context(**LAPTOP)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, live_url)
    page.goto(f"{live_url}/projects/{project_id}")
    page.click("#upload-page-link")
    page.wait_for_url(f"{live_url}/projects/{project_id}/upload")

    page.set_input_files("#pick-files", str(image))
    page.wait_for_selector(".upload-row[data-state=done] .dataset-link", timeout=30_000)
    assert page.locator(".upload-row").count() == 1
    page.set_input_files("#pick-folder", str(folder))
    expect(page.locator(".upload-row[data-state=done]")).to_have_count(5, timeout=30_000)
    links = {page.get_attribute(f".upload-row >> nth={i} >> .dataset-link", "href") for i in range(1, 5)}
    assert len(links) == 1, links  # the four slices became one dataset
    assert "5 of 5 files done" in page.inner_text("#overall-text")
    assert page.evaluate("document.querySelector('#overall-progress').value") == 1
    page.screenshot(path=str(ARTIFACTS / "upload-laptop.png"), full_page=True)

    with session_scope(settings.sqlalchemy_url) as session:
        datasets = {d.name: d for d in session.scalars(select(Dataset).where(Dataset.project_id == project_id))}
        assert {"section.tif", "femur"} <= set(datasets)
        assert datasets["femur"].format == "ZIP-STACK" and datasets["section.tif"].format == "TIFF"
        assert links == {f"/datasets/{datasets['femur'].id}"}
        assert session.scalar(select(Upload).where(Upload.dataset_id.is_(None))) is None

    # a slow connection: paused and resumed, then the page reloaded; the original arrives byte for byte
    big = Path(write_synthetic_tiff(tmp_path / "big.tif", (1200, 1500), "uint16", tile=256))
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    slow = {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 400 * 1024}
    cdp.send("Network.emulateNetworkConditions", slow)
    page.set_input_files("#pick-files", str(big))
    row = page.locator(".upload-row >> nth=5")
    wait_for_progress(page, 5, 0.15)
    row.locator(".upload-toggle").click()
    expect(row).to_have_attribute("data-state", "paused")
    page.wait_for_timeout(300)
    paused_at = page.evaluate("window.tilescopeUploads[5].sent")
    page.wait_for_timeout(700)
    assert page.evaluate("window.tilescopeUploads[5].sent") == paused_at and 0 < paused_at < big.stat().st_size
    row.locator(".upload-toggle").click()
    wait_for_progress(page, 5, 0.4)
    page.reload()  # the page is gone mid-upload; the same file dropped again resumes where the server stands
    page.set_input_files("#pick-files", str(big))
    row = page.locator(".upload-row >> nth=0")
    expect(row.locator(".dataset-link")).to_be_visible(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "upload-resumed-laptop.png"), full_page=True)
    with session_scope(settings.sqlalchemy_url) as session:
        resumed = session.scalar(select(Dataset).where(Dataset.name == "big.tif"))
        assert resumed.original_sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
        assert len(session.scalars(select(Upload).where(Upload.filename == "big.tif")).all()) == 1  # resumed, not anew
    cdp.send("Network.emulateNetworkConditions", slow | {"uploadThroughput": -1})

    page.click(".upload-row >> nth=0 >> .dataset-link")
    page.wait_for_url(f"{live_url}/datasets/**")
    assert "big.tif" in page.inner_text("h1")

    phone = browser.new_context(**PHONE, storage_state=context.storage_state())
    phone_page = phone.new_page()
    phone_page.on("pageerror", lambda error: errors.append(str(error)))
    phone_page.goto(f"{live_url}/projects/{project_id}/upload")
    phone_page.set_input_files("#pick-files", str(image))
    phone_page.wait_for_selector(".upload-row[data-state=done] .dataset-link", timeout=30_000)
    phone_page.screenshot(path=str(ARTIFACTS / "upload-phone.png"), full_page=True)
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways on a phone"
    assert errors == []
    phone.close()
    context.close()
