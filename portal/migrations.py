"""Apply the Alembic migrations in alembic/ to a database: `tilescope db upgrade` and the tests use this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"


def alembic_config(database_url: str) -> Config:
    if not ALEMBIC_DIR.is_dir():
        raise RuntimeError(f"migrations folder not found at {ALEMBIC_DIR}; install Tilescope from its source tree (pip install -e .)")
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from portal.db import engine_for

    with engine_for(database_url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
