"""Schema migrations: ``alphaforge db upgrade`` calls :func:`upgrade`.

Alembic is configured in code (``script_location`` = the ``migrations`` directory of this
package), so no alembic.ini is needed anywhere; the URL is handed over as an open connection,
never written into a config file (and never logged unmasked).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from engine.errors import StoreError
from engine.store.urls import DEFAULT_URL, backend_of, mask_text, mask_url, normalize_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key serializing concurrent upgrades of one PostgreSQL database
MIGRATION_LOCK_KEY = 0x616C7068  # "alph"
# Alembic's context proxy is module-global: one migration per process at a time
_PROCESS_LOCK = threading.Lock()


def _engine(url: str) -> sa.Engine:
    """An engine whose migration transaction excludes concurrent migrators."""
    if backend_of(url) == "sqlite":
        from engine.store.sqlite import sqlite_engine

        return sqlite_engine(normalize_url(url))  # BEGIN IMMEDIATE: one migrator at a time
    return sa.create_engine(normalize_url(url))


def alembic_config() -> Config:
    """An Alembic Config pointing at the packaged migration scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this package."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(url: str | None = None) -> str | None:
    """The revision the database at ``url`` is at (None when never migrated)."""
    engine = _engine(url or DEFAULT_URL)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str | None = None, revision: str = "head") -> str:
    """Bring the database at ``url`` (default: the embedded SQLite file) to ``revision``.

    Idempotent: at head it does nothing. Returns the revision reached.
    """
    url = url or DEFAULT_URL
    backend_of(url)  # ConfigError for an unsupported scheme
    log.info("migrating store %s to %s", mask_url(url), revision)
    engine = _engine(url)
    cfg = alembic_config()
    try:
        with _PROCESS_LOCK, engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        with engine.connect() as conn:
            reached = MigrationContext.configure(conn).get_current_revision()
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"migrating {mask_url(url)} failed: {mask_text(str(exc))}") from None
    finally:
        engine.dispose()
    return reached or ""
