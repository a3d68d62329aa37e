"""Alembic environment of the result store, configured programmatically.

:func:`engine.store.migrate.upgrade` passes an open SQLAlchemy connection in
``config.attributes["connection"]``; no alembic.ini and no URL in a config file.
"""

from __future__ import annotations

from alembic import context

from engine.store.schema import metadata

config = context.config


def run_migrations() -> None:
    """Run the migrations on the connection handed over by ``migrate.upgrade``."""
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through engine.store.migrate.upgrade(url)")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations()
