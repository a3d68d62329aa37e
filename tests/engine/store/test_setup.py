"""Migrations, backend choice by URL, credential masking, the CLI query helper."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from store_testdata import make_factors, write_all

from engine.errors import ConfigError, StoreError
from engine.store import mask_url, open_store, query, upgrade
from engine.store.migrate import current_revision, head_revision
from engine.store.postgres import PostgresStore
from engine.store.schema import metadata
from engine.store.sqlite import SqliteStore
from engine.store.urls import mask_text, normalize_url


def test_migrations_match_the_metadata_and_are_idempotent(store_url: str) -> None:
    assert current_revision(store_url) == head_revision() == "0001"
    assert upgrade(store_url) == "0001"  # again: nothing to do
    engine = sa.create_engine(normalize_url(store_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def test_open_store_picks_the_backend_by_scheme(tmp_path, pg_store_url: str) -> None:
    lite = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    assert isinstance(lite, SqliteStore)
    assert lite.runs().empty  # migrated on open: the embedded default needs no setup
    pg = open_store(pg_store_url)
    assert isinstance(pg, PostgresStore)
    plain = pg_store_url.replace("postgresql+psycopg://", "postgresql://")
    assert open_store(plain).url.startswith("postgresql+psycopg://")
    with pytest.raises(ConfigError, match="unsupported store URL scheme 'mysql'"):
        open_store("mysql://u:pw@h/db")
    lite.close()
    pg.close()


def test_credentials_never_appear_in_messages() -> None:
    assert mask_url("postgresql://alice:hunter2@db.example/prod") == (
        "postgresql://alice:***@db.example/prod"
    )
    assert "hunter2" not in mask_text("failed: postgresql+psycopg://alice:hunter2@h:5/x oops")
    store = open_store("postgresql://alice:hunter2@127.0.0.1:1/nowhere", retries=0)
    assert "hunter2" not in repr(store)
    with pytest.raises(StoreError) as err:
        store.runs()
    assert "hunter2" not in str(err.value) and "***" in str(err.value)
    with pytest.raises(ConfigError) as err2:
        open_store("mysql://alice:hunter2@h/db")
    assert "hunter2" not in str(err2.value)


def test_unmigrated_postgres_says_how_to_fix(pg_store_url: str) -> None:
    engine = sa.create_engine(pg_store_url)
    with engine.begin() as conn:
        conn.exec_driver_sql('DROP TABLE "factor_values", "run_factors", "runs" CASCADE')
    engine.dispose()
    with pytest.raises(StoreError, match="alphaforge db upgrade"):
        open_store(pg_store_url).runs()


def test_query_helper_for_the_cli(sqlite_store_url: str) -> None:
    factors, dates, symbols = make_factors(["a", "b"], 6, 4, seed=14)
    with open_store(sqlite_store_url) as store:
        write_all(store, factors, dates, symbols, block=3)
    cs = query(sqlite_store_url, "cross-section", factors=["a"], date=dates[1])
    np.testing.assert_array_equal(cs.to_numpy(), factors["a"][1])
    hist = query(sqlite_store_url, "history", factors=["b"], symbols=["S0002"],
                 start=dates[0], end=dates[-1])  # fmt: skip
    np.testing.assert_array_equal(hist["b"].to_numpy(), factors["b"][:, 2])
    panel = query(sqlite_store_url, "panel", factors=["a", "b"], start=dates[0], end=dates[-1])
    assert isinstance(panel, pd.DataFrame) and panel.shape == (24, 2)
    assert len(query(sqlite_store_url, "runs")) == 1
    assert query(sqlite_store_url, "factors")["name"].tolist() == ["a", "b"]
    with pytest.raises(StoreError, match="unknown query"):
        query(sqlite_store_url, "drop")


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_concurrent_upgrades_of_a_fresh_database(backend, request, tmp_path) -> None:
    if backend == "postgresql":
        url = request.getfixturevalue("pg_empty_url")
    else:
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    barrier = threading.Barrier(3)

    def go(_: int) -> str:
        barrier.wait()
        return upgrade(url)

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(go, range(3))) == ["0001"] * 3
    assert current_revision(url) == "0001"
