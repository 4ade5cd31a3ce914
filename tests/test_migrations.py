"""The schema comes from Alembic migrations, and the models match them, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from portal.db import engine_for
from portal.migrations import alembic_config, current_revision
from portal.models import Base
from portal.search_index import include_name  # the search_* tables are SQL-managed, not models


def test_upgrade_reaches_head_and_creates_the_tables(database_url):
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert current_revision(database_url) == head
    tables = set(inspect(engine_for(database_url)).get_table_names())
    assert {"users", "projects", "memberships", "datasets", "jobs"} <= tables


def test_models_match_the_migrations(database_url):
    with engine_for(database_url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": include_name})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_every_migration_keeps_existing_rows(empty_database_url):
    """Data written under the first schema survives every later migration."""
    from sqlalchemy import text

    from portal.migrations import upgrade

    upgrade(empty_database_url, "289d38e5f518")
    with engine_for(empty_database_url).begin() as connection:
        connection.execute(text("INSERT INTO users (id, email, name, password_hash, is_admin, is_active, created_at) "
                                "VALUES (1, 'a@b.c', '', 'x', false, true, CURRENT_TIMESTAMP)"))
        connection.execute(text("INSERT INTO projects (id, name, description, created_at) VALUES (1, 'p', '', CURRENT_TIMESTAMP)"))
        connection.execute(text(
            "INSERT INTO datasets (id, project_id, name, status, status_reason, original_filename, original_sha256, "
            "original_size, format, dtype, unit, pyramid_path, pyramid_info, created_at, updated_at) VALUES "
            "('d1', 1, 'old', 'ready', '', 'old.tif', 'ab', 10, 'TIFF', 'uint8', '', '', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    upgrade(empty_database_url)
    with engine_for(empty_database_url).connect() as connection:
        row = connection.execute(text("SELECT name, depth, source_metadata FROM datasets WHERE id = 'd1'")).one()
    assert row.name == "old" and row.depth is None
    assert row.source_metadata in ({}, "{}")
