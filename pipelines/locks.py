"""One batch run per spec at a time.

With PostgreSQL the lock is a session advisory lock on the store's server, so it holds across
machines (two schedulers, a retried cron job on another host); with SQLite it is an exclusive
``flock`` on a file beside the database. Either way the lock ends with the process that holds
it, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from engine.errors import AlphaforgeError
from engine.store.urls import backend_of


class LockBusy(AlphaforgeError):
    """Another run of the same spec holds the lock."""


def _lock_id(name: str) -> int:
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextlib.contextmanager
def spec_lock(
    database_url: str, name: str, *, wait: bool = False, timeout: float = 3600
) -> Iterator[None]:
    """Hold the lock of pipeline ``name`` on the store at ``database_url``.

    Raises :class:`LockBusy` at once when it is taken and ``wait`` is false; with ``wait``,
    polls until it is free or ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    if backend_of(database_url) == "postgresql":
        import psycopg
        import sqlalchemy as sa

        url = sa.engine.make_url(database_url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            key = _lock_id(f"alphaforge:{name}")
            while True:
                got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
                if got:
                    break
                if not wait or time.monotonic() > deadline:
                    raise LockBusy(f"another run of pipeline {name!r} is in progress")
                time.sleep(0.5)
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return
    path = _sqlite_lock_path(database_url, name)
    with open(path, "a+") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait or time.monotonic() > deadline:
                    raise LockBusy(f"another run of pipeline {name!r} is in progress") from None
                time.sleep(0.5)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sqlite_lock_path(database_url: str, name: str) -> Path:
    db = database_url.split(":///", 1)[-1] if ":///" in database_url else "memory"
    tag = hashlib.blake2b(f"{Path(db).resolve()}:{name}".encode(), digest_size=8).hexdigest()
    base = Path(db).resolve().parent if db != "memory" else Path("/tmp")
    return base / f".alphaforge-{tag}.lock"
