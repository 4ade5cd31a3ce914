"""Share links: mailed on finish (real SMTP on loopback), opened without an account, scoped, expiring, revocable, audited."""

from __future__ import annotations

import re
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from portal.db import session_scope
from portal.models import AuditEvent, ShareLink, utcnow
from tests.analysis_helpers import finished_result, queue_analysis, run_jobs
from tests.conftest import csrf_token

SHARE_URL = re.compile(r"http://[^\s]+/s/[A-Za-z0-9._-]+")


def open_link(app, url: str):
    """A fresh browser with no account opens the link; returns that client and the first response."""
    anonymous = app.test_client()
    return anonymous, anonymous.get(urlsplit(url).path)


def create_link(client, result_id, **body):
    response = client.post(f"/api/v1/results/{result_id}/shares", json=body,
                           headers={"X-CSRFToken": csrf_token(client, "/")})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_mailed_link_opens_the_result_without_an_account(settings, logged_in, disks_dataset, smtp_inbox):
    port, messages = smtp_inbox
    response = queue_analysis(logged_in, disks_dataset, recipients=["boss@lab.example"])
    assert response.status_code == 202
    run_jobs(settings, TILESCOPE_SMTP_HOST="127.0.0.1", TILESCOPE_SMTP_PORT=str(port),
             TILESCOPE_SMTP_STARTTLS="false")
    result_id = finished_result(settings, response.get_json()["job_id"])
    assert len(messages) == 1
    mail = message_from_bytes(bytes(messages[0]), policy=default)
    assert "boss@lab.example" in mail["To"] and "ana@example.org" in mail["To"]
    body = mail.get_content()
    assert "objects: 8" in body
    url = SHARE_URL.search(body).group(0)

    anonymous, opened = open_link(logged_in.application, url)
    assert opened.status_code == 302 and opened.headers["Location"].endswith(f"/results/{result_id}")
    data = anonymous.get(f"/api/v1/results/{result_id}").get_json()
    assert data["via_share"] is True and data["can_manage"] is False and data["shares_url"] is None
    assert anonymous.get(data["dataset"]["info_url"]).status_code == 200
    assert anonymous.get(f"{data['labels']['tiles_url']}/0/0/0.png").status_code == 200
    with anonymous.get(data["csv_url"]) as response:
        assert response.status_code == 200
    # read-only and scoped: nothing else of the project, no writes
    assert anonymous.get("/api/v1/projects").status_code == 401
    assert anonymous.post(f"/api/v1/results/{result_id}/reproduce").status_code in (400, 401)
    with session_scope(settings.sqlalchemy_url) as session:
        actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert {"share.create", "share.open", "download"} <= set(actions)


def test_revoked_and_expired_links_stop_working(settings, logged_in, analysed):
    link = create_link(logged_in, analysed, days=3, label="for the reviewer")
    anonymous, opened = open_link(logged_in.application, link["url"])
    assert opened.status_code == 302
    assert anonymous.get(f"/api/v1/results/{analysed}").status_code == 200
    listed = logged_in.get(f"/api/v1/results/{analysed}/shares").get_json()["shares"]
    assert listed[0]["id"] == link["id"] and listed[0]["uses"] == 1  # newest first

    revoked = logged_in.post(f"/api/v1/shares/{link['id']}/revoke", headers={"X-CSRFToken": csrf_token(logged_in, "/")})
    assert revoked.status_code == 200 and revoked.get_json()["active"] is False
    assert anonymous.get(f"/api/v1/results/{analysed}").status_code in (401, 403, 404)  # the open session loses it too
    assert open_link(logged_in.application, link["url"])[1].status_code == 410

    second = create_link(logged_in, analysed)
    with session_scope(settings.sqlalchemy_url) as session:
        session.get(ShareLink, second["id"]).expires_at = utcnow() - timedelta(minutes=1)
    gone = open_link(logged_in.application, second["url"])[1]
    assert gone.status_code == 410 and "expired" in gone.get_data(as_text=True)
    assert open_link(logged_in.application, second["url"][:-3] + "abc")[1].status_code == 404


@pytest.mark.parametrize("days", [0, 400, "7", None])
def test_share_link_lifetime_is_checked(logged_in, analysed, days):
    response = logged_in.post(f"/api/v1/results/{analysed}/shares", json={"days": days},
                              headers={"X-CSRFToken": csrf_token(logged_in, "/")})
    assert response.status_code == 400 and "days" in response.get_json()["error"]
