"""Login sessions: one row per login, so a logout, a new password or a deactivation ends it on every web replica."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Base, UTCDateTime, utcnow
from portal.models.core import User


class LoginSession(Base):
    """A browser's login; the cookie holds a random token, this row only its SHA-256 (a database leak opens nothing)."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    password_fingerprint: Mapped[str] = mapped_column(String(16))  # the password it was opened with; a new one ends it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # to within LAST_SEEN_EVERY
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_reason: Mapped[str] = mapped_column(String(40), default="")  # logout, password, deactivated, idle, …

    user: Mapped[User] = relationship()

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None and self.password_fingerprint == self.user.session_fingerprint
