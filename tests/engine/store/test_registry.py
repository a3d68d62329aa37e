"""Factor registry, run log, hostile names, input validation."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from store_testdata import bits, count_values, make_factors, specs

from engine.errors import StoreError
from engine.store import Store

HOSTILE = "x'); DROP TABLE runs; --"


def test_hostile_factor_name_is_data(store: Store) -> None:
    names = [HOSTILE, 'q"uote', "semi;colon"]
    factors, dates, symbols = make_factors(names, 5, 4, seed=10)
    symbols = pd.Index(["A'B", 'C"D', "E;--", "F"])
    run_id = store.start_run("p'; --", dates[0], dates[-1], specs(names))
    store.write_block(run_id, factors, dates, symbols)
    store.finish_run(run_id, "succeeded", 5 * 4 * 3)
    with store.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"runs", "factors", "factor_values", "securities"} <= tables
    assert set(store.factors()["name"]) == set(names)
    assert store.runs()["pipeline"].tolist() == ["p'; --"]
    series = store.cross_section(HOSTILE, dates[2])
    assert list(series.index) == list(symbols)
    np.testing.assert_array_equal(bits(series.to_numpy()), bits(factors[HOSTILE][2]))
    hist = store.history(["A'B"], [HOSTILE], dates[0], dates[-1])
    np.testing.assert_array_equal(bits(hist[HOSTILE].to_numpy()), bits(factors[HOSTILE][:, 0]))


def test_registry_versions_follow_the_structural_hash(store: Store) -> None:
    factors, dates, symbols = make_factors(["f"], 3, 4, seed=11)
    r1 = store.start_run("p", dates[0], dates[-1], specs(["f"], tag="v1"))
    store.write_block(r1, factors, dates, symbols)
    r2 = store.start_run("p", dates[0], dates[-1], specs(["f"], tag="v1"))
    assert len(store.factors()) == 1  # same formula: same version reused
    r3 = store.start_run("p", dates[0], dates[-1], specs(["f"], tag="v2"))
    reg = store.factors()
    assert reg["version"].tolist() == [1, 2]
    assert reg["library"].tolist() == ["test", "test"]
    # the new version has no values yet; the old version's values are kept
    assert len(store.cross_section("f", dates[0])) == 0
    store.write_block(r3, {"f": factors["f"] + 1.0}, dates, symbols)
    np.testing.assert_array_equal(
        bits(store.cross_section("f", dates[1]).to_numpy()), bits(factors["f"][1] + 1.0)
    )
    assert count_values(store) == 2 * len(dates)
    assert r1 < r2 < r3


def test_run_log_records_status_and_counts(store: Store) -> None:
    run_id = store.start_run("nightly", "2021-01-04", "2021-01-29", specs(["a", "b"]))
    frame = store.runs()
    row = frame.set_index("id").loc[run_id]
    assert row["status"] == "running" and row["n_factors"] == 2
    assert str(row["start_date"]) == "2021-01-04" and row["host"]
    store.finish_run(run_id, "failed", 123, error="boom at postgresql://u:hunter2@h/db")
    row = store.runs().set_index("id").loc[run_id]
    assert row["status"] == "failed" and row["rows"] == 123
    assert "hunter2" not in row["error"] and "boom" in row["error"]
    assert row["finished_at"] is not None
    with pytest.raises(StoreError, match="status"):
        store.finish_run(run_id, "weird", 1)
    with pytest.raises(StoreError, match="no run with id 99999"):
        store.finish_run(99999, "succeeded", 1)


def test_bad_blocks_are_refused_and_write_nothing(store: Store) -> None:
    factors, dates, symbols = make_factors(["a", "b"], 4, 3, seed=12)
    run_id = store.start_run("p", dates[0], dates[-1], specs(["a", "b"]))
    with pytest.raises(StoreError, match=r"factor 'b' has shape \(4, 2\)"):
        store.write_block(run_id, {"a": factors["a"], "b": factors["b"][:, :2]}, dates, symbols)
    with pytest.raises(StoreError, match="not declared"):
        store.write_block(run_id, {"zzz": factors["a"]}, dates, symbols)
    with pytest.raises(StoreError, match="float64"):
        store.write_block(run_id, {"a": np.ones((4, 3), dtype=np.float32)}, dates, symbols)
    with pytest.raises(StoreError, match="duplicate symbols"):
        store.write_block(run_id, factors, dates, pd.Index(["X", "X", "Y"]))
    with pytest.raises(StoreError, match="no run with id 4242"):
        store.write_block(4242, factors, dates, symbols)
    assert count_values(store) == 0


def test_store_copies_as_its_url(store: Store) -> None:
    """Dask ships the store to workers through __getstate__/__setstate__ (as copy does)."""
    factors, dates, symbols = make_factors(["a"], 3, 3, seed=13)
    run_id = store.start_run("p", dates[0], dates[-1], specs(["a"]))
    clone = copy.deepcopy(store)
    assert clone.__getstate__() == store.__getstate__()
    assert type(clone) is type(store) and clone.url == store.url
    clone.write_block(run_id, factors, dates, symbols)
    assert count_values(store) == 3
    clone.close()
