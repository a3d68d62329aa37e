"""Fixtures for pipeline tests: spec files over the bundled sample."""

from __future__ import annotations

from pathlib import Path

import pytest

SMALL_SPEC = """
[pipeline]
name = "{name}"
[source]
{source}
[universe]
screen = "volume > 0"
[factors.formulas]
mom_20 = "close / delay(close, 20) - 1"
pv = "-1 * correlation(rank(open), rank(volume), 10)"
ma = "ts_mean(close, 5) / close"
neutral = "IndNeutralize(rank(returns), IndClass.sector)"
[cluster]
block_rows = {block_rows}
"""


@pytest.fixture
def small_spec(tmp_path: Path):
    """Write a small spec file; returns a function (name, block_rows) -> path."""

    def make(name: str = "small", block_rows: int = 16, source: str = 'kind = "sample"') -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(SMALL_SPEC.format(name=name, block_rows=block_rows, source=source))
        return path

    return make


@pytest.fixture
def local_client():
    """A fresh 2-process LocalCluster client (empty worker memory caches)."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="session")
def pg_store(pg_url: str) -> str:
    """The test database with the store's schema migrated to the newest revision."""
    from engine.store import upgrade

    upgrade(pg_url)
    return pg_url
