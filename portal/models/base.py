"""The declarative base, timestamp helpers and the enums of the data model."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timezone

from sqlalchemy import DateTime, TypeDecorator
from sqlalchemy.orm import DeclarativeBase


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_uuid() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every database (SQLite drops the offset; this puts it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class Role(str, enum.Enum):
    """What a member may do in a project; each role includes the ones below it."""

    VIEWER = "viewer"  # read only
    ANALYST = "analyst"  # upload, run jobs
    OWNER = "owner"  # manage members, delete

    @property
    def rank(self) -> int:
        return [Role.VIEWER, Role.ANALYST, Role.OWNER].index(self)


class DatasetStatus(str, enum.Enum):
    UPLOADED = "uploaded"
    CONVERTING = "converting"
    READY = "ready"
    FAILED = "failed"


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: States a job never leaves.
FINAL_JOB_STATES = frozenset({JobStatus.FINISHED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value})
