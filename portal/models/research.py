"""Research data around datasets: subjects and visits, attachments, metadata, tags, notes, uploads, imports."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, BigInteger, Date, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Base, UTCDateTime, new_uuid, utcnow

if TYPE_CHECKING:
    from portal.models.core import Dataset, Project, User


class Subject(Base):
    """The specimen, sample, patient or participant data comes from."""

    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("project_id", "code", name="uq_subject_project_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(100))  # the lab's identifier, e.g. "S-017"
    species: Mapped[str] = mapped_column(String(100), default="")  # or material, sample type
    description: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    project: Mapped[Project] = relationship()
    visits: Mapped[list[Visit]] = relationship(back_populates="subject", order_by="Visit.visit_date",
                                               cascade="all, delete-orphan")
    datasets: Mapped[list[Dataset]] = relationship(back_populates="subject")


class Visit(Base):
    """One appearance of a subject at an instrument: the longitudinal axis."""

    __tablename__ = "visits"
    __table_args__ = (UniqueConstraint("subject_id", "code", name="uq_visit_subject_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(100))  # e.g. "baseline", "week 4", "V2"
    visit_date: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)
    instrument: Mapped[str] = mapped_column(String(200), default="")
    operator: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    subject: Mapped[Subject] = relationship(back_populates="visits")
    datasets: Mapped[list[Dataset]] = relationship(back_populates="visit")


#: Objects that carry attachments, metadata, tags and notes (target_type values).
ANNOTATABLE_TYPES = ("project", "subject", "visit", "dataset", "result")


class Attachment(Base):
    """Any non-imaging file (CSV, PDF, slides, CRF scans) on any object, stored as-is, content-addressed."""

    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[str] = mapped_column(String(36))
    filename: Mapped[str] = mapped_column(String(500))
    media_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MetadataEntry(Base):
    """A typed key/value pair on any object: text, number (with unit), date or boolean."""

    __tablename__ = "metadata_entries"
    __table_args__ = (UniqueConstraint("target_type", "target_id", "key", name="uq_metadata_target_key"),
                      Index("ix_metadata_target", "target_type", "target_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[str] = mapped_column(String(36))
    key: Mapped[str] = mapped_column(String(200), index=True)
    value_type: Mapped[str] = mapped_column(String(10), default="text")  # text | number | date | bool
    value_text: Mapped[str] = mapped_column(Text, default="")  # the value as entered (always set, for search)
    value_number: Mapped[float | None] = mapped_column(Float, nullable=True)
    value_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    unit: Mapped[str] = mapped_column(String(40), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Tag(Base):
    """A label on any object, e.g. "pilot", "excluded", "needs review"."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("target_type", "target_id", "name", name="uq_tag_target_name"),
                      Index("ix_tags_target", "target_type", "target_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[str] = mapped_column(String(36))
    name: Mapped[str] = mapped_column(String(100), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Note(Base):
    """Free text with its author and time, on any object."""

    __tablename__ = "notes"
    __table_args__ = (Index("ix_notes_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[str] = mapped_column(String(36))
    body: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    author: Mapped[User | None] = relationship()


class Upload(Base):
    """A resumable (tus 1.0) upload in progress under uploads/<id>; becomes a dataset or attachment when complete."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True)
    filename: Mapped[str] = mapped_column(String(500), default="")
    length: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # None: deferred length
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    upload_metadata: Mapped[dict] = mapped_column(JSON, default=dict)  # tus Upload-Metadata, decoded
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64), default="")


class ImportRecord(Base):
    """One file or folder seen by a legacy bulk import: what became of it, so a re-run imports nothing twice."""

    __tablename__ = "import_records"
    __table_args__ = (UniqueConstraint("project_id", "source_path", name="uq_import_project_path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    source_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), default="", index=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(20))  # imported | duplicate | failed
    reason: Mapped[str] = mapped_column(Text, default="")
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
