"""Accounts over the web API: changing your own password, admins managing users, the last-admin guards, audit events."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.db import session_scope
from portal.models import AuditEvent, User
from tests.conftest import PASSWORD, csrf_token, log_in

ADMIN, ANA = "admin@example.org", "ana@example.org"


def write(client, method: str, url: str, body=None):
    return client.open(url, method=method, json=body, headers={"X-CSRFToken": csrf_token(client, "/")})


def logged_in_as(app, email: str, password: str = PASSWORD):
    client = app.test_client()
    log_in(client, email, password)
    return client


def is_logged_in(client) -> bool:
    status = client.get("/api/v1/projects").status_code
    assert status in (200, 401)
    return status == 200


def passwords(current: str, new: str, repeat: str | None = None) -> dict:
    return {"current_password": current, "new_password": new, "repeat_password": new if repeat is None else repeat}


def audit_events(settings, action: str) -> list[AuditEvent]:
    with session_scope(settings.sqlalchemy_url) as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()
        session.expunge_all()
        return events


def login_status(app, email: str, password: str) -> tuple[int, str]:
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_token(client)})
    return response.status_code, response.get_data(as_text=True)


@pytest.fixture
def admin(app, make_user):
    """A logged-in admin (admin@example.org) and a plain user ana@example.org; yields the admin's client."""
    make_user(ADMIN, admin=True)
    make_user(ANA)
    return logged_in_as(app, ADMIN)


def user_id(settings, email: str) -> int:
    with session_scope(settings.sqlalchemy_url) as session:
        return session.scalar(select(User.id).where(User.email == email))


# ---- your own password ----

def test_a_wrong_current_password_changes_nothing(app, settings, logged_in):
    response = write(logged_in, "POST", "/api/v1/account/password",
                     passwords("not it at all", "a new password"))
    assert response.status_code == 400 and "current password is wrong" in response.get_json()["error"]
    assert login_status(app, ANA, PASSWORD)[0] == 302
    assert audit_events(settings, "account.password.failed")[0].actor == ANA


@pytest.mark.parametrize("new, repeat, message", [("short", "short", "at least 8 characters"),
                                                  ("a new password", "another one", "differ")])
def test_a_too_short_or_mistyped_new_password_is_refused(app, logged_in, new, repeat, message):
    response = write(logged_in, "POST", "/api/v1/account/password",
                     passwords(PASSWORD, new, repeat))
    assert response.status_code == 400 and message in response.get_json()["error"]
    assert login_status(app, ANA, PASSWORD)[0] == 302


def test_a_new_password_logs_out_the_other_browsers_but_not_this_one(app, settings, make_user):
    make_user()
    laptop, phone = logged_in_as(app, ANA), logged_in_as(app, ANA)
    response = write(laptop, "POST", "/api/v1/account/password",
                     passwords(PASSWORD, "a new password"))
    assert response.status_code == 200 and response.get_json() == {"changed": True, "sessions_ended": 1}
    assert is_logged_in(laptop) and not is_logged_in(phone)
    assert [s["current"] for s in laptop.get("/api/v1/account/sessions").get_json()["sessions"]] == [True]
    assert login_status(app, ANA, PASSWORD)[0] == 401
    assert login_status(app, ANA, "a new password")[0] == 302
    [event] = audit_events(settings, "account.password.change")
    assert event.actor == ANA and event.new_values == {"sessions_ended": 1}


def test_the_account_page_shows_name_email_and_the_forms(app, logged_in):
    page = logged_in.get("/account").get_data(as_text=True)
    assert ANA in page and 'id="password-form"' in page and 'id="sessions"' in page
    assert 'href="/account"' in logged_in.get("/").get_data(as_text=True)
    assert 'href="/admin/users"' not in page  # the Users link is for admins only


# ---- admins manage users ----

def test_an_admin_lists_users_without_password_hashes(admin):
    assert 'href="/admin/users"' in admin.get("/").get_data(as_text=True)
    users = admin.get("/api/v1/users").get_json()["users"]
    assert [u["email"] for u in users] == [ADMIN, ANA]
    assert {u["email"]: (u["is_admin"], u["is_active"], u["is_you"]) for u in users} == {
        ADMIN: (True, True, True), ANA: (False, True, False)}
    assert users[0]["last_login_at"] and users[1]["last_login_at"] is None
    assert not any("hash" in key or "password" in key for u in users for key in u)
    assert "pbkdf2" not in admin.get("/api/v1/users").get_data(as_text=True)


