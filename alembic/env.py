"""Alembic environment: migrates the database named by the Tilescope settings (or the caller's URL)."""

from alembic import context

from portal.db import engine_for
from portal.models import Base
from portal.search_index import include_name  # the search_* tables are SQL-managed, not models
from portal.settings import Settings

config = context.config
url = config.attributes.get("database_url") or Settings.from_env().sqlalchemy_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True,
                      include_name=include_name)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        with engine_for(url).connect() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                      include_name=include_name)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
