"""The audit trail: hash-chained events on SQLite and PostgreSQL; `tilescope audit verify` finds edits and deletions."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import select, text

from portal import audit
from portal.db import session_scope
from portal.models import AuditEvent, User
from tests.conftest import worker_env


def add_events(url: str, count: int) -> list[int]:
    with session_scope(url) as session:
        user = session.scalar(select(User))
        for n in range(count):
            audit.record(session, "modify", user=user, target_type="dataset", target_id=f"d{n}", project_id=1,
                         old={"name": f"old {n}"}, new={"name": f"new {n}"}, reason="typo", remote_addr="127.0.0.1")
    with session_scope(url) as session:
        return list(session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)))


def verify(settings) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "portal.cli", "audit", "verify"], env=worker_env(settings),
                          capture_output=True, text=True, timeout=60)


def test_events_chain_and_verify_finds_tampering(settings, make_user):
    make_user()
    ids = add_events(settings.sqlalchemy_url, 4)
    with session_scope(settings.sqlalchemy_url) as session:
        events = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
        assert events[0].prev_hash == audit.GENESIS_HASH
        assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:]))
        assert events[0].actor == "ana@example.org" and events[0].at.tzinfo is not None
        assert audit.verify_chain(session) == []
    intact = verify(settings)
    assert intact.returncode == 0 and "4 events" in intact.stdout, intact.stderr

    with session_scope(settings.sqlalchemy_url) as session:
        session.execute(text("UPDATE audit_events SET new_values = :v WHERE id = :id"),
                        {"v": '{"name": "forged"}', "id": ids[1]})
    edited = verify(settings)
    assert edited.returncode != 0 and f"event {ids[1]}: its content" in edited.stderr

    with session_scope(settings.sqlalchemy_url) as session:
        session.execute(text("UPDATE audit_events SET new_values = :v WHERE id = :id"),
                        {"v": '{"name": "new 1"}', "id": ids[1]})
        assert audit.verify_chain(session) == []
        session.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": ids[2]})
    removed = verify(settings)
    assert removed.returncode != 0 and f"event {ids[3]}: the event before it was removed" in removed.stderr


def test_a_failed_action_leaves_no_event(settings, make_user):
    make_user()
    try:
        with session_scope(settings.sqlalchemy_url) as session:
            audit.record(session, "delete", target_type="dataset", target_id="x")
            raise RuntimeError("the action failed after its event was written")
    except RuntimeError:
        pass
    with session_scope(settings.sqlalchemy_url) as session:
        assert session.scalar(select(AuditEvent)) is None