def test_an_admin_creates_a_user_whose_generated_password_works(app, settings, admin):
    response = write(admin, "POST", "/api/v1/users", {"email": " Bob@Example.org ", "name": "Bob", "is_admin": False})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["user"]["email"] == "bob@example.org" and body["user"]["name"] == "Bob"
    assert len(body["password"]) >= 12 and "hash" not in str(body)
    assert login_status(app, "bob@example.org", body["password"])[0] == 302
    again = write(admin, "POST", "/api/v1/users", {"email": "bob@example.org"})
    assert again.status_code == 409 and "already exists" in again.get_json()["error"]
    assert write(admin, "POST", "/api/v1/users", {"email": "not an email"}).status_code == 400
    [event] = audit_events(settings, "user.create")
    assert event.actor == ADMIN and event.new_values == {"email": "bob@example.org", "name": "Bob", "is_admin": False}
    assert body["password"] not in str(event.new_values)


def test_a_reset_password_is_shown_once_and_logs_the_user_out(app, settings, admin):
    ana = logged_in_as(app, ANA)
    response = write(admin, "POST", f"/api/v1/users/{user_id(settings, ANA)}/password")
    assert response.status_code == 200 and response.get_json()["sessions_ended"] == 1
    assert not is_logged_in(ana)
    assert login_status(app, ANA, PASSWORD)[0] == 401
    assert login_status(app, ANA, response.get_json()["password"])[0] == 302
    [event] = audit_events(settings, "user.password.reset")
    assert event.actor == ADMIN and event.target_id == str(user_id(settings, ANA))
    mine = write(admin, "POST", f"/api/v1/users/{user_id(settings, ADMIN)}/password")
    assert mine.status_code == 409 and "account page" in mine.get_json()["error"]
    assert write(admin, "POST", "/api/v1/users/9999/password").status_code == 404


def test_a_deactivated_user_is_logged_out_and_cannot_log_in_until_reactivated(app, settings, admin):
    ana = logged_in_as(app, ANA)
    ana_id = user_id(settings, ANA)
    response = write(admin, "PATCH", f"/api/v1/users/{ana_id}", {"is_active": False})
    assert response.status_code == 200 and response.get_json()["sessions_ended"] == 1
    assert response.get_json()["user"]["is_active"] is False
    assert not is_logged_in(ana)
    status, page = login_status(app, ANA, PASSWORD)
    assert status == 401 and "This account is deactivated" in page
    status, page = login_status(app, ANA, "a wrong password")
    assert status == 401 and "deactivated" not in page  # only the right password learns the account is deactivated
    assert write(admin, "PATCH", f"/api/v1/users/{ana_id}", {"is_active": True}).status_code == 200
    assert login_status(app, ANA, PASSWORD)[0] == 302
    events = audit_events(settings, "user.update")
    assert [(e.old_values, e.new_values) for e in events] == [
        ({"is_active": True}, {"is_active": False, "sessions_ended": 1}), ({"is_active": False}, {"is_active": True})]
    assert audit_events(settings, "failed login")[0].reason == "deactivated"


def test_an_admin_grants_and_revokes_admin_rights_and_renames(app, settings, admin):
    ana_id = user_id(settings, ANA)
    ana = logged_in_as(app, ANA)
    assert ana.get("/api/v1/users").status_code == 403
    granted = write(admin, "PATCH", f"/api/v1/users/{ana_id}", {"is_admin": True, "name": "Ana Silva"})
    assert granted.status_code == 200 and granted.get_json()["user"]["is_admin"] is True
    assert ana.get("/api/v1/users").status_code == 200  # the same session, now an admin
    revoked = write(admin, "PATCH", f"/api/v1/users/{ana_id}", {"is_admin": False})
    assert revoked.status_code == 200 and ana.get("/api/v1/users").status_code == 403
    events = audit_events(settings, "user.update")
    assert [(e.old_values, e.new_values) for e in events] == [
        ({"name": "", "is_admin": False}, {"name": "Ana Silva", "is_admin": True}),
        ({"is_admin": True}, {"is_admin": False})]
    assert write(admin, "PATCH", f"/api/v1/users/{ana_id}", {"is_admin": "yes"}).status_code == 400
    assert write(admin, "PATCH", f"/api/v1/users/{ana_id}", {}).status_code == 400


# ---- guards ----

def test_an_admin_cannot_deactivate_or_demote_themself(settings, admin, make_user):
    make_user("second-admin@example.org", admin=True)
    me = user_id(settings, ADMIN)
    for change, word in (({"is_active": False}, "deactivate yourself"), ({"is_admin": False}, "yourself")):
        response = write(admin, "PATCH", f"/api/v1/users/{me}", change)
        assert response.status_code == 409 and word in response.get_json()["error"]
    assert is_logged_in(admin)
    assert write(admin, "PATCH", f"/api/v1/users/{me}", {"name": "Boss"}).status_code == 200
    assert [e.new_values for e in audit_events(settings, "user.update")] == [{"name": "Boss"}]


