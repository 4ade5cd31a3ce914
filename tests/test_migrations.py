"""The schema comes from Alembic migrations, and the models match them, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from portal.db import engine_for
from portal.migrations import alembic_config, current_revision
from portal.models import Base


def test_upgrade_reaches_head_and_creates_the_tables(database_url):
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert current_revision(database_url) == head
    tables = set(inspect(engine_for(database_url)).get_table_names())
    assert {"users", "projects", "memberships", "datasets", "jobs"} <= tables


def test_models_match_the_migrations(database_url):
    with engine_for(database_url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
