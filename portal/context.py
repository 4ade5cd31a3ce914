"""Per-request access to the settings, a database session and storage."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import current_app, g
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from portal.db import session_factory
from portal.settings import Settings
from portal.storage import Storage

log = logging.getLogger(__name__)


def settings() -> Settings:
    return current_app.extensions["tilescope.settings"]


def db() -> Session:
    """The request's database session, opened on first use and closed when the request ends."""
    if "db_session" not in g:
        g.db_session = session_factory(settings().sqlalchemy_url)()
    return g.db_session


def storage() -> Storage:
    return current_app.extensions["tilescope.storage"]


def after_this_request_closes(write: Callable[[], None]) -> None:
    """Run WRITE once the request's database session is closed: bookkeeping in a transaction of its own, which never
    waits on (or commits) what the view did."""
    g.setdefault("writes_after_close", []).append(write)


def close_db(_exc=None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
    for write in g.pop("writes_after_close", []):
        try:
            write()
        except SQLAlchemyError:
            log.warning("a write after the request failed", exc_info=True)
