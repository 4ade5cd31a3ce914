"""Login sessions: opened at login, looked up with the user in one indexed query per request, ended anywhere.

The session cookie holds only a random token; the `user_sessions` row holds its SHA-256. A logout, a new
password or a deactivation ends the row, and with it every copy of the cookie on every web replica at once.
Flask-free: the web login, the CLI and account changes all use it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session, contains_eager
from sqlalchemy.orm.attributes import set_committed_value

from portal.models import LoginSession, User, utcnow

TOKEN_BYTES = 32
#: Ended sessions are kept this long (for the sessions list), then deleted at the user's next login.
ENDED_KEPT = timedelta(days=30)
#: A session's last_seen_at is written at most this often: one small UPDATE per browser every few minutes, not per tile.
LAST_SEEN_EVERY = timedelta(minutes=5)


#: Built once (each request only binds the digest): the session row by its unique hash, joined to its user.
_LIVE_SESSION_WITH_USER = (select(LoginSession).join(LoginSession.user).options(contains_eager(LoginSession.user))
                           .where(LoginSession.token_hash == bindparam("digest"), LoginSession.revoked_at.is_(None)))


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, user: User, *, user_agent: str = "", remote_addr: str = "",
                 idle_after: timedelta | None = None) -> LoginSession:
    """A new login session of USER; its token (for the cookie) is set on `user.login_token`, and exists nowhere else.
    The user's sessions ended (or idle) for longer than ENDED_KEPT are deleted on the way."""
    old = utcnow() - ENDED_KEPT
    gone = LoginSession.revoked_at < old
    if idle_after:
        gone = gone | (func.coalesce(LoginSession.last_seen_at, LoginSession.created_at) < old - idle_after)
    session.execute(delete(LoginSession).where(LoginSession.user_id == user.id, gone))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    login = LoginSession(token_hash=token_digest(token), user=user, password_fingerprint=user.session_fingerprint,
                         user_agent=user_agent[:300], remote_addr=remote_addr[:64])
    session.add(login)
    session.flush()
    user.login_token = token
    return login


def find_session(session: Session, token: str, *, idle_after: timedelta | None = None,
                 defer: Callable[[Callable[[], None]], None] | None = None) -> LoginSession | None:
    """The live session of TOKEN with its user (one query); None once ended, deactivated or the password changed,
    or unused for longer than IDLE_AFTER (then it is ended as "idle"). Records use every LAST_SEEN_EVERY, in a
    transaction of its own, run now or handed to DEFER (the web runs it once the request's session is closed)."""
    if not token:
        return None
    login = session.scalar(_LIVE_SESSION_WITH_USER, {"digest": token_digest(token)})
    if login is None or not login.user.is_active or not login.is_live:
        return None
    now = utcnow()
    last_seen = login.last_seen_at or login.created_at
    if idle_after and now - last_seen > idle_after:
        _write_aside(session, login, defer, revoked_at=now, revoked_reason="idle")
        return None
    if now - last_seen > LAST_SEEN_EVERY:
        _write_aside(session, login, defer, last_seen_at=now)
    login.user.login_token = token
    return login


def _write_aside(session: Session, login: LoginSession, defer, **values) -> None:
    """Write VALUES to the session row in a transaction of its own (never the caller's, which may hold uncommitted
    work); the loaded row shows the values at once without becoming dirty."""
    engine, login_id = session.get_bind(), login.id

    def write() -> None:
        with engine.begin() as connection:
            connection.execute(update(LoginSession).where(LoginSession.id == login_id).values(**values))

    (defer or (lambda run: run()))(write)
    for name, value in values.items():
        set_committed_value(login, name, value)


def end_session(login: LoginSession, reason: str) -> None:
    if login.revoked_at is None:
        login.revoked_at, login.revoked_reason = utcnow(), reason


def end_user_sessions(session: Session, user_id: int, reason: str, *, keep: LoginSession | None = None) -> int:
    """End every live session of the user except KEEP; how many were ended."""
    query = update(LoginSession).where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(LoginSession.id != keep.id)
    values = query.values(revoked_at=utcnow(), revoked_reason=reason).execution_options(synchronize_session="fetch")
    return session.execute(values).rowcount


def live_sessions(session: Session, user: User, *, idle_after: timedelta | None = None) -> list[LoginSession]:
    """The user's sessions that still let a browser in (not idle for longer than IDLE_AFTER), newest first."""
    rows = session.scalars(select(LoginSession).where(LoginSession.user_id == user.id, LoginSession.revoked_at.is_(None))
                           .order_by(LoginSession.created_at.desc(), LoginSession.id.desc()))
    idle_since = utcnow() - idle_after if idle_after else None
    return [login for login in rows
            if login.is_live and (idle_since is None or (login.last_seen_at or login.created_at) >= idle_since)]


def describe(login: LoginSession, current: LoginSession | None = None) -> dict:
    """A session as JSON for its user (never the token or its hash)."""
    last_seen = login.last_seen_at or login.created_at
    return {"id": login.id, "created_at": login.created_at.isoformat(), "last_seen_at": last_seen.isoformat(),
            "user_agent": login.user_agent,
            "remote_addr": login.remote_addr, "current": current is not None and login.id == current.id,
            "ended_at": login.revoked_at.isoformat() if login.revoked_at else None, "ended_because": login.revoked_reason}
