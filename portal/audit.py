"""The audit trail: append-only, hash-chained events (who, what, when, target, old and new values)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from portal.models import AuditEvent, User, utcnow

#: Hash of the (absent) event before the first one.
GENESIS_HASH = "0" * 64
#: PostgreSQL advisory-lock key serialising appends, so two writers never chain onto the same event.
_CHAIN_LOCK_KEY = 0x7415C0DE


def event_hash(prev_hash: str, at: datetime, actor_id: int | None, actor: str, action: str, target_type: str,
               target_id: str, project_id: int | None, old_values: dict, new_values: dict, reason: str,
               remote_addr: str) -> str:
    """SHA-256 over the previous hash and every field of the event, in a canonical JSON form."""
    body = json.dumps([prev_hash, at.isoformat(timespec="microseconds"), actor_id, actor, action, target_type,
                       target_id, project_id, old_values, new_values, reason, remote_addr],
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def record(session: Session, action: str, *, user: User | None = None, actor: str = "", target_type: str = "",
           target_id: str = "", project_id: int | None = None, old: dict | None = None, new: dict | None = None,
           reason: str = "", remote_addr: str = "") -> AuditEvent:
    """Append one event in the caller's transaction: if the caller's commit fails, the action and its event both fail."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK_KEY})
    previous = session.scalar(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)) or GENESIS_HASH
    at = utcnow()
    fields = dict(at=at, actor_id=user.id if user is not None else None,
                  actor=actor or (user.email if user is not None else "anonymous"), action=action,
                  target_type=target_type, target_id=str(target_id), project_id=project_id,
                  old_values=_jsonable(old or {}), new_values=_jsonable(new or {}), reason=reason,
                  remote_addr=remote_addr[:64])
    event = AuditEvent(prev_hash=previous, hash=event_hash(previous, **fields), **fields)
    session.add(event)
    session.flush()
    return event


def verify_chain(session: Session) -> list[str]:
    """Problems found walking the chain in id order: edited events (hash mismatch) and removed ones (broken links)."""
    problems, previous = [], GENESIS_HASH
    for event in session.scalars(select(AuditEvent).order_by(AuditEvent.id)):
        if event.prev_hash != previous:
            problems.append(f"event {event.id}: the event before it was removed or changed")
        expected = event_hash(event.prev_hash, event.at, event.actor_id, event.actor, event.action, event.target_type,
                              event.target_id, event.project_id, event.old_values, event.new_values, event.reason,
                              event.remote_addr)
        if expected != event.hash:
            problems.append(f"event {event.id}: its content does not match its hash (edited in the database)")
        previous = event.hash
    return problems


def _jsonable(values: dict) -> dict:
    return json.loads(json.dumps(values, default=str))
