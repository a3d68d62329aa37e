"""Bounded retry with exponential backoff for transient database errors.

Transient: the connection dropped or was terminated (server restart, admin shutdown,
network reset), serialization failure, deadlock, SQLite "database is locked/busy". Anything
else (constraint violations, bad SQL, missing tables) fails at once.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
import sqlalchemy as sa

log = logging.getLogger(__name__)

T = TypeVar("T")


def _root(exc: BaseException) -> BaseException:
    """The DB-API exception under a SQLAlchemy wrapper."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same transaction on a fresh connection may succeed."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    root = _root(exc)
    if isinstance(root, psycopg.OperationalError):
        # includes AdminShutdown, connection failures, SerializationFailure, DeadlockDetected
        return True
    if isinstance(root, psycopg.InterfaceError):
        return "closed" in str(root) or "lost" in str(root)
    if isinstance(root, sqlite3.OperationalError):
        text = str(root).lower()
        return "locked" in text or "busy" in text
    return False


def with_retries(
    fn: Callable[[], T],
    *,
    attempts: int,
    backoff: float,
    what: str,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Call ``fn`` up to ``attempts`` times while it raises transient errors.

    Sleeps ``backoff * 2**k`` (with jitter, capped at 5 s) between tries; the last error is
    re-raised unchanged.
    """
    for k in range(max(1, attempts)):
        try:
            return fn()
        except Exception as exc:
            if k + 1 >= attempts or not is_transient(exc):
                raise
            delay = min(5.0, backoff * 2**k) * (0.5 + random.random())
            log.warning(
                "%s: transient error (%s), retry %d/%d in %.2fs",
                what,
                type(_root(exc)).__name__,
                k + 1,
                attempts - 1,
                delay,
            )
            if on_retry is not None:
                on_retry(exc)
            time.sleep(delay)
    raise AssertionError("unreachable")
