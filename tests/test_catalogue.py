"""The catalogue: a server-side filtered, paged grid of the datasets a user may see."""

from __future__ import annotations


import pytest
from sqlalchemy import select

from portal.catalogue import catalogue, human_size
from portal.db import session_scope
from portal.models import Dataset, User
from portal.search import SearchFilters
from tests.conftest import (
    PASSWORD,
    add_converted_dataset,
    add_search_fixture_project,
    log_in,
)
from tests.test_search import seed


def listed(settings, email="ana@example.org", q="", offset=0, limit=24, **filters):
    with session_scope(settings.sqlalchemy_url) as session:
        user = session.scalar(select(User).where(User.email == email))
        return catalogue(session, user, SearchFilters(**filters), q=q, offset=offset, limit=limit)


def test_filters_paging_and_visibility(settings, make_user):
    make_user()
    make_user("eve@example.org")
    made = seed(settings)
    page = listed(settings)
    assert page.total == 3 and {d["id"] for d in page.items} == {made["ct"], made["sem"], made["light"]}
    ct = next(d for d in page.items if d["id"] == made["ct"])
    assert ct["subject"] == "S-017" and ct["visit"] == "week4" and ct["ndim"] == 3 and ct["size"] == 5_000_000
    assert ct["project"]["name"] == "Bone study" and ct["thumbnail"] == f"/api/v1/datasets/{made['ct']}/thumbnail.png"
    assert [d["id"] for d in listed(settings, subject=made["subject"]).items] == [made["ct"]]
    assert [d["id"] for d in listed(settings, modality="sem").items] == [made["sem"]]
    assert [d["id"] for d in listed(settings, ndim=3).items] == [made["ct"]]
    assert [d["id"] for d in listed(settings, status="uploaded").items] == [made["light"]]
    assert [d["id"] for d in listed(settings, tag="pilot").items] == [made["ct"]]
    assert [d["id"] for d in listed(settings, q="osteon").items] == [made["sem"]]
    assert listed(settings, project=made["project"] + 1).total == 0
    pages = [listed(settings, offset=i, limit=2) for i in (0, 2, 4)]
    assert [len(p.items) for p in pages] == [2, 1, 0] and all(p.total == 3 for p in pages)
    assert len({d["id"] for p in pages for d in p.items}) == 3
    assert listed(settings, email="eve@example.org").total == 0
    add_search_fixture_project(settings, "eve@example.org", name="Eve's")
    assert listed(settings, email="eve@example.org").total == 0


def test_catalogue_api_and_page(settings, client, make_user):
    make_user()
    made = seed(settings)
    with session_scope(settings.sqlalchemy_url) as session:
        session.get(Dataset, made["sem"]).name = "<img src=x onerror=alert(1)>"
    log_in(client)
    body = client.get("/api/v1/catalogue?limit=2").get_json()
    assert body["total"] == 3 and len(body["items"]) == 2 and body["limit"] == 2
    assert client.get("/api/v1/catalogue?ndim=3").get_json()["items"][0]["id"] == made["ct"]
    assert client.get("/api/v1/catalogue?status=ready&q=femur").get_json()["total"] == 1
    assert client.get("/api/v1/catalogue?q=%22NEAR(").status_code == 200
    assert client.get("/api/v1/catalogue?limit=abc").status_code == 400
    page = client.get(f"/catalogue?project={made['project']}").get_data(as_text=True)
    assert 'id="catalogue-grid"' in page and "Femur trabecular scan" in page and "S-017 · week4" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
    assert f'<option value="{made["subject"]}"' in page  # the subject filter offers the project's subjects
    assert f"/api/v1/datasets/{made['ct']}/thumbnail.png" in page and "5.0 MB" in page
    paged = client.get("/catalogue?limit=1&offset=1").get_data(as_text=True)
    assert "2–2 of 3" in paged and 'rel="prev"' in paged and 'rel="next"' in paged
    assert client.get("/catalogue?ndim=7").status_code == 400


def test_human_size():
    assert [human_size(n) for n in (None, 12, 5_000_000, 3 * 10**12)] == ["—", "12 B", "5.0 MB", "3.0 TB"]


@pytest.mark.browser
def test_catalogue_grid_and_search_results_in_chromium(settings, app, make_user, live_url):
    """Screenshots (tests/artifacts/catalogue-laptop.png, search-phone.png); "/" and ↓ move the keyboard focus."""
    if "postgresql" in settings.database_url:
        pytest.skip("the browser sees the same pages on both databases")
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.test_up_and_browser import ARTIFACTS
    from tiler.synthetic import write_synthetic_tiff

    make_user()
    source = write_synthetic_tiff(settings.storage_dir("uploads") / "source.tif", (300, 400), "uint8", tile=256)
    add_converted_dataset(settings, source, name="Converted femur overview")
    seed(settings)
    url = live_url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{url}/login?next=/catalogue")
        page.fill("input[name=email]", "ana@example.org")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/catalogue")
        page.wait_for_function("[...document.images].every(i => i.complete)")
        assert page.locator("#catalogue-grid li").count() == 4
        assert page.evaluate("[...document.querySelectorAll('#catalogue-grid img')]"
                             ".filter(i => i.naturalWidth > 0).length") == 1  # the converted one; others: placeholder
        page.screenshot(path=str(ARTIFACTS / "catalogue-laptop.png"), full_page=True)
        page.select_option("select[name=ndim]", "3")
        page.wait_for_url("**ndim=3**")
        assert page.locator("#catalogue-grid li").count() == 1
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                    device_scale_factor=2, storage_state=page.context.storage_state()).new_page()
        phone.goto(f"{url}/search?q=femur")
        assert phone.locator(".search-hit").count() >= 3
        phone.locator("body").click(position={"x": 5, "y": 300})
        phone.keyboard.press("/")
        assert phone.evaluate("document.activeElement.name") == "q"
        assert phone.input_value("#search-form input[name=q]") == "femur"
        phone.keyboard.press("ArrowDown")
        assert phone.evaluate("document.activeElement.classList.contains('search-hit')")
        phone.screenshot(path=str(ARTIFACTS / "search-phone.png"), full_page=True)
        browser.close()

