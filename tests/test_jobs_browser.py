"""A real Chromium on a phone-sized screen watches a job's progress bar move on /jobs, without reloading, until it finishes."""

from __future__ import annotations

import pytest

from portal.db import session_scope
from portal.jobs import ANALYSIS_QUEUE, JOB_FUNCTIONS, enqueue
from tests.conftest import PASSWORD
from tests.test_up_and_browser import ARTIFACTS


@pytest.mark.browser
def test_the_jobs_page_shows_live_progress_on_a_phone(settings, live_url, chromium, make_user, start_worker,
                                                      monkeypatch):
    monkeypatch.setitem(JOB_FUNCTIONS, "test-slow", ("tests.jobs_for_tests.slow_job", ANALYSIS_QUEUE))
    user_id = make_user()
    with session_scope(settings.sqlalchemy_url) as session:
        job_id = enqueue(session, settings, "test-slow", user_id=user_id, params={"seconds": 10}).id
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                   device_scale_factor=2)
    page = context.new_page()
    page.goto(f"{live_url}/login?next=/jobs")
    page.fill("input[name=email]", "ana@example.org")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_url}/jobs")
    assert page.is_visible(f'li[data-id="{job_id}"] .status-queued')
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    start_worker(settings, ANALYSIS_QUEUE, "mail")
    row = f'li[data-id="{job_id}"]'
    page.wait_for_function(f"(() => {{ const bar = document.querySelector('{row} progress'); "
                           "return bar && bar.value > 0.05; })()", timeout=30_000)
    first = page.eval_on_selector(f"{row} progress", "bar => bar.value")
    page.wait_for_function(f"document.querySelector('{row} .status-finished') || "
                           f"document.querySelector('{row} progress').value > {first}", timeout=10_000)
    assert page.is_visible(f"{row} progress"), "the bar moved on while the job ran"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "jobs-phone-running.png"))
    assert "%" in page.inner_text(f"{row} .job-line")
    page.wait_for_selector(f"{row} .status-finished", timeout=30_000)
    assert "ran " in page.inner_text(f"{row} .job-resources")
    assert navigations == [], "the page updated itself without reloading"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"
    page.screenshot(path=str(ARTIFACTS / "jobs-phone-finished.png"))

    page.click(f"{row} .job-title")
    page.wait_for_selector("#job-status.status-finished")
    assert "1 of 2" in page.inner_text('[data-field="attempts"]')
    page.screenshot(path=str(ARTIFACTS / "job-phone.png"), full_page=True)
    context.close()
