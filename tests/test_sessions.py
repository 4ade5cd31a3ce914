"""Login sessions end on the server: logout, a new password or a deactivation refuses every copy of the cookie."""

from click.testing import CliRunner
from sqlalchemy import select

from portal import login_sessions
from portal.accounts import deactivate_user, set_password
from portal.cli import main
from portal.db import session_scope
from portal.models import AuditEvent, LoginSession, User
from tests.conftest import PASSWORD, csrf_token, log_in


def browser(app, cookies: dict[str, str]):
    """A new test client holding nothing but these cookies (a copy taken from another browser)."""
    client = app.test_client()
    for name, value in cookies.items():
        client.set_cookie(name, value)
    return client


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def session_data(app, client) -> dict:
    return app.session_interface.get_signing_serializer(app).loads(session_cookie(client))


def token_of(app, client) -> str:
    return session_data(app, client)["_user_id"]


def log_out(client):
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    return response


def assert_logged_out(client):
    assert client.get("/api/v1/projects").status_code == 401
    page = client.get("/")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")


def assert_logged_in(client):
    assert client.get("/api/v1/projects").status_code == 200
    assert client.get("/").status_code == 200


def test_a_cookie_copied_before_logout_is_refused_after_it(app, logged_in):
    copy = browser(app, {"session": session_cookie(logged_in)})
    assert_logged_in(copy)
    log_out(logged_in)
    assert_logged_out(logged_in)
    assert_logged_out(copy)


