"""Users, projects with memberships, datasets and jobs."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from portal.models.base import FINAL_JOB_STATES, Base, DatasetStatus, JobStatus, Role, UTCDateTime, new_uuid, utcnow

if TYPE_CHECKING:
    from portal.models.research import Subject, Visit
    from portal.models.results import Result


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user", cascade="all, delete-orphan")

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    # flask-login protocol, kept here so the model needs no Flask import
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    #: The token of the login session this object was loaded for or logged in with (set by portal.auth, not stored).
    login_token = ""

    def get_id(self) -> str:
        """Session identity: the token of a LoginSession row, so ending that row ends the session on every host."""
        if not self.login_token:
            raise ValueError("log in through portal.auth, which opens a login session first")
        return self.login_token

    @property
    def session_fingerprint(self) -> str:
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]

    @property
    def display_name(self) -> str:
        return self.name or self.email


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # None: no limit on uploads

    memberships: Mapped[list[Membership]] = relationship(back_populates="project", cascade="all, delete-orphan")
    datasets: Mapped[list[Dataset]] = relationship(back_populates="project", order_by="Dataset.created_at.desc()")


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "project_id", name="uq_membership_user_project"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20), default=Role.VIEWER.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    project: Mapped[Project] = relationship(back_populates="memberships")


class Dataset(Base):
    """One image, a 2D mosaic or a 3D volume, with its original file and its pyramid."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20), default=DatasetStatus.UPLOADED.value, index=True)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    original_filename: Mapped[str] = mapped_column(String(500))
    original_sha256: Mapped[str] = mapped_column(String(64), index=True)
    original_size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(40), default="")
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    depth: Mapped[int | None] = mapped_column(Integer, nullable=True)  # slices of a 3D volume; None for 2D
    channels: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dtype: Mapped[str] = mapped_column(String(20), default="")
    pixel_size: Mapped[float | None] = mapped_column(Float, nullable=True)  # x/y size of a pixel in `unit`
    z_spacing: Mapped[float | None] = mapped_column(Float, nullable=True)  # distance between slices in `unit`
    unit: Mapped[str] = mapped_column(String(40), default="")
    pyramid_path: Mapped[str] = mapped_column(String(500), default="")
    pyramid_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    pyramid_info: Mapped[dict] = mapped_column(JSON, default=dict)
    source_metadata: Mapped[dict] = mapped_column(JSON, default=dict)  # e.g. DICOM Modality, StudyDate
    subject_id: Mapped[int | None] = mapped_column(ForeignKey("subjects.id", ondelete="SET NULL"), nullable=True, index=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id", ondelete="SET NULL"), nullable=True, index=True)
    modality: Mapped[str] = mapped_column(String(60), default="", index=True)  # e.g. SEM, CT, light microscopy
    description: Mapped[str] = mapped_column(Text, default="")
    storage_mode: Mapped[str] = mapped_column(String(20), default="copy")  # copy | in-place (legacy import, referenced)
    original_location: Mapped[str] = mapped_column(Text, default="")  # where an in-place original lives
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(back_populates="datasets")
    created_by: Mapped[User | None] = relationship()
    subject: Mapped[Subject | None] = relationship(back_populates="datasets")
    visit: Mapped[Visit | None] = relationship(back_populates="datasets")
    jobs: Mapped[list[Job]] = relationship(back_populates="dataset", order_by="Job.created_at.desc()")

    @property
    def latest_job(self) -> Job | None:
        return self.jobs[0] if self.jobs else None

    @property
    def is_volume(self) -> bool:
        return self.depth is not None


class Job(Base):
    """Queued work; this row, not Redis, is the truth about its state."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    kind: Mapped[str] = mapped_column(String(40))
    queue: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.QUEUED.value, index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), nullable=True, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    worker: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    traceback: Mapped[str] = mapped_column(Text, default="")  # for admins; users see `error`
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # how many times a worker started it
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)  # starts allowed when a worker dies under it
    timeout_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # refreshed while running
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    retry_of_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # outcome mailed (once)
    host: Mapped[str] = mapped_column(String(200), default="")
    wall_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    cpu_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    peak_rss_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    dataset: Mapped[Dataset | None] = relationship(back_populates="jobs")
    user: Mapped[User | None] = relationship()
    result: Mapped[Result | None] = relationship(back_populates="job", uselist=False)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_JOB_STATES