def test_the_last_active_admin_is_never_deactivated_or_demoted(app, settings, admin, make_user):
    """Over the API an admin may remove another admin while one remains; the guard itself refuses to remove the last
    active one (reached when two admins demote each other at once: each request's actor is then no longer an admin)."""
    from portal.accounts import AccountConflict, check_rights_change

    make_user("second-admin@example.org", admin=True)
    make_user("former-admin@example.org", admin=True)
    first_id, second_id = user_id(settings, ADMIN), user_id(settings, "second-admin@example.org")
    former_id = user_id(settings, "former-admin@example.org")
    assert write(admin, "PATCH", f"/api/v1/users/{former_id}", {"is_active": False}).status_code == 200
    assert write(admin, "PATCH", f"/api/v1/users/{second_id}", {"is_admin": False}).status_code == 200
    refused = write(admin, "PATCH", f"/api/v1/users/{first_id}", {"is_admin": False})
    assert refused.status_code == 409 and "yourself" in refused.get_json()["error"]
    with session_scope(settings.sqlalchemy_url) as session:
        first, second = session.get(User, first_id), session.get(User, second_id)
        for change in ({"is_active": False}, {"is_admin": False}):  # a deactivated admin does not count
            with pytest.raises(AccountConflict, match="last active admin; make someone else an admin first"):
                check_rights_change(session, second, first, **change)
        check_rights_change(session, second, first, is_admin=True, is_active=True)  # no removal: nothing to refuse
        session.get(User, former_id).is_active = True
        session.flush()
        check_rights_change(session, second, first, is_admin=False)  # the reactivated admin remains


def test_non_admins_get_403_on_every_users_endpoint(app, settings, admin):
    ana = logged_in_as(app, ANA)
    ana_id = user_id(settings, ANA)
    for method, url, body in [("GET", "/admin/users", None), ("GET", "/api/v1/users", None),
                              ("POST", "/api/v1/users", {"email": "eve@example.org"}),
                              ("PATCH", f"/api/v1/users/{ana_id}", {"is_admin": True}),
                              ("POST", f"/api/v1/users/{ana_id}/password", None)]:
        response = ana.get(url) if method == "GET" else write(ana, method, url, body)
        assert response.status_code == 403, (method, url)
    with session_scope(settings.sqlalchemy_url) as session:
        assert session.get(User, ana_id).is_admin is False
        assert session.scalar(select(User).where(User.email == "eve@example.org")) is None
    assert app.test_client().get("/api/v1/users").status_code == 401


def test_writes_need_the_csrf_header(settings, admin):
    response = admin.patch(f"/api/v1/users/{user_id(settings, ANA)}", json={"is_active": False})
    assert response.status_code == 400
    with session_scope(settings.sqlalchemy_url) as session:
        assert session.scalar(select(User.is_active).where(User.email == ANA)) is True


def test_two_admins_demoting_each_other_at_once_leave_one_admin(settings, make_user):
    """PostgreSQL: the guard locks the admin rows, so the second demotion waits for the first and then sees it."""
    import threading

    from portal.accounts import AccountConflict, check_rights_change
    from portal.db import session_factory

    if not settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writing transaction at a time: the race cannot happen there")
    a_id, b_id = make_user(ADMIN, admin=True), make_user("b@example.org", admin=True)
    make_session = session_factory(settings.sqlalchemy_url)
    first, second = make_session(), make_session()
    outcome = {}

    def demote(session, actor_id, target_id):
        try:
            actor, target = session.get(User, actor_id), session.get(User, target_id)
            check_rights_change(session, actor, target, is_admin=False)
            target.is_admin = False
            session.commit()
            outcome[actor_id] = "demoted"
        except AccountConflict:
            session.rollback()
            outcome[actor_id] = "refused"

    try:
        check_rights_change(first, first.get(User, a_id), first.get(User, b_id), is_admin=False)  # holds the locks
        racer = threading.Thread(target=demote, args=(second, b_id, a_id))
        racer.start()
        racer.join(0.5)
        assert racer.is_alive(), "the second demotion waits for the first transaction"
        first.get(User, b_id).is_admin = False
        first.commit()
        racer.join(10)
        assert outcome == {b_id: "refused"}
    finally:
        first.close()
        second.close()
    with session_scope(settings.sqlalchemy_url) as session:
        assert session.scalars(select(User.email).where(User.is_admin.is_(True))).all() == [ADMIN]
