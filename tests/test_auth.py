"""Login, logout, anonymous access, CSRF and cookie settings."""

import io

from sqlalchemy import select

from portal.db import session_scope
from portal.models import User
from tests.conftest import PASSWORD, csrf_token, log_in


def test_anonymous_pages_redirect_to_login(client):
    response = client.get("/projects/1")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/projects/1")


def test_anonymous_api_gets_401_json(client):
    response = client.get("/api/v1/projects")
    assert response.status_code == 401
    assert response.json == {"error": "login required", "status": 401}


def test_anonymous_tiles_get_401(client):
    assert client.get("/api/v1/datasets/x/tiles/0/0/0.jpg").status_code == 401


def test_login_page_is_public(client):
    page = client.get("/login")
    assert page.status_code == 200
    assert 'name="csrf_token"' in page.get_data(as_text=True)


def test_wrong_password_is_refused(client, make_user):
    make_user()
    response = client.post("/login", data={"email": "ana@example.org", "password": "nope", "csrf_token": csrf_token(client)})
    assert response.status_code == 401
    assert "Wrong login or password" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_an_unknown_email_costs_a_password_check_like_a_known_one(client, make_user, monkeypatch):
    """Otherwise the answer's speed tells which emails have accounts."""
    import portal.auth
    from portal.models import core

    checks = []
    for module in (portal.auth, core):
        real = module.check_password_hash
        monkeypatch.setattr(module, "check_password_hash", lambda h, p, real=real: checks.append(h) or real(h, p))
    make_user()
    for email in ("ana@example.org", "nobody@example.org"):
        response = client.post("/login", data={"email": email, "password": "wrong", "csrf_token": csrf_token(client)})
        assert response.status_code == 401 and "Wrong login or password" in response.get_data(as_text=True)
    assert len(checks) == 2 and checks[0] != checks[1], "one check each: the user's hash, then a stand-in"


def test_login_then_logout(client, make_user):
    make_user()
    log_in(client, email="ANA@example.org ")  # case and spaces do not matter
    assert client.get("/").status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_passwords_are_stored_hashed(settings, make_user):
    make_user()
    with session_scope(settings.sqlalchemy_url) as session:
        user = session.scalar(select(User))
        assert PASSWORD not in user.password_hash
        assert user.check_password(PASSWORD)


def test_login_without_csrf_token_is_rejected(client, make_user):
    make_user()
    response = client.post("/login", data={"email": "ana@example.org", "password": PASSWORD})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_api_post_without_csrf_header_is_rejected(logged_in):
    response = logged_in.post("/api/v1/projects", json={"name": "x"})
    assert response.status_code == 400
    assert "CSRF" in response.json["error"]


def test_next_parameter_cannot_leave_the_site(client, make_user):
    make_user()
    response = client.post("/login?next=https://evil.example/", data={
        "email": "ana@example.org", "password": PASSWORD, "csrf_token": csrf_token(client)})
    assert response.headers["Location"] == "/"


def test_session_cookie_is_httponly_and_samesite(client, make_user):
    make_user()
    response = log_in(client)
    session_cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie


def test_a_new_password_ends_existing_sessions(client, settings, make_user):
    make_user()
    log_in(client)
    assert client.get("/").status_code == 200
    with session_scope(settings.sqlalchemy_url) as session:
        session.scalar(select(User)).set_password("a brand new password")
    assert client.get("/").status_code == 302


def test_anonymous_uploads_are_refused_before_the_body_is_stored(client, settings):
    response = client.post("/api/v1/projects/1/datasets", data={"file": (io.BytesIO(b"II*\0" + b"0" * 1000), "a.tif")},
                           content_type="multipart/form-data")
    assert response.status_code == 401
    assert not (settings.data_path / "uploads").exists() or not any((settings.data_path / "uploads").iterdir())
