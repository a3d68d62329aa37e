"""Panel: construction rules, frame round trip, slicing views, fingerprint, derived fields."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.panel import Panel
from engine.sources import synthetic

REPO = Path(__file__).resolve().parents[2]


def long_frame() -> pd.DataFrame:
    """4 symbols x 6 dates; DDD lists late, CCC has a gap, BBB changes industry."""
    dates = pd.bdate_range("2021-03-01", periods=6)
    rng = np.random.default_rng(1)
    rows = []
    for k, sym in enumerate(["AAA", "BBB", "CCC", "DDD"]):
        for t, d in enumerate(dates):
            if (sym == "DDD" and t < 2) or (sym == "CCC" and t == 3):
                continue
            c = 20.0 + k + rng.normal()
            ind = "Energy" if sym != "BBB" or t < 4 else "Utilities"
            rows.append(
                dict(
                    date=d,
                    symbol=sym,
                    open=c,
                    high=c + 1,
                    low=c - 1,
                    close=c,
                    volume=float(100 * (t + 1)),
                    industry=None if sym == "AAA" else ind,
                )
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def panel() -> Panel:
    return Panel.from_frame(long_frame())


def test_layout(panel):
    assert panel.shape == (6, 4)
    assert list(panel.symbols) == ["AAA", "BBB", "CCC", "DDD"]
    assert panel.dates.is_monotonic_increasing and panel.dates.is_unique
    assert panel.dates.tz is None and (panel.dates == panel.dates.normalize()).all()
    for a in panel.fields.values():
        assert a.dtype == np.float64 and a.flags.c_contiguous and a.shape == (6, 4)
    assert np.isnan(panel["close"][:2, 3]).all() and np.isnan(panel["close"][3, 2])
    assert panel["industry"].dtype == np.int64
    labels = panel.group_labels["industry"]
    assert labels == ["Energy", "Utilities"]
    ind = panel["industry"]
    assert (ind[:, 0] == -1).all()  # AAA has no label
    assert list(ind[:, 1]) == [0, 0, 0, 0, 1, 1]  # BBB changes label on day 4
    assert ind[3, 2] == 0  # CCC's gap day keeps its label (forward fill)
    assert list(ind[:, 3]) == [-1, -1, 0, 0, 0, 0]  # nothing before listing
    assert "close" in panel and "returns" in panel and "industry" in panel and "pe" not in panel


def test_constructor_rejects_bad_input():
    d = pd.bdate_range("2021-01-04", periods=3)
    with pytest.raises(ValueError, match="shape"):
        Panel(d, ["A", "B"], {"close": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="sorted"):
        Panel(d[::-1], ["A", "B"], {"close": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="sorted"):
        Panel(d, ["B", "A"], {"close": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="midnight"):
        Panel(d + pd.Timedelta(hours=1), ["A", "B"], {"close": np.zeros((3, 2))})


def test_round_trip(panel):
    frame = panel.to_frame()
    assert frame.index.names == ["date", "asset"]
    assert len(frame) == 6 * 4 - 3  # rows that exist
    assert frame.index.is_monotonic_increasing
    back = Panel.from_frame(frame)
    assert back.dates.equals(panel.dates) and back.symbols.equals(panel.symbols)
    for k in panel.fields:
        np.testing.assert_array_equal(back[k], panel[k])
    np.testing.assert_array_equal(back["industry"], panel["industry"])
    assert back.fingerprint() == panel.fingerprint()


def test_round_trip_synthetic():
    p = synthetic(30, 120, seed=3)
    back = Panel.from_frame(p.to_frame())
    assert back.dates.equals(p.dates)
    assert back.fingerprint() == p.fingerprint()


def test_date_slices_are_views(panel):
    s = panel.sel("2021-03-02", "2021-03-05")
    assert s.shape == (4, 4)
    assert s.dates[0] == pd.Timestamp("2021-03-02") and s.dates[-1] == pd.Timestamp("2021-03-05")
    for k in panel.fields:
        assert np.shares_memory(s[k], panel[k])
        assert s[k].flags.c_contiguous
        np.testing.assert_array_equal(s[k], panel[k][1:5])
    assert np.shares_memory(s["industry"], panel["industry"])
    i = panel.islice(2, None)
    assert i.shape == (4, 4) and np.shares_memory(i["close"], panel["close"])
    assert panel.islice(-2).shape == (2, 4)
    assert panel.sel(end="2021-03-01").shape == (1, 4)
    assert panel.sel(start="2030-01-01").shape == (0, 4)


def test_symbol_selection(panel):
    s = panel.sel(symbols=["DDD", "BBB"])
    assert list(s.symbols) == ["BBB", "DDD"]
    np.testing.assert_array_equal(s["close"], panel["close"][:, [1, 3]])
    assert s.group_labels == panel.group_labels
    with pytest.raises(KeyError, match="ZZZ"):
        panel.sel(symbols=["AAA", "ZZZ"])


def test_fingerprint(panel):
    fp = panel.fingerprint()
    assert len(fp) == 64 and fp == panel.fingerprint()
    assert panel.fingerprint(0, 3) != fp
    assert panel.islice(1, 4).fingerprint() == panel.fingerprint(1, 4)
    assert panel.sel("2021-03-02", "2021-03-04").fingerprint() == panel.fingerprint(1, 4)
    other = dict(panel.fields)
    other["close"] = panel["close"].copy()
    other["close"][5, 0] += 1e-9
    changed = Panel(panel.dates, panel.symbols, other, panel.groups, panel.group_labels)
    assert changed.fingerprint() != fp
    assert changed.fingerprint(0, 5) == panel.fingerprint(0, 5)  # rows before are unchanged
    reordered = Panel(
        panel.dates,
        panel.symbols,
        dict(reversed(panel.fields.items())),
        panel.groups,
        panel.group_labels,
    )
    assert reordered.fingerprint() == fp
    # a different NaN bit pattern is the same value
    weird = dict(panel.fields)
    w = panel["close"].copy()
    w.view(np.int64)[np.isnan(w)] = np.int64(0x7FF8000000000123)
    weird["close"] = w
    assert (
        Panel(panel.dates, panel.symbols, weird, panel.groups, panel.group_labels).fingerprint()
        == fp
    )


def test_fingerprint_is_stable_across_processes():
    here = synthetic(20, 50, seed=11).fingerprint(5, 40)
    code = (
        "from engine.sources import synthetic; print(synthetic(20, 50, seed=11).fingerprint(5, 40))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO), "PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == here


def test_derived_fields(panel, caplog):
    close = panel["close"]
    r = panel["returns"]
    assert np.isnan(r[0]).all()
    np.testing.assert_allclose(r[1:, 0], close[1:, 0] / close[:-1, 0] - 1)
    assert np.isnan(r[3, 2]) and np.isnan(r[4, 2])  # gap day and the day after
    with caplog.at_level("INFO", logger="engine.fields"):
        vwap = panel["vwap"]
    assert "typical price" in caplog.text
    np.testing.assert_allclose(vwap, (panel["high"] + panel["low"] + close) / 3)
    np.testing.assert_allclose(panel["amount"], vwap * panel["volume"])
    assert panel["returns"] is r  # cached
    assert panel.field_names == [
        "open",
        "high",
        "low",
        "close",
        "volume",
        "returns",
        "vwap",
        "amount",
        "listed",
    ]
    with pytest.raises(KeyError, match="unknown field 'cap'"):
        panel["cap"]


def test_listed_is_each_symbols_first_to_last_close():
    """Qlib's instrument span: 1.0 from the first to the last valid close, halts included."""
    nan = np.nan
    close = np.array(
        [[nan, 1.0, nan], [2.0, nan, nan], [nan, 3.0, nan], [4.0, nan, nan], [nan, nan, nan]]
    )
    p = Panel(pd.bdate_range("2024-01-01", periods=5), ["A", "B", "C"], {"close": close})
    np.testing.assert_array_equal(
        p["listed"],
        [[nan, 1, nan], [1, 1, nan], [1, 1, nan], [1, nan, nan], [nan, nan, nan]],
    )
    # the block executor slices the whole panel's field: a row keeps its span
    assert np.array_equal(p["listed"][2:4], [[1, 1, nan], [1, nan, nan]], equal_nan=True)


