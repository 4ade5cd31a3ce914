"""/account (own password and login sessions), the admins' /admin/users, and their JSON API (over portal.accounts)."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, render_template, request
from flask_login import current_user
from sqlalchemy import select

from portal import audit
from portal.accounts import (
    MIN_PASSWORD_LENGTH,
    AccountConflict,
    AccountError,
    check_rights_change,
    create_user,
    deactivate_user,
    generate_password,
    reactivate_user,
    set_password,
)
from portal.auth import current_login_session
from portal.context import db
from portal.models import User

blueprint = Blueprint("accounts", __name__)

#: The user fields an admin may change with PATCH, and the type each must have.
EDITABLE = {"name": str, "is_admin": bool, "is_active": bool}


def iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def describe_user(user: User) -> dict:
    """A user as JSON for admins (never the password hash)."""
    return {"id": user.id, "email": user.email, "name": user.name, "is_admin": user.is_admin,
            "is_active": user.is_active, "created_at": iso(user.created_at), "last_login_at": iso(user.last_login_at),
            "is_you": user.id == current_user.id}


def json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "send a JSON object")
    return body


def text_field(body: dict, name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        abort(400, f"{name} must be text")
    return value


def audit_user(action: str, user: User, **fields) -> None:
    audit.record(db(), action, user=current_user, target_type="user", target_id=user.id,
                 remote_addr=request.remote_addr or "", **fields)


def user_or_404(user_id: int) -> User:
    user = db().get(User, user_id)
    if user is None:
        abort(404, f"no user {user_id}")
    return user


# ---- the signed-in user's own account ----

@blueprint.get("/account")
def account_page():
    return render_template("account.html", min_length=MIN_PASSWORD_LENGTH)


@blueprint.post("/api/v1/account/password")
def change_password():
    """A new password for the signed-in user, who knows the current one; their other browsers are logged out."""
    body = json_body()
    current, new, repeat = (text_field(body, name) for name in ("current_password", "new_password", "repeat_password"))
    if not current or not new:
        abort(400, "enter your current password and a new one")
    if new != repeat:
        abort(400, "the new password and its repetition differ")
    user = current_user._get_current_object()
    if not user.check_password(current):
        audit_user("account.password.failed", user, reason="wrong current password")
        db().commit()
        abort(400, "your current password is wrong")
    try:
        ended = set_password(db(), user, new, keep=current_login_session())
    except AccountError as exc:
        abort(400, str(exc))
    audit_user("account.password.change", user, new={"sessions_ended": ended})
    db().commit()
    return jsonify(changed=True, sessions_ended=ended)


# ---- admins: every user ----

@blueprint.get("/admin/users")
def users_page():
    return render_template("users.html")


@blueprint.get("/api/v1/users")
def list_users():
    users = db().scalars(select(User).order_by(User.email))
    return jsonify(users=[describe_user(user) for user in users])


@blueprint.post("/api/v1/users")
def create_user_api():
    """A new user with a generated password, returned this once for the admin to pass on."""
    body = json_body()
    email, name = text_field(body, "email"), text_field(body, "name").strip()[:200]
    is_admin = body.get("is_admin", False)
    if not isinstance(is_admin, bool):
        abort(400, "is_admin must be true or false")
    password = generate_password()
    try:
        user = create_user(db(), email, password, name=name, is_admin=is_admin)
    except AccountConflict as exc:
        abort(409, str(exc))
    except AccountError as exc:
        abort(400, str(exc))
    audit_user("user.create", user, new={"email": user.email, "name": user.name, "is_admin": user.is_admin})
    db().commit()
    return jsonify(user=describe_user(user), password=password), 201


@blueprint.patch("/api/v1/users/<int:user_id>")
def update_user(user_id: int):
    """Rename, grant or revoke admin rights, deactivate (logging the user out everywhere) or reactivate a user."""
    user, body = user_or_404(user_id), json_body()
    changes = {key: body[key] for key in EDITABLE if key in body}
    if not changes:
        abort(400, "nothing to change: send name, is_admin or is_active")
    for key, value in changes.items():
        if not isinstance(value, EDITABLE[key]):
            abort(400, f"{key} must be {'text' if EDITABLE[key] is str else 'true or false'}")
    try:
        check_rights_change(db(), current_user, user, is_admin=changes.get("is_admin"),
                            is_active=changes.get("is_active"))
    except AccountConflict as exc:
        abort(409, str(exc))
    old = {key: getattr(user, key) for key in changes}
    ended = 0
    if "name" in changes:
        user.name = changes["name"].strip()[:200]
    if "is_admin" in changes:
        user.is_admin = changes["is_admin"]
    if changes.get("is_active") is False and user.is_active:
        ended = deactivate_user(db(), user)
    elif changes.get("is_active") is True:
        reactivate_user(user)
    new = {key: getattr(user, key) for key in changes}
    if new != old:
        audit_user("user.update", user, old=old, new=dict(new, sessions_ended=ended) if ended else new)
    db().commit()
    return jsonify(user=describe_user(user), sessions_ended=ended)


@blueprint.post("/api/v1/users/<int:user_id>/password")
def reset_password(user_id: int):
    """A generated password for a user who forgot theirs, returned this once; every browser of theirs is logged out."""
    user = user_or_404(user_id)
    if user.id == current_user.id:
        abort(409, "change your own password on your account page")
    password = generate_password()
    ended = set_password(db(), user, password)
    audit_user("user.password.reset", user, new={"sessions_ended": ended})
    db().commit()
    return jsonify(user=describe_user(user), password=password, sessions_ended=ended)
