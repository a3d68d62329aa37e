"""Quality report: counts on a hand-made frame, and the real data's known defects exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.panel import Panel
from engine.sources import read_parquet

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
REAL = SHARED_DATA / "sp500_daily_2013_2018.parquet"


def real_path() -> Path:
    if not REAL.is_file():
        pytest.fail(f"real data missing: expected {REAL} (the shared/ directory beside the repo)")
    return REAL


def frame() -> pd.DataFrame:
    """10 dates; AAA stale for 6 days, BBB has a 2-day halt and a zero-volume day,
    CCC lists on day 3, DDD delists after day 6."""
    dates = pd.bdate_range("2022-01-03", periods=10)
    rows = []
    for sym in ["AAA", "BBB", "CCC", "DDD"]:
        for t, d in enumerate(dates):
            if (sym == "BBB" and t in (4, 5)) or (sym == "CCC" and t < 3):
                continue
            if sym == "DDD" and t > 6:
                continue
            c = 50.0 if sym == "AAA" and 2 <= t <= 7 else 40.0 + t
            vol = 0.0 if sym == "BBB" and t == 8 else 1e5
            rows.append(
                dict(date=d, symbol=sym, open=c, high=c + 1, low=c - 1, close=c, volume=vol)
            )
    return pd.DataFrame(rows)


def test_counts_on_a_small_frame():
    q = Panel.from_frame(frame(), stale_days=5).quality
    assert q.n_rows == 40 - 2 - 3 - 3
    assert q.halts.to_dict("list") == {
        "symbol": ["BBB", "BBB"],
        "date": list(pd.bdate_range("2022-01-03", periods=10)[[4, 5]]),
    }
    assert len(q.stale) == 1
    st = q.stale.iloc[0]
    assert st["symbol"] == "AAA" and st["days"] == 6
    assert st["start"] == pd.Timestamp("2022-01-05") and st["end"] == pd.Timestamp("2022-01-12")
    assert q.zero_volume.to_dict("list") == {
        "symbol": ["BBB"],
        "date": [pd.Timestamp("2022-01-13")],
    }
    assert list(q.listings["symbol"]) == ["CCC"]
    assert q.listings["first_date"].iloc[0] == pd.Timestamp("2022-01-06")
    assert list(q.delistings["symbol"]) == ["DDD"]
    assert q.delistings["last_date"].iloc[0] == pd.Timestamp("2022-01-11")
    assert Panel.from_frame(frame(), stale_days=7).quality.stale.empty
    text = str(q)
    for piece in [
        "halts",
        ": 2",
        "stale",
        "zero-volume rows: 1",
        "listed after start: 1",
        "delisted before end: 1",
        "quarantined rows: 0",
    ]:
        assert piece in text


def test_quality_of_a_panel_built_from_arrays():
    d = pd.bdate_range("2022-01-03", periods=5)
    close = np.array([[1.0, np.nan], [2.0, 1.0], [np.nan, 1.0], [3.0, np.nan], [4.0, np.nan]])
    q = Panel(d, ["A", "B"], {"close": close}).quality
    assert q.n_halts == 1 and len(q.listings) == 1 and len(q.delistings) == 1
    assert q.n_rows == 6


def test_real_data_quality_is_exactly_its_known_defects():
    panel = read_parquet(real_path(), on_bad_rows="drop")
    q = panel.quality
    assert panel.shape == (1259, 505)
    assert q.n_rows == 619_040
    assert q.nan_counts["open"] == 11
    assert q.nan_counts["high"] == 8 and q.nan_counts["low"] == 8
    assert q.nan_counts["close"] == 0 and q.nan_counts["volume"] == 0
    assert len(q.zero_volume) == 4
    assert q.n_quarantined == 12
    assert q.n_halts == 51
    assert len(q.listings) == 29 and len(q.delistings) == 0
    quarantined = set(zip(q.quarantine["symbol"], q.quarantine["date"].dt.strftime("%Y-%m-%d")))
    assert ("LNT", "2016-05-19") in quarantined and ("AOS", "2014-05-19") in quarantined
    assert q.quarantine["reason"].str.len().gt(0).all()
    aos = q.quarantine[q.quarantine["symbol"] == "AOS"]["reason"].iloc[0]
    assert "high < low" in aos
    assert dict(q.halts.groupby("symbol").size()) == {
        "BMY": 2,
        "DHR": 16,
        "ES": 10,
        "ICE": 5,
        "O": 16,
        "ORCL": 2,
    }
    text = q.summary()
    assert (
        "quarantined rows: 12" in text and "halts (missing days within listed periods): 51" in text
    )
    # the quarantined rows are blank in the panel; every other row is there
    i = panel.dates.get_loc(pd.Timestamp("2016-05-19"))
    assert np.isnan(panel["close"][i, panel.symbols.get_loc("LNT")])
    assert int((~np.isnan(panel["close"])).sum()) == 619_040 - 12


def test_real_data_raises_by_default():
    from engine.errors import DataValidationError

    with pytest.raises(DataValidationError) as info:
        read_parquet(real_path())
    assert "AOS" in str(info.value) and "2014-05-19" in str(info.value)