def test_a_copied_remember_me_cookie_is_refused_after_logout(app, client, make_user):
    make_user()
    response = client.post("/login", data={"email": "ana@example.org", "password": PASSWORD, "remember": "y",
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 302
    remember = {"remember_token": client.get_cookie("remember_token").value}
    # the remember-me cookie alone opens a session (the browser was closed: its session cookie is gone)
    assert browser(app, remember).get("/api/v1/projects").status_code == 200
    log_out(client)
    assert browser(app, remember).get("/api/v1/projects").status_code == 401


def test_a_browser_back_through_remember_me_stays_logged_in(app, client, make_user):
    make_user()
    client.post("/login", data={"email": "ana@example.org", "password": PASSWORD, "remember": "y",
                                "csrf_token": csrf_token(client)})
    reopened = browser(app, {"remember_token": client.get_cookie("remember_token").value})
    for _ in range(3):  # each request after the first carries the session the first one restored
        assert_logged_in(reopened)
    assert reopened.get_cookie("remember_token") is not None
    other_machine = browser(app, {"session": session_cookie(reopened)})
    other_machine.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert other_machine.get("/api/v1/projects").status_code == 401, "the restored session is bound to its browser"


def test_logging_out_one_browser_keeps_the_other(app, make_user):
    make_user()
    laptop, phone = app.test_client(), app.test_client()
    log_in(laptop)
    log_in(phone)
    assert token_of(app, laptop) != token_of(app, phone)
    log_out(laptop)
    assert_logged_out(laptop)
    assert_logged_in(phone)


def test_a_new_password_ends_the_other_sessions_but_not_the_changing_one(app, settings, make_user):
    make_user()
    laptop, phone = app.test_client(), app.test_client()
    log_in(laptop)
    log_in(phone)
    with session_scope(settings.sqlalchemy_url) as session:
        current = login_sessions.find_session(session, token_of(app, laptop))
        assert set_password(session, current.user, "a brand new password", keep=current) == 1
    assert_logged_in(laptop)
    assert_logged_out(phone)
    assert_logged_out(browser(app, {"session": session_cookie(phone)}))
    with session_scope(settings.sqlalchemy_url) as session:
        ended = session.scalar(select(LoginSession).where(LoginSession.revoked_at.is_not(None)))
        assert ended.revoked_reason == "password"


def test_cli_set_password_ends_every_session(app, settings, make_user):
    make_user()
    laptop, phone = app.test_client(), app.test_client()
    log_in(laptop)
    log_in(phone)
    env = {"TILESCOPE_DATA_DIR": str(settings.data_dir), "TILESCOPE_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(main, ["set-password", "ana@example.org", "--password", "another-pass"], env=env)
    assert result.exit_code == 0, result.output
    assert "2 login session(s) ended" in result.output
    assert_logged_out(laptop)
    assert_logged_out(phone)
    log_in(laptop, password="another-pass")
    assert_logged_in(laptop)


def test_a_password_set_by_any_code_path_ends_sessions(app, settings, logged_in):
    with session_scope(settings.sqlalchemy_url) as session:
        session.scalar(select(User)).set_password("set without accounts.set_password")
    assert_logged_out(logged_in)


def test_deactivating_a_user_ends_every_session(app, settings, make_user):
    make_user()
    make_user("bob@example.org")
    ana, bob = app.test_client(), app.test_client()
    log_in(ana)
    log_in(bob, "bob@example.org")
    with session_scope(settings.sqlalchemy_url) as session:
        assert deactivate_user(session, session.scalar(select(User).where(User.email == "ana@example.org"))) == 1
    assert_logged_out(ana)
    assert_logged_in(bob)
    assert client_login_status(app, "ana@example.org") == 401


def client_login_status(app, email: str) -> int:
    client = app.test_client()
    return client.post("/login", data={"email": email, "password": PASSWORD,
                                       "csrf_token": csrf_token(client)}).status_code


def test_a_cookie_from_before_the_upgrade_is_refused(app, settings, logged_in):
    """The old cookie named the user as "<id>:<password fingerprint>"; the same cookie in that form opens nothing."""
    data = session_data(app, logged_in)
    serializer = app.session_interface.get_signing_serializer(app)
    with session_scope(settings.sqlalchemy_url) as session:
        user = session.scalar(select(User))
        old_id = f"{user.id}:{user.session_fingerprint}"
    assert_logged_in(browser(app, {"session": serializer.dumps(data)}))  # the re-signed cookie works as it is
    assert_logged_out(browser(app, {"session": serializer.dumps(dict(data, _user_id=old_id))}))


def test_the_database_holds_only_a_hash_of_the_token(app, settings, logged_in):
    token = token_of(app, logged_in)
    with session_scope(settings.sqlalchemy_url) as session:
        login = session.scalar(select(LoginSession))
        assert login.token_hash == login_sessions.token_digest(token) != token
        assert login.user.email == "ana@example.org" and login.user_agent.startswith("Werkzeug")
        assert login.remote_addr == "127.0.0.1" and login.revoked_at is None
        assert [login_sessions.describe(s)["id"] for s in login_sessions.live_sessions(session, login.user)] == [login.id]
        assert token not in str(login_sessions.describe(login))


def test_login_and_logout_are_audited(app, settings, logged_in):
    log_out(logged_in)
    with session_scope(settings.sqlalchemy_url) as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        login = session.scalar(select(LoginSession))
        assert login.revoked_reason == "logout" and login.revoked_at is not None
    assert [(e.action, e.actor) for e in events][-2:] == [("login", "ana@example.org"), ("logout", "ana@example.org")]


def test_a_user_lists_sessions_and_signs_out_the_others(app, make_user):
    from tests.conftest import csrf_token, log_in

    make_user()
    laptop, phone = app.test_client(), app.test_client()
    log_in(laptop)
    log_in(phone)
    sessions = laptop.get("/api/v1/account/sessions").get_json()["sessions"]
    assert len(sessions) == 2 and [s["current"] for s in sessions].count(True) == 1
    assert all("token" not in key for s in sessions for key in s)
    ended = laptop.post("/api/v1/account/sessions/end-others", headers={"X-CSRFToken": csrf_token(laptop, "/")})
    assert ended.status_code == 200 and ended.get_json()["ended"] == 1
    assert phone.get("/api/v1/projects").status_code == 401
    assert laptop.get("/api/v1/projects").status_code == 200
    assert app.test_client().get("/api/v1/account/sessions").status_code == 401


def _set_last_seen(settings, when) -> None:
    from sqlalchemy import update

    with session_scope(settings.sqlalchemy_url) as session:
        session.execute(update(LoginSession).values(last_seen_at=when, created_at=when))


def _last_seen(settings):
    with session_scope(settings.sqlalchemy_url) as session:
        login = session.scalar(select(LoginSession))
        return login.last_seen_at, login.revoked_reason


def test_use_is_recorded_every_few_minutes_and_an_idle_session_ends(app, settings, logged_in):
    from datetime import timedelta

    from portal.models import utcnow

    _set_last_seen(settings, utcnow() - timedelta(minutes=10))
    assert_logged_in(logged_in)
    seen, _ = _last_seen(settings)
    assert utcnow() - seen < timedelta(minutes=1), "a request after 10 quiet minutes records the use"
    assert_logged_in(logged_in)
    assert _last_seen(settings)[0] == seen, "requests within 5 minutes write nothing"
    [listed] = logged_in.get("/api/v1/account/sessions").get_json()["sessions"]
    assert listed["last_seen_at"] == seen.isoformat()

    _set_last_seen(settings, utcnow() - timedelta(days=settings.session_idle_days, minutes=1))
    assert_logged_out(logged_in)
    assert _last_seen(settings)[1] == "idle"
    log_in(logged_in)
    assert_logged_in(logged_in)


def test_recording_use_never_waits_on_what_the_view_has_not_committed(app, settings, make_user):
    """A view that writes before it first asks who the user is (as opening a share link does): the use is written
    after the request's own transaction ends, never beside it (on SQLite that would wait on the view's write lock)."""
    import time
    from datetime import timedelta

    from flask_login import current_user

    from portal.context import close_db, db
    from portal.models import utcnow

    make_user()
    client = app.test_client()
    log_in(client)
    same_browser = {"Cookie": f"session={session_cookie(client)}",
                    "User-Agent": client.get("/").request.headers["User-Agent"]}
    quiet_since = utcnow() - timedelta(minutes=10)
    _set_last_seen(settings, quiet_since)
    with app.test_request_context("/", headers=same_browser, environ_base={"REMOTE_ADDR": "127.0.0.1"}):
        db().scalar(select(User).where(User.email == "ana@example.org")).name = "Ana"
        db().flush()  # the request holds the database's write lock (SQLite) or the row (PostgreSQL)
        started = time.monotonic()
        assert current_user.is_authenticated and current_user.email == "ana@example.org"
        assert time.monotonic() - started < 5
        db().commit()
        assert _last_seen(settings)[0] == quiet_since, "not written beside the request"
        close_db()
    assert utcnow() - _last_seen(settings)[0] < timedelta(minutes=1), "written once the request's session closed"


def test_idle_sessions_are_not_listed_and_are_deleted_at_the_next_login(app, settings, make_user):
    from datetime import timedelta

    from portal.models import utcnow

    make_user()
    forgotten, current = app.test_client(), app.test_client()
    log_in(forgotten)
    with session_scope(settings.sqlalchemy_url) as session:
        session.execute(update_sessions().values(created_at=utcnow() - timedelta(days=20),
                                                 last_seen_at=utcnow() - timedelta(days=20)))
    log_in(current)
    assert len(current.get("/api/v1/account/sessions").get_json()["sessions"]) == 1, "the idle one is not listed"
    with session_scope(settings.sqlalchemy_url) as session:
        session.execute(update_sessions().where(LoginSession.created_at < utcnow() - timedelta(days=19))
                        .values(created_at=utcnow() - timedelta(days=60), last_seen_at=utcnow() - timedelta(days=60)))
    log_in(app.test_client())
    with session_scope(settings.sqlalchemy_url) as session:
        assert len(session.scalars(select(LoginSession)).all()) == 2, "idle past idle days + 30 days: deleted"


def update_sessions():
    from sqlalchemy import update

    return update(LoginSession)
