"""Synthetic factor blocks and checks shared by the store tests."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import sqlalchemy as sa

from engine.store import Store

SPECIAL = np.array(
    [
        np.nan,
        -0.0,
        np.inf,
        -np.inf,
        5e-324,  # smallest subnormal
        np.finfo(np.float64).max,
        np.frombuffer(np.array([0x7FF8_0000_DEAD_BEEF], dtype="<u8").tobytes(), "<f8")[0],
    ]
)


def make_factors(
    names: list[str], n_dates: int, n_symbols: int, seed: int = 0, start: str = "2020-01-01"
) -> tuple[dict[str, np.ndarray], pd.DatetimeIndex, pd.Index]:
    """Random (T, N) float64 arrays with NaNs and special values, business-day dates."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=n_dates)
    symbols = pd.Index([f"S{k:04d}" for k in range(n_symbols)])
    out = {}
    for name in names:
        arr = rng.standard_normal((n_dates, n_symbols))
        arr[rng.random(arr.shape) < 0.1] = np.nan
        flat = arr.reshape(-1)
        flat[rng.integers(0, flat.size, len(SPECIAL))] = SPECIAL
        out[name] = arr
    return out, dates, symbols


def specs(names: list[str], tag: str = "v1") -> dict[str, tuple[str, str, str]]:
    """start_run factor specs (formula, structural hash, library)."""
    return {
        n: (f"rank({n})", hashlib.sha256(f"{n}:{tag}".encode()).hexdigest(), "test") for n in names
    }


def write_all(
    store: Store,
    factors: dict[str, np.ndarray],
    dates: pd.DatetimeIndex,
    symbols: pd.Index,
    block: int = 10,
    pipeline: str = "test",
) -> int:
    """One run writing every block; returns the run id."""
    run_id = store.start_run(pipeline, dates[0], dates[-1], specs(list(factors)))
    total = 0
    for i in range(0, len(dates), block):
        part = {n: a[i : i + block] for n, a in factors.items()}
        total += store.write_block(run_id, part, dates[i : i + block], symbols)
    store.finish_run(run_id, "succeeded", total)
    return run_id


def bits(a: np.ndarray) -> np.ndarray:
    """The raw 64-bit patterns (exact comparison, NaN payloads included)."""
    return np.ascontiguousarray(a, dtype=np.float64).view("<u8")


def value_table_state(store: Store) -> tuple[int, str]:
    """(chunk row count, checksum over every stored (factor, date, chunk, vals))."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                'SELECT "factor_id", "date", "chunk", "vals" FROM "factor_values" '
                'ORDER BY "factor_id", "date", "chunk"'
            )
        ).all()
    digest = hashlib.sha256()
    for fid, day, chunk, vals in rows:
        digest.update(f"{fid}|{day}|{chunk}|".encode())
        digest.update(bytes(vals))
    return len(rows), digest.hexdigest()


def count_values(store: Store, dates: pd.DatetimeIndex | None = None) -> int:
    """Stored (factor, date) rows, optionally only those within ``dates``."""
    query = 'SELECT COUNT(*) FROM (SELECT DISTINCT "factor_id", "date" FROM "factor_values"'
    params = {}
    if dates is not None:
        query += ' WHERE "date" BETWEEN :a AND :b'
        params = {"a": dates[0].date(), "b": dates[-1].date()}
    query += ") AS keys"
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text(query), params).scalar_one())