def test_stored_vwap_wins():
    p = synthetic(10, 30, seed=2)
    assert p["vwap"] is p.fields["vwap"]
    np.testing.assert_allclose(p["amount"], p["vwap"] * p["volume"])


@settings(max_examples=40, deadline=None)
@given(
    t=st.integers(1, 8),
    n=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    nan_share=st.floats(0.0, 0.9),
)
def test_round_trip_property(t, n, seed, nan_share):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(t, n))
    a[rng.random((t, n)) < nan_share] = np.nan
    b = rng.integers(-5, 5, size=(t, n)).astype(float)
    b[np.isnan(a)] = np.nan
    g = rng.integers(-1, 3, size=(t, n))
    g = np.where(np.isnan(a), -1, g)
    dates = pd.bdate_range("2020-01-01", periods=t)
    syms = [f"X{j}" for j in range(n)]
    p = Panel(dates, syms, {"a": a, "b": b}, {"sector": g}, {"sector": ["s0", "s1", "s2"]})
    frame = p.to_frame()
    assert len(frame) == int((~np.isnan(a)).sum())
    if len(frame) == 0:
        return
    back = Panel.from_frame(frame, groups=("sector",), required=())
    rows = p.dates.get_indexer(back.dates)
    cols = p.symbols.get_indexer(back.symbols)
    assert (rows >= 0).all() and (cols >= 0).all()
    np.testing.assert_array_equal(back["a"], a[np.ix_(rows, cols)])
    np.testing.assert_array_equal(back["b"], b[np.ix_(rows, cols)])
    # labels: the same text wherever the source had one (from_frame forward-fills the rest)
    src = np.array(["s0", "s1", "s2", None], dtype=object)[g[np.ix_(rows, cols)]]
    got = np.array([*back.group_labels["sector"], None], dtype=object)[back["sector"]]
    has = src != None  # noqa: E711 - elementwise on an object array
    assert (got[has] == src[has]).all()
