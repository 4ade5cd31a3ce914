"""What analyses leave: results, derived measures, share links; and the audit trail of everything."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Base, UTCDateTime, new_uuid, utcnow

if TYPE_CHECKING:
    from portal.models.core import Dataset, Job, Project, User


class Result(Base):
    """What an analysis job produced, published under results/<job-id>/: labels, measurements, provenance."""

    __tablename__ = "results"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    path: Mapped[str] = mapped_column(String(500))  # storage-relative folder results/<job-id>
    summary: Mapped[dict] = mapped_column(JSON, default=dict)  # object count, fraction, distributions
    outputs: Mapped[dict] = mapped_column(JSON, default=dict)  # name -> {path, sha256, bytes}
    labels_info: Mapped[dict] = mapped_column(JSON, default=dict)  # label pyramid shape, levels, max label
    provenance: Mapped[dict] = mapped_column(JSON, default=dict)  # PROV-JSON, also in provenance.json
    reproduces_id: Mapped[str | None] = mapped_column(ForeignKey("results.id", ondelete="SET NULL"), nullable=True)
    reproduction: Mapped[dict] = mapped_column(JSON, default=dict)  # {"matches": bool, "outputs": {...}}
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    job: Mapped[Job] = relationship(back_populates="result")
    dataset: Mapped[Dataset] = relationship()
    project: Mapped[Project] = relationship()
    created_by: Mapped[User | None] = relationship()
    measures: Mapped[list[DerivedMeasure]] = relationship(back_populates="result")


class DerivedMeasure(Base):
    """A number about a dataset, with its unit: from an analysis result (porosity = 0.231) or entered by hand."""

    __tablename__ = "derived_measures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), nullable=True, index=True)
    result_id: Mapped[str | None] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), nullable=True, index=True)
    subject_id: Mapped[int | None] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), nullable=True, index=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(40), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    result: Mapped[Result | None] = relationship(back_populates="measures")


class ShareLink(Base):
    """A revocable, expiring, read-only grant to one result (or dataset) for people without an account."""

    __tablename__ = "share_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    result_id: Mapped[str | None] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), nullable=True, index=True)
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), nullable=True, index=True)
    label: Mapped[str] = mapped_column(String(200), default="")  # who it was for, e.g. "mailed to boss@lab.org"
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    result: Mapped[Result | None] = relationship()
    dataset: Mapped[Dataset | None] = relationship()
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])

    def is_active(self, now: datetime | None = None) -> bool:
        return self.revoked_at is None and (now or utcnow()) < self.expires_at


class AuditEvent(Base):
    """One append-only, hash-chained record: who did what to which object, when, with old and new values."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True)
    actor: Mapped[str] = mapped_column(String(320), default="")  # email, "share:<id>" or "system", kept if the user goes
    action: Mapped[str] = mapped_column(String(60), index=True)  # e.g. create, modify, delete, login, share.open
    target_type: Mapped[str] = mapped_column(String(40), default="")
    target_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    project_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # no FK: survives deletion
    old_values: Mapped[dict] = mapped_column(JSON, default=dict)
    new_values: Mapped[dict] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(Text, default="")
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    prev_hash: Mapped[str] = mapped_column(String(64), default="")
    hash: Mapped[str] = mapped_column(String(64), default="")
