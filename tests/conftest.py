"""Shared test fixtures: real PostgreSQL and Redis, and small panels.

The services come from ``DATABASE_URL`` and ``REDIS_URL``; ``scripts/test`` starts throwaway
servers and sets both when they are not configured. Without them (a developer running pytest
by hand) the local defaults ``postgresql://postgres@127.0.0.1:5432/postgres`` and
``redis://127.0.0.1:6379/0`` are used. An unreachable service fails the tests that need it with
a message saying so; nothing is skipped.

Hypothesis draws the same examples on every run (profile ``fixed``: the README's test command
and CI give the same verdict twice, and a failure reproduces); ``HYPOTHESIS_PROFILE=explore``
draws new ones each run, as when hunting for bugs. Either way a failing example is printed
and kept in ``.hypothesis/``, and replayed first on the next run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("fixed", derandomize=True, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fixed"))

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


def _wait_for(predicate, timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


class DaskProcesses:
    """A scheduler and worker processes started with the ``dask`` CLI on loopback."""

    def __init__(self, tmp: Path, n_workers: int = 2):
        import subprocess
        import sys

        self.tmp = tmp
        self.bin = Path(sys.executable).parent / "dask"
        self.scheduler_file = tmp / "scheduler.json"
        self.logs: list = []
        self.scheduler = self._spawn(
            "scheduler",
            [
                str(self.bin),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                ":0",
                "--scheduler-file",
                str(self.scheduler_file),
            ],
        )
        _wait_for(self.scheduler_file.exists, 60, "the Dask scheduler to start")
        self.workers = [self.add_worker(i) for i in range(n_workers)]
        self._subprocess = subprocess

    def _spawn(self, name: str, argv: list[str]):
        import subprocess

        log = open(self.tmp / f"{name}.log", "wb")
        self.logs.append(log)
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def add_worker(self, i: int):
        return self._spawn(
            f"worker-{i}",
            [
                str(self.bin),
                "worker",
                "--scheduler-file",
                str(self.scheduler_file),
                "--nthreads",
                "1",
                "--no-nanny",
                "--host",
                "127.0.0.1",
                "--memory-limit",
                "4GiB",
                "--name",
                f"w{i}",
            ],
        )

    def close(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=10)
            except Exception:
                p.kill()
        for log in self.logs:
            log.close()


@pytest.fixture(scope="session")
def dask_processes(tmp_path_factory) -> Iterator[DaskProcesses]:
    """A real multi-process Dask cluster: one scheduler and two worker processes."""
    procs = DaskProcesses(tmp_path_factory.mktemp("dask"))
    yield procs
    procs.close()


@pytest.fixture
def dask_client(dask_processes: DaskProcesses):
    """A client of the multi-process cluster, waiting until two workers are up."""
    from distributed import Client

    client = Client(scheduler_file=str(dask_processes.scheduler_file), timeout=60)
    client.wait_for_workers(2, timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="session")
def small_panel():
    """A synthetic panel with NaNs, listings, halts and industries (120 dates x 30 symbols)."""
    from engine.sources import synthetic

    return synthetic(n_symbols=30, n_dates=120, seed=7)
