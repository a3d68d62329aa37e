"""Shared test fixtures: real PostgreSQL and Redis, and small panels.

The services come from ``DATABASE_URL`` and ``REDIS_URL``; ``scripts/test`` starts throwaway
servers and sets both when they are not configured. Without them (a developer running pytest
by hand) the local defaults ``postgresql://postgres@127.0.0.1:5432/postgres`` and
``redis://127.0.0.1:6379/0`` are used. An unreachable service fails the tests that need it with
a message saying so; nothing is skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _psycopg_url(url: str) -> str:
    """Normalise a PostgreSQL URL to SQLAlchemy's psycopg 3 driver spelling."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"DATABASE_URL is not a PostgreSQL URL: {url.split('://')[0]}://...")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data directory beside the repository (``../shared/data``)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data directory not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """URL (psycopg driver) of the PostgreSQL server's maintenance database."""
    return _psycopg_url(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))


@pytest.fixture(scope="session")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session; dropped afterwards."""
    import sqlalchemy as sa

    name = f"alphaforge_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is unreachable (set DATABASE_URL or run scripts/test): {exc}")
    url = sa.engine.make_url(pg_server_url).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a reachable Redis server."""
    import redis

    url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is unreachable (set REDIS_URL or run scripts/test): {exc}")
    finally:
        client.close()
    return url


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    import redis

    ns = f"aftest:{uuid.uuid4().hex[:10]}"
    yield ns
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{ns}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
