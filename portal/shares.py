"""Share links: signed, expiring, revocable, read-only grants to one result, usable without an account.

The link carries only a signed share-link id; whether it still works (not expired, not revoked) is
decided by its database row on every opening. Opening it records the use in the audit trail and puts
the link id into the browser's session, which then may read that one result (and its image) only.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, current_app, jsonify, redirect, request, session, url_for
from flask_login import current_user
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from portal import audit
from portal.context import db, settings
from portal.models import Result, Role, ShareLink, User, utcnow
from portal.permissions import project_or_404
from portal.settings import Settings

blueprint = Blueprint("shares", __name__)

SESSION_KEY = "share_links"
MAX_SHARES_PER_SESSION = 20
MAX_SHARE_DAYS = 365
_SALT = "tilescope-share-link"


def share_token(secret_key: str, link_id: str) -> str:
    return URLSafeSerializer(secret_key, salt=_SALT).dumps(link_id)


def share_url(settings: Settings, link: ShareLink) -> str:
    return f"{settings.base_url.rstrip('/')}/s/{share_token(settings.signing_key(), link.id)}"


def create_share_link(session: Session, settings: Settings, result: Result, user: User | None, *,
                      days: int | None = None, label: str = "", remote_addr: str = "") -> tuple[ShareLink, str]:
    """A new share link to `result`, valid for `days` (default: the share_link_days setting); audited."""
    days = settings.share_link_days if days is None else days
    link = ShareLink(project_id=result.project_id, result_id=result.id, label=label[:200],
                     created_by_id=user.id if user is not None else None,
                     expires_at=utcnow() + timedelta(days=days))
    session.add(link)
    session.flush()
    audit.record(session, "share.create", user=user, actor="" if user else "system", target_type="result",
                 target_id=result.id, project_id=result.project_id,
                 new={"share_link": link.id, "expires_at": link.expires_at.isoformat(), "label": link.label},
                 remote_addr=remote_addr)
    return link, share_url(settings, link)


def link_summary(link: ShareLink) -> dict:
    return {"id": link.id, "label": link.label, "result_id": link.result_id,
            "created_at": link.created_at.isoformat(), "created_by": link.created_by.display_name if link.created_by else "",
            "expires_at": link.expires_at.isoformat(), "revoked_at": link.revoked_at.isoformat() if link.revoked_at else None,
            "uses": link.uses, "last_used_at": link.last_used_at.isoformat() if link.last_used_at else None,
            "active": link.is_active()}


def active_share_links() -> list[ShareLink]:
    """The session's share links that still work (checked against the database on every call)."""
    ids = session.get(SESSION_KEY) or []
    if not ids:
        return []
    now = utcnow()
    return [link for link in db().scalars(select(ShareLink).where(ShareLink.id.in_(ids))) if link.is_active(now)]


def shared_result_ids() -> set[str]:
    return {link.result_id for link in active_share_links() if link.result_id}


def shared_dataset_ids() -> set[str]:
    ids = set()
    for link in active_share_links():
        if link.dataset_id:
            ids.add(link.dataset_id)
        if link.result is not None:
            ids.add(link.result.dataset_id)
    return ids


def holds_share_links() -> bool:
    return bool(session.get(SESSION_KEY))


@blueprint.get("/s/<token>")
def open_share(token: str):
    """Open a share link: check it, record the use, remember it in this browser's session, show the result."""
    try:
        link_id = URLSafeSerializer(current_app.config["SECRET_KEY"], salt=_SALT).loads(token)
    except BadSignature:
        abort(404, "this share link is not valid; check that it was copied completely")
    link = db().get(ShareLink, link_id)
    if link is None or link.result_id is None:
        abort(404, "this share link does not exist (any more)")
    if link.revoked_at is not None:
        abort(410, "this share link was revoked by its owner; ask them for a new one")
    if not link.is_active():
        abort(410, f"this share link expired on {link.expires_at:%Y-%m-%d}; ask its owner for a new one")
    # one atomic increment: two web replicas opening the link at once both count
    db().execute(update(ShareLink).where(ShareLink.id == link.id)
                 .values(uses=ShareLink.uses + 1, last_used_at=utcnow()))
    user = current_user if current_user.is_authenticated else None
    audit.record(db(), "share.open", user=user, actor="" if user else f"share:{link.id}", target_type="result",
                 target_id=link.result_id, project_id=link.project_id, new={"share_link": link.id, "uses": link.uses},
                 remote_addr=request.remote_addr or "")
    db().commit()
    ids = [i for i in (session.get(SESSION_KEY) or []) if i != link.id]
    session[SESSION_KEY] = (ids + [link.id])[-MAX_SHARES_PER_SESSION:]
    return redirect(url_for("results.result_page", result_id=link.result_id))


@blueprint.get("/api/v1/results/<result_id>/shares")
def list_shares(result_id: str):
    result = _managed_result(result_id)
    links = db().scalars(select(ShareLink).where(ShareLink.result_id == result.id).order_by(ShareLink.created_at.desc()))
    return jsonify(shares=[link_summary(link) for link in links])


@blueprint.post("/api/v1/results/<result_id>/shares")
def create_share(result_id: str):
    result = _managed_result(result_id)
    body = request.get_json(silent=True) or {}
    days = body.get("days", settings().share_link_days)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_SHARE_DAYS:
        abort(400, f"days must be a whole number from 1 to {MAX_SHARE_DAYS}, not {days!r}")
    label = body.get("label", "")
    if not isinstance(label, str):
        abort(400, "label must be text")
    link, url = create_share_link(db(), settings(), result, current_user, days=days, label=label,
                                  remote_addr=request.remote_addr or "")
    db().commit()
    return jsonify(url=url, **link_summary(link)), 201


@blueprint.post("/api/v1/shares/<link_id>/revoke")
def revoke_share(link_id: str):
    link = db().get(ShareLink, link_id)
    if link is None:
        abort(404, f"no share link {link_id}")
    project_or_404(db(), current_user, link.project_id, Role.ANALYST)
    if link.revoked_at is None:
        link.revoked_at, link.revoked_by_id = utcnow(), current_user.id
        audit.record(db(), "share.revoke", user=current_user, target_type="result", target_id=link.result_id or "",
                     project_id=link.project_id, old={"share_link": link.id, "active": True},
                     new={"share_link": link.id, "active": False}, remote_addr=request.remote_addr or "")
        db().commit()
    return jsonify(link_summary(link))


def _managed_result(result_id: str) -> Result:
    result = db().get(Result, result_id)
    if result is None:
        abort(404, f"no result {result_id} visible to you")
    project_or_404(db(), current_user, result.project_id, Role.ANALYST)
    return result

