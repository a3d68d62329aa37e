"""Store-specific fixtures: a fresh, migrated PostgreSQL database or SQLite file per test.

The PostgreSQL server is the one of the root ``pg_url`` fixture when it exists (else
DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/postgres); each test gets its own
database on it, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

from engine.store import Store, open_store, upgrade

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def store_server_url(request: pytest.FixtureRequest) -> str:
    """URL of a PostgreSQL database we may connect to in order to create databases."""
    try:
        return str(request.getfixturevalue("pg_url"))
    except pytest.FixtureLookupError:
        return os.environ.get("DATABASE_URL", DEFAULT_SERVER)


def _conninfo(url: str) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


@pytest.fixture
def pg_empty_url(store_server_url: str) -> Iterator[str]:
    """A fresh empty database (SQLAlchemy URL, psycopg driver), not migrated."""
    name = f"af_store_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_conninfo(store_server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = (
        make_url(store_server_url)
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )
    try:
        yield url
    finally:
        with psycopg.connect(_conninfo(store_server_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_store_url(pg_empty_url: str) -> str:
    """A fresh database migrated to head."""
    upgrade(pg_empty_url)
    return pg_empty_url


@pytest.fixture
def sqlite_store_url(tmp_path) -> str:
    """A fresh SQLite file URL, migrated to head."""
    url = f"sqlite:///{tmp_path / 'alphaforge.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each backend in turn."""
    fixture = "pg_store_url" if request.param == "postgresql" else "sqlite_store_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open store on a fresh database of each backend (few retries, short backoff)."""
    st = open_store(store_url, retries=2, backoff=0.01)
    try:
        yield st
    finally:
        st.close()
