"""Login and logout pages and the flask-login user loader."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from portal import audit
from portal.context import db
from portal.extensions import login_manager
from portal.models import User, utcnow

blueprint = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The user of a session id "<id>:<fingerprint>", unless deactivated or the password changed since login."""
    user_id, _, fingerprint = session_id.partition(":")
    user = db().get(User, int(user_id)) if user_id.isdigit() else None
    if user is None or not user.is_active or fingerprint != user.session_fingerprint:
        return None
    return user


def safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login."""
    if not target:
        return url_for("pages.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("pages.index")
    return target


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        password = request.form.get("password", "")
        user = db().scalar(select(User).where(User.email == email))
        if user is None or not user.is_active or not user.check_password(password):
            audit.record(db(), "failed login", actor=email[:320] or "(no email)", target_type="user",
                         remote_addr=request.remote_addr or "")
            db().commit()
            flash("Wrong login or password.", "error")
            return render_template("login.html", email=email), 401
        user.last_login_at = utcnow()
        audit.record(db(), "login", user=user, target_type="user", target_id=user.id,
                     remote_addr=request.remote_addr or "")
        db().commit()
        login_user(user, remember=bool(request.form.get("remember")))
        return redirect(safe_next(request.args.get("next")))
    return render_template("login.html", email="")


@blueprint.post("/logout")
@login_required
def logout():
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
