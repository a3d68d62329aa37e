"""The notebook API: results equal the reference, screens, writes and reads back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cluster.config import load_settings
from engine import evaluate
from engine.sources import sample
from factors import close, delay, library, rank, ts_corr, volume
from pipelines import Pipeline


@pytest.fixture(scope="module")
def real():
    return sample()


def test_run_returns_alphalens_frame_equal_to_reference(local_client, real):
    factors = {
        "mom_20": close / delay(close, 20) - 1,
        "pv": -ts_corr(rank(close), rank(volume), 10),
        "a12": "sign(delta(volume, 1)) * (-1 * delta(close, 1))",
    }
    pipe = Pipeline(factors, source=real, settings=load_settings(block_rows=32))
    frame = pipe.run("2017-06-01", "2017-09-29", local_client, progress=False)
    assert list(frame.index.names) == ["date", "asset"]
    assert list(frame.columns) == list(factors)
    dates = frame.index.get_level_values("date")
    assert dates.min() == pd.Timestamp("2017-06-01") and dates.max() == pd.Timestamp("2017-09-29")
    whole = evaluate(factors, real)
    rows = real.dates.get_indexer(pipe.dates)
    for name in factors:
        np.testing.assert_array_equal(pipe.values()[name], whole[name][rows])


def test_screen_blanks_rows(local_client, real):
    pipe = Pipeline(
        {"c": "close"}, source=real, screen="close > 100", settings=load_settings(block_rows=32)
    )
    frame = pipe.run("2017-01-03", "2017-01-31", local_client, progress=False)
    assert (frame["c"].dropna() > 100).all()
    assert frame["c"].notna().sum() < len(real.symbols) * len(pipe.dates)


def test_write_then_read_back(local_client, real, pg_url):
    from engine.store import open_store

    pipe = Pipeline({"m": "ts_mean(close, 5)"}, source=real, name="nb", settings=load_settings())
    pipe.run("2016-03-01", "2016-03-31", local_client, progress=False)
    store = open_store(pg_url, migrate=True)
    written = pipe.write(store)
    assert written == len(pipe.dates) * len(pipe.symbols)
    back = store.cross_section("m", "2016-03-15")
    row = pipe.dates.get_loc(pd.Timestamp("2016-03-15"))
    expected = pd.Series(pipe.values()["m"][row], index=pipe.symbols)
    np.testing.assert_array_equal(back.reindex(expected.index).to_numpy(), expected.to_numpy())
    runs = store.runs()
    assert runs.iloc[-1]["status"] == "succeeded" and runs.iloc[-1]["pipeline"] == "nb"
    store.close()


def test_bad_formula_names_position():
    from engine.errors import FormulaError

    with pytest.raises(FormulaError, match="ts_rnk"):
        Pipeline({"x": "ts_rnk(close, 5)"}, source="sample")


def test_top_n_by_liquidity_after_screen(local_client, real):
    pipe = Pipeline(
        {"c": "close"},
        source=real,
        screen="close > 30",
        top=("adv20", 10),
        settings=load_settings(block_rows=32),
    )
    pipe.run("2017-03-01", "2017-03-31", local_client, progress=False)
    kept = np.isfinite(pipe.values()["c"])
    assert (kept.sum(axis=1) == 10).all()
    whole = evaluate({"adv": "adv20", "c": "close"}, real)
    rows = real.dates.get_indexer(pipe.dates)
    adv = np.where(whole["c"][rows] > 30, whole["adv"][rows], np.nan)
    for t in range(len(rows)):
        tenth = np.sort(adv[t][np.isfinite(adv[t])])[-10]
        assert (adv[t][kept[t]] >= tenth).all()
        assert (whole["c"][rows][t][kept[t]] > 30).all()


def test_window_inside_a_long_halt_keeps_the_listing_span(local_client, real):
    """Qlib-dialect factors read the listing span: a stock halted from before the loaded
    window until just before the computed date is listed throughout (as in the full
    history), so its windows reach back over the halt exactly as the full history's do."""
    from engine.panel import Panel

    a158 = library.load("alpha158")
    factors = {"cnt": a158["CNTP5"], "imax": a158["IMAX10"]}
    settings = load_settings(block_rows=16)
    i0 = 1000
    probe = Pipeline(factors, source=real, settings=settings)
    (lookback, _), *_ = probe._groups()
    h0 = probe._window(i0, lookback, 16)
    fields = {k: v.copy() for k, v in real.fields.items()}
    j = real.symbols.get_loc("MSFT")
    for v in fields.values():
        v[h0 - 5 : i0 - 2, j] = np.nan  # halted from before the window until 2 days before
    halted = Panel(real.dates, real.symbols, fields, real.groups, real.group_labels)
    pipe = Pipeline(factors, source=halted, settings=settings)
    day = real.dates[i0]
    pipe.run(day, day, local_client, progress=False)
    whole = evaluate(factors, halted.islice(0, i0 + 1))
    assert whole["imax"][-1, j] == 0.1  # IdxMax(high, 10)/10: the first row (halted, listed)
    for name in factors:
        got = pd.Series(pipe.values()[name][0], index=pipe.symbols)
        want = pd.Series(whole[name][-1], index=real.symbols).reindex(got.index)
        np.testing.assert_array_equal(got.to_numpy(), want.to_numpy(), err_msg=name)
