"""Failures: a killed connection mid-COPY, retries, concurrent writers, failed runs."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psycopg
import pytest
from sqlalchemy.engine import make_url
from store_testdata import bits, count_values, make_factors, specs, value_table_state, write_all

from engine.errors import StoreError
from engine.store import open_store

NAMES = ["f1", "f2", "f3", "f4"]


def _terminator(url: str, times: int):
    """A mid-write hook that kills the writer's backend from another connection."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    calls = {"n": 0}

    def hook(pg_conn: psycopg.Connection) -> None:
        calls["n"] += 1
        if calls["n"] > times:
            return
        pid = pg_conn.info.backend_pid
        with psycopg.connect(conninfo, autocommit=True) as killer:
            assert killer.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]

    return hook, calls


def test_killed_backend_mid_copy_leaves_no_half_block_then_rerun_is_exact(
    pg_store_url: str,
) -> None:
    factors, dates, symbols = make_factors(NAMES, 40, 300, seed=5)
    store = open_store(pg_store_url, retries=0)
    run_id = store.start_run("nightly", dates[0], dates[-1], specs(NAMES))
    store.write_block(run_id, {n: a[:20] for n, a in factors.items()}, dates[:20], symbols)
    state_first = value_table_state(store)

    hook, calls = _terminator(pg_store_url, times=1)
    store.mid_write_hook = hook
    with pytest.raises(StoreError) as err:
        store.write_block(run_id, {n: a[20:] for n, a in factors.items()}, dates[20:], symbols)
    assert calls["n"] == 1
    assert "write_block" in str(err.value)
    store.finish_run(run_id, "failed", 20 * 300 * len(NAMES), error=str(err.value))
    # nothing of the interrupted block, the earlier block untouched
    assert count_values(store, dates[20:]) == 0
    assert value_table_state(store) == state_first
    assert store.runs().set_index("id").loc[run_id, "status"] == "failed"

    store.mid_write_hook = None
    rerun = write_all(store, factors, dates, symbols, block=20, pipeline="nightly")
    assert count_values(store) == len(NAMES) * len(dates)
    frame = store.panel(NAMES, dates[0], dates[-1])
    for name in NAMES:
        got = frame[name].to_numpy().reshape(len(dates), len(symbols))
        np.testing.assert_array_equal(bits(got), bits(factors[name]))
    assert store.runs().set_index("id").loc[rerun, "status"] == "succeeded"
    store.close()


def test_transient_disconnect_is_retried(pg_store_url: str) -> None:
    factors, dates, symbols = make_factors(NAMES, 10, 200, seed=6)
    store = open_store(pg_store_url, retries=3, backoff=0.01)
    hook, calls = _terminator(pg_store_url, times=1)
    store.mid_write_hook = hook
    run_id = store.start_run("p", dates[0], dates[-1], specs(NAMES))
    assert store.write_block(run_id, factors, dates, symbols) == 10 * 200 * len(NAMES)
    assert calls["n"] == 2  # killed once, succeeded on the retry
    assert count_values(store) == len(NAMES) * len(dates)
    store.close()


def test_sqlite_failure_mid_block_rolls_back(sqlite_store_url: str) -> None:
    factors, dates, symbols = make_factors(NAMES, 10, 20, seed=7)
    store = open_store(sqlite_store_url, retries=0)
    run_id = store.start_run("p", dates[0], dates[-1], specs(NAMES))

    def boom(_conn: object) -> None:
        raise RuntimeError("worker died")

    store.mid_write_hook = boom
    with pytest.raises(RuntimeError):
        store.write_block(run_id, factors, dates, symbols)
    assert count_values(store) == 0
    store.mid_write_hook = None
    store.write_block(run_id, factors, dates, symbols)
    assert count_values(store) == len(NAMES) * len(dates)
    store.close()


def _write_blocks(url: str, run_id: int, blocks: list[tuple[int, int]], seed: int) -> int:
    factors, dates, symbols = make_factors(NAMES, 48, 60, seed=seed)
    store = open_store(url, migrate=False)
    written = 0
    for i0, i1 in blocks:
        part = {n: a[i0:i1] for n, a in factors.items()}
        written += store.write_block(run_id, part, dates[i0:i1], symbols)
    store.close()
    return written


def test_concurrent_writers_do_not_deadlock(store_url: str) -> None:
    factors, dates, symbols = make_factors(NAMES, 48, 60, seed=8)
    store = open_store(store_url)
    run_id = store.start_run("parallel", dates[0], dates[-1], specs(NAMES))
    # four writers with their own stores: disjoint blocks, plus two that overlap each other
    # (same keys written concurrently must queue, not deadlock)
    plans = [[(0, 12)], [(12, 24)], [(24, 36), (0, 6)], [(36, 48), (6, 12)]]
    barrier = threading.Barrier(len(plans))

    def work(plan: list[tuple[int, int]]) -> int:
        barrier.wait()
        return _write_blocks(store_url, run_id, plan, seed=8)

    with ThreadPoolExecutor(len(plans)) as pool:
        written = sum(pool.map(work, plans))
    assert written == (48 + 12) * 60 * len(NAMES)
    assert count_values(store) == 48 * len(NAMES)
    frame = store.panel(NAMES, dates[0], dates[-1])
    got = frame["f3"].to_numpy().reshape(48, 60)
    np.testing.assert_array_equal(bits(got), bits(factors["f3"]))
    store.close()


def test_worker_processes_write_blocks_in_parallel(pg_store_url: str) -> None:
    factors, dates, symbols = make_factors(NAMES, 48, 60, seed=9)
    store = open_store(pg_store_url)
    run_id = store.start_run("procs", dates[0], dates[-1], specs(NAMES))
    store.factors()  # the parent's pool holds a connection across the fork
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        args = [(pg_store_url, run_id, [(0, 24)], 9), (pg_store_url, run_id, [(24, 48)], 9)]
        written = sum(pool.starmap(_write_blocks, args))
    assert written == 48 * 60 * len(NAMES)
    first = value_table_state(store)
    assert first[0] == 48 * len(NAMES)
    frame = store.panel(NAMES, dates[0], dates[-1])
    np.testing.assert_array_equal(bits(frame["f1"].to_numpy().reshape(48, 60)), bits(factors["f1"]))
    store.close()
