"""An object's history: its audit events (who, what, when in UTC, old → new values, reason), newest first."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import AuditEvent

HISTORY_LIMIT = 500
CSV_COLUMNS = ("at", "actor", "action", "field", "old", "new", "reason")


def history_events(session: Session, target_type: str, target_id, limit: int = HISTORY_LIMIT) -> list[AuditEvent]:
    query = (select(AuditEvent).where(AuditEvent.target_type == target_type, AuditEvent.target_id == str(target_id))
             .order_by(AuditEvent.id.desc()).limit(limit))
    return list(session.scalars(query))


def changes(event: AuditEvent) -> list[dict]:
    """The event as field-by-field changes: [{field, old, new}], old/new None where a side has no value."""
    old, new = event.old_values or {}, event.new_values or {}
    return [{"field": name, "old": old.get(name), "new": new.get(name)}
            for name in list(old) + [n for n in new if n not in old]]


def event_json(event: AuditEvent) -> dict:
    return {"id": event.id, "at": event.at.isoformat(), "actor": event.actor, "actor_id": event.actor_id,
            "action": event.action, "target_type": event.target_type, "target_id": event.target_id,
            "old": event.old_values or {}, "new": event.new_values or {}, "changes": changes(event),
            "reason": event.reason}


def history_rows(events: list[AuditEvent]) -> list[dict]:
    """One row per changed field, for tables and CSV."""
    rows = []
    for event in events:
        for change in changes(event) or [{"field": "", "old": None, "new": None}]:
            rows.append({"at": event.at.isoformat(), "actor": event.actor, "action": event.action,
                         "field": change["field"], "old": "" if change["old"] is None else change["old"],
                         "new": "" if change["new"] is None else change["new"], "reason": event.reason})
    return rows
