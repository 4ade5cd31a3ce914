"""Login and logout pages and the flask-login user loader (each login is a `user_sessions` row; see login_sessions)."""

from __future__ import annotations

from datetime import timedelta
import secrets
from urllib.parse import urlsplit

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for
from flask import session as flask_session
from flask_login import current_user, login_required, login_user, logout_user, user_loaded_from_cookie
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from portal import audit, login_sessions
from portal.context import after_this_request_closes, db, settings
from portal.extensions import login_manager
from portal.models import LoginSession, User, utcnow

blueprint = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(token: str) -> User | None:
    """The user of a login-session token, unless that session ended, the user was deactivated or the password changed.

    One indexed query loads the session row and its user together: no more than the user lookup it replaces.
    Cookies from before login sessions existed ("<id>:<fingerprint>") match no row, so they are logged out.
    """
    login = login_sessions.find_session(db(), token, idle_after=idle_limit(), defer=after_this_request_closes)
    if login is None:
        return None
    g.login_session = login
    return login.user


@user_loaded_from_cookie.connect
def bind_restored_session(app, user=None, **_) -> None:
    """A session restored from the remember-me cookie is bound to this browser as a login is; without this, flask-login's
    "strong" protection finds no `_id` on the next request and logs the user out again (flask-login issues 248, 685)."""
    flask_session["_id"] = login_manager._session_identifier_generator()


def idle_limit() -> timedelta | None:
    """How long a login session may go unused (TILESCOPE_SESSION_IDLE_DAYS; None: for ever)."""
    days = settings().session_idle_days
    return timedelta(days=days) if days > 0 else None


def current_login_session() -> LoginSession | None:
    """The session row of this request's logged-in browser (None for anonymous requests and viewer tokens)."""
    return g.get("login_session") if current_user.is_authenticated else None


def safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login."""
    if not target:
        return url_for("pages.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("pages.index")
    return target


#: A hash checked for unknown emails, so that a login answers as slowly for them as for real accounts.
_UNKNOWN_USER_HASH = generate_password_hash(secrets.token_urlsafe(16))


def _check_unknown(password: str) -> bool:
    check_password_hash(_UNKNOWN_USER_HASH, password)
    return False


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        password = request.form.get("password", "")
        user = db().scalar(select(User).where(User.email == email))
        password_ok = user.check_password(password) if user is not None else _check_unknown(password)
        if user is None or not user.is_active or not password_ok:
            deactivated = user is not None and not user.is_active and password_ok
            audit.record(db(), "failed login", actor=email[:320] or "(no email)", target_type="user",
                         reason="deactivated" if deactivated else "", remote_addr=request.remote_addr or "")
            db().commit()
            # only someone who knows the password learns that the account exists and is deactivated
            flash("This account is deactivated; ask an admin of this portal to reactivate it." if deactivated
                  else "Wrong login or password.", "error")
            return render_template("login.html", email=email), 401
        user.last_login_at = utcnow()
        audit.record(db(), "login", user=user, target_type="user", target_id=user.id,
                     remote_addr=request.remote_addr or "")
        login_sessions.open_session(db(), user, idle_after=idle_limit(), user_agent=request.user_agent.string,
                                    remote_addr=request.remote_addr or "")
        db().commit()
        login_user(user, remember=bool(request.form.get("remember")))
        return redirect(safe_next(request.args.get("next")))
    return render_template("login.html", email="")


@blueprint.post("/logout")
@login_required
def logout():
    """End this browser's login session for every host (a copy of the cookie is refused from now on), then forget it."""
    user, login = current_user._get_current_object(), current_login_session()
    if login is not None:
        login_sessions.end_session(login, "logout")
    audit.record(db(), "logout", user=user, target_type="user", target_id=user.id,
                 remote_addr=request.remote_addr or "")
    db().commit()
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@blueprint.get("/api/v1/account/sessions")
def list_sessions():
    """The signed-in user's live login sessions (browser, address, when), the current one marked."""
    current = current_login_session()
    return jsonify(sessions=[login_sessions.describe(s, current) for s in login_sessions.live_sessions(db(), current_user, idle_after=idle_limit())])


@blueprint.post("/api/v1/account/sessions/end-others")
def end_other_sessions():
    """Sign out every other browser of this user (a lost phone, a shared computer)."""
    ended = login_sessions.end_user_sessions(db(), current_user.id, "signed out from another session",
                                             keep=current_login_session())
    audit.record(db(), "sessions.end", user=current_user, target_type="user", target_id=current_user.id,
                 new={"ended": ended}, remote_addr=request.remote_addr or "")
    db().commit()
    return jsonify(ended=ended)
