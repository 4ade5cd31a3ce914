"""Per-request access to the settings, a database session and storage."""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from portal.db import session_factory
from portal.settings import Settings
from portal.storage import Storage


def settings() -> Settings:
    return current_app.extensions["tilescope.settings"]


def db() -> Session:
    """The request's database session, opened on first use and closed when the request ends."""
    if "db_session" not in g:
        g.db_session = session_factory(settings().sqlalchemy_url)()
    return g.db_session


def storage() -> Storage:
    return current_app.extensions["tilescope.storage"]


def close_db(_exc=None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
