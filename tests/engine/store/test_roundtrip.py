"""Write then read back: exact bits, the three query shapes, idempotent re-runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from store_testdata import bits, count_values, make_factors, specs, value_table_state, write_all

from engine.errors import StoreError
from engine.store import Store

NAMES = ["alpha_a", "alpha_b", "alpha_c"]


def test_round_trip_preserves_float64_bits(store: Store) -> None:
    factors, dates, symbols = make_factors(NAMES, 25, 17)
    write_all(store, factors, dates, symbols, block=10)

    frame = store.panel(NAMES, dates[0], dates[-1])
    assert list(frame.columns) == NAMES
    assert frame.index.names == ["date", "asset"]
    assert len(frame) == len(dates) * len(symbols)  # NaN rows kept: the grid round-trips
    expected_index = pd.MultiIndex.from_product([dates, symbols], names=["date", "asset"])
    assert frame.index.equals(expected_index)
    for name in NAMES:
        got = frame[name].to_numpy().reshape(len(dates), len(symbols))
        np.testing.assert_array_equal(bits(got), bits(factors[name]))


def test_cross_section_is_one_date_of_one_factor(store: Store) -> None:
    factors, dates, symbols = make_factors(NAMES, 12, 9, seed=1)
    write_all(store, factors, dates, symbols, block=5)
    series = store.cross_section("alpha_b", dates[7])
    assert series.name == "alpha_b"
    assert series.index.name == "asset"
    assert list(series.index) == list(symbols)
    np.testing.assert_array_equal(bits(series.to_numpy()), bits(factors["alpha_b"][7]))
    empty = store.cross_section("alpha_b", "1999-01-04")
    assert len(empty) == 0
    with pytest.raises(StoreError, match="unknown factor 'nope'"):
        store.cross_section("nope", dates[0])


def test_history_reads_a_few_symbols(store: Store) -> None:
    factors, dates, symbols = make_factors(NAMES, 30, 11, seed=2)
    write_all(store, factors, dates, symbols, block=7)
    picked = ["S0003", "S0010"]
    frame = store.history(picked, ["alpha_c", "alpha_a"], dates[4], dates[20])
    assert list(frame.columns) == ["alpha_c", "alpha_a"]
    sub = dates[4:21]
    assert frame.index.equals(pd.MultiIndex.from_product([sub, picked], names=["date", "asset"]))
    for name in ["alpha_c", "alpha_a"]:
        got = frame[name].to_numpy().reshape(len(sub), len(picked))
        want = factors[name][4:21][:, [3, 10]]
        np.testing.assert_array_equal(bits(got), bits(want))
    # many symbols take the whole-row path and give the same answer
    many = list(symbols)
    wide = store.history(many, ["alpha_a"], dates[0], dates[-1])
    np.testing.assert_array_equal(
        bits(wide["alpha_a"].to_numpy().reshape(len(dates), len(symbols))),
        bits(factors["alpha_a"]),
    )
    assert len(store.history(["UNKNOWN"], ["alpha_a"], dates[0], dates[-1])) == 0


def test_panel_symbol_filter_and_changed_universe(store: Store) -> None:
    factors, dates, symbols = make_factors(["f"], 6, 5, seed=3)
    run_id = store.start_run("p", dates[0], dates[-1], specs(["f"]))
    store.write_block(run_id, {"f": factors["f"][:3]}, dates[:3], symbols)
    # later dates: one symbol left, one new one arrived (a different universe)
    later = pd.Index(["S0001", "S0002", "S0003", "S0004", "ZNEW"])
    later_vals = np.arange(15, dtype=np.float64).reshape(3, 5)
    store.write_block(run_id, {"f": later_vals}, dates[3:], later)
    frame = store.panel("f", dates[0], dates[-1], symbols=["S0000", "ZNEW"])
    assert list(frame.index) == [(d, "S0000") for d in dates[:3]] + [(d, "ZNEW") for d in dates[3:]]
    np.testing.assert_array_equal(
        frame["f"].to_numpy(), np.r_[factors["f"][:3, 0], later_vals[:, 4]]
    )
    hist = store.history("ZNEW", "f", dates[0], dates[-1])
    np.testing.assert_array_equal(hist["f"].to_numpy(), later_vals[:, 4])


def test_rerun_replaces_never_duplicates(store: Store) -> None:
    factors, dates, symbols = make_factors(NAMES, 20, 8, seed=4)
    write_all(store, factors, dates, symbols, block=6)
    before = value_table_state(store)
    assert before[0] == len(NAMES) * len(dates)  # 8 symbols: one chunk per cross-section
    write_all(store, factors, dates, symbols, block=9)  # other block boundaries, new run
    assert value_table_state(store) == before
    # a re-run with new values over part of the range replaces exactly that part
    changed = {n: a[5:12] + 1.0 for n, a in factors.items()}
    run_id = store.start_run("fix", dates[5], dates[11], specs(NAMES))
    store.write_block(run_id, changed, dates[5:12], symbols)
    assert count_values(store) == len(NAMES) * len(dates)
    got = store.panel(NAMES, dates[0], dates[-1])["alpha_a"].to_numpy().reshape(20, 8)
    want = factors["alpha_a"].copy()
    want[5:12] += 1.0
    np.testing.assert_array_equal(bits(got), bits(want))


@pytest.mark.parametrize("n_symbols", [239, 240, 241, 600])
def test_cross_sections_wider_than_a_chunk(store: Store, n_symbols: int) -> None:
    factors, dates, symbols = make_factors(["w1", "w2"], 4, n_symbols, seed=n_symbols)
    write_all(store, factors, dates, symbols, block=3)
    series = store.cross_section("w2", dates[3])
    np.testing.assert_array_equal(bits(series.to_numpy()), bits(factors["w2"][3]))
    mid = min(239, n_symbols - 2)  # the last symbol of chunk 0 where there is a chunk 1
    picked = [symbols[0], symbols[mid], symbols[-1]]
    hist = store.history(picked, ["w1"], dates[0], dates[-1])
    want = factors["w1"][:, [0, mid, n_symbols - 1]]
    order = np.argsort(picked, kind="stable")
    got = hist["w1"].to_numpy().reshape(4, 3)
    np.testing.assert_array_equal(bits(got), bits(want[:, order]))
    frame = store.panel(["w1", "w2"], dates[0], dates[-1])
    np.testing.assert_array_equal(
        bits(frame["w1"].to_numpy().reshape(4, n_symbols)), bits(factors["w1"])
    )


def test_rerun_with_a_narrower_universe_leaves_no_stale_chunks(store: Store) -> None:
    factors, dates, symbols = make_factors(["f"], 3, 500, seed=20)
    write_all(store, factors, dates, symbols)
    narrow = symbols[:100]
    run_id = store.start_run("p", dates[0], dates[-1], specs(["f"]))
    store.write_block(run_id, {"f": factors["f"][:, :100] * 2}, dates, narrow)
    rows, _ = value_table_state(store)
    assert rows == 3  # one chunk per date left
    series = store.cross_section("f", dates[1])
    assert list(series.index) == list(narrow)
    np.testing.assert_array_equal(bits(series.to_numpy()), bits(factors["f"][1, :100] * 2))
    assert len(store.history([symbols[400]], ["f"], dates[0], dates[-1])) == 0
