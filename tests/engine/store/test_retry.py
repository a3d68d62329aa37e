"""The retry policy: which errors are transient, bounded attempts."""

from __future__ import annotations

import sqlite3

import psycopg
import psycopg.errors
import pytest

from engine.store.retry import is_transient, with_retries


@pytest.mark.parametrize(
    "exc, transient",
    [
        (psycopg.errors.DeadlockDetected("deadlock detected"), True),
        (psycopg.errors.SerializationFailure("could not serialize access"), True),
        (psycopg.errors.AdminShutdown("terminating connection"), True),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (sqlite3.OperationalError("database is locked"), True),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
        (psycopg.errors.UndefinedTable('relation "runs" does not exist'), False),
        (sqlite3.OperationalError("no such table: runs"), False),
        (ValueError("bad input"), False),
    ],
)
def test_transient_errors_are_recognised(exc: Exception, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_retries_until_success_then_stops() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return "done"

    assert with_retries(flaky, attempts=5, backoff=0.001, what="t") == "done"
    assert len(calls) == 3


def test_retries_are_bounded_and_permanent_errors_are_not_retried() -> None:
    calls = []

    def always() -> None:
        calls.append(1)
        raise psycopg.errors.SerializationFailure("could not serialize access")

    with pytest.raises(psycopg.errors.SerializationFailure):
        with_retries(always, attempts=4, backoff=0.001, what="t")
    assert len(calls) == 4
    calls.clear()

    def broken() -> None:
        calls.append(1)
        raise psycopg.errors.UniqueViolation("duplicate key")

    with pytest.raises(psycopg.errors.UniqueViolation):
        with_retries(broken, attempts=4, backoff=0.001, what="t")
    assert len(calls) == 1
