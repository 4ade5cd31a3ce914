"""An object's History tab: its audit events, newest first, field by field, with reasons; the chain stays intact."""

from __future__ import annotations

from portal import audit
from portal.db import session_scope
from portal.history import changes, history_events, history_rows
from portal.models import AuditEvent, Membership, Role
from tests.conftest import csrf_token, log_in


def headers(client):
    return {"X-CSRFToken": csrf_token(client, "/")}


def test_changes_are_listed_field_by_field():
    event = AuditEvent(action="modify", old_values={"code": "S1", "species": ""}, new_values={"code": "S2", "note": "x"})
    assert changes(event) == [{"field": "code", "old": "S1", "new": "S2"}, {"field": "species", "old": "", "new": None},
                              {"field": "note", "old": None, "new": "x"}]


def test_project_history_tab_api_and_chain(app, settings, logged_in, make_user):
    client = logged_in
    h = headers(client)
    project_id = client.post("/api/v1/projects", json={"name": "P"}, headers=h).json["id"]
    client.post(f"/api/v1/projects/{project_id}/metadata", json={"key": "grant", "value": "ERC-1"}, headers=h)
    client.post(f"/api/v1/projects/{project_id}/metadata", json={"key": "grant", "value": "ERC-2", "reason": "renewed"},
                headers=h)
    client.post(f"/api/v1/projects/{project_id}/tags", json={"name": "pilot"}, headers=h)

    events = client.get(f"/api/v1/projects/{project_id}/history").json["events"]
    assert [e["action"] for e in events] == ["tag.create", "metadata.modify", "metadata.create"]  # newest first
    renewed = events[1]
    assert {"field": "value", "old": "ERC-1", "new": "ERC-2"} in renewed["changes"]
    assert renewed["reason"] == "renewed" and renewed["at"].endswith("+00:00")

    with session_scope(settings.sqlalchemy_url) as session:
        assert audit.verify_chain(session) == []
        rows = history_rows(history_events(session, "project", project_id))
        assert {"action": "metadata.modify", "field": "value", "old": "ERC-1", "new": "ERC-2"}.items() <= \
            next(r for r in rows if r["action"] == "metadata.modify" and r["field"] == "value").items()

    page = client.get(f"/projects/{project_id}").get_data(as_text=True)
    assert 'data-tab="history"' in page and "renewed" in page and "ERC-2" in page
    assert f'data-json-api="/api/v1/projects/{project_id}/metadata"' in page  # owners may edit

    viewer_id = make_user("vera@example.org")
    with session_scope(settings.sqlalchemy_url) as session:
        session.add(Membership(user_id=viewer_id, project_id=project_id, role=Role.VIEWER.value))
    vera = app.test_client()
    log_in(vera, "vera@example.org")
    page = vera.get(f"/projects/{project_id}").get_data(as_text=True)
    assert "renewed" in page and "/metadata\" data-method" not in page  # viewers read the tabs, no edit forms
    assert vera.get(f"/api/v1/projects/{project_id}/history?format=csv").mimetype == "text/csv"


def test_pages_carry_a_content_security_policy_and_json_does_not(logged_in):
    page = logged_in.get("/")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "object-src 'none'" in policy and "frame-ancestors 'self'" in policy
    assert "Content-Security-Policy" not in logged_in.get("/api/v1/projects").headers
