"""Validation: one small CSV/Parquet file per defect; the error names defect, symbol, date."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.errors import DataValidationError
from engine.sources import read_csv, read_parquet, validate_bars


def bars() -> pd.DataFrame:
    """3 symbols x 4 dates of clean bars."""
    dates = pd.bdate_range("2020-01-06", periods=4)
    rows = []
    for k, sym in enumerate(["AAA", "BBB", "CCC"]):
        for t, d in enumerate(dates):
            c = 10.0 + k + 0.1 * t
            rows.append(
                {
                    "date": d.strftime("%Y-%m-%d"),
                    "symbol": sym,
                    "open": c - 0.05,
                    "high": c + 0.2,
                    "low": c - 0.2,
                    "close": c,
                    "volume": 1000.0 + t,
                    "industry": "Tech" if k < 2 else "Energy",
                }
            )
    return pd.DataFrame(rows)


def setv(sym: str, day: str, col: str, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def f(df: pd.DataFrame) -> pd.DataFrame:
        df = df.astype({col: object}) if not isinstance(value, float) else df
        df.loc[(df.symbol == sym) & (df.date == day), col] = value
        return df

    return f


def write(df: pd.DataFrame, path: Path, fmt: str) -> Path:
    if fmt == "csv":
        p = path / "bars.csv"
        df.to_csv(p, index=False)
    else:
        p = path / "bars.parquet"
        mixed = [c for c in df.columns if df[c].dtype == object]
        df.astype({c: str for c in mixed}).to_parquet(p, index=False)  # parquet: one type
    return p


def load(path: Path, fmt: str, **kw: object):
    return read_csv(path, **kw) if fmt == "csv" else read_parquet(path, **kw)


D = "2020-01-07"
# (id, mutation, words the message must contain, structural?)
DEFECTS = [
    ("missing-close", lambda df: df.drop(columns="close"), ["missing", "close"], True),
    ("missing-date", lambda df: df.drop(columns="date"), ["missing", "date"], True),
    (
        "duplicate",
        lambda df: pd.concat([df, df.iloc[[5]]], ignore_index=True),
        ["duplicate", "BBB", D],
        True,
    ),
    ("non-numeric", setv("BBB", D, "close", "abc"), ["non-numeric", "'close'", "BBB", D], True),
    ("bad-date", setv("BBB", D, "date", "2020-13-45"), ["unparseable", "BBB", "2020-13-45"], True),
    ("empty-symbol", setv("BBB", D, "symbol", ""), ["empty", "symbol", D], True),
    ("inf", setv("BBB", D, "high", np.inf), ["infinite", "'high'", "BBB", D], False),
    ("neg-inf", setv("CCC", D, "volume", -np.inf), ["infinite", "'volume'", "CCC", D], False),
    ("zero-price", setv("BBB", D, "open", 0.0), ["non-positive price", "'open'", "BBB", D], False),
    (
        "negative-price",
        setv("AAA", D, "close", -1.0),
        ["non-positive price", "'close'", "AAA", D],
        False,
    ),
    ("high-low", setv("BBB", D, "high", 5.0), ["high < low", "BBB", D], False),
    ("close-out", setv("BBB", D, "close", 99.0), ["close outside [low, high]", "BBB", D], False),
    ("open-out", setv("CCC", D, "open", 1.0), ["open outside [low, high]", "CCC", D], False),
    ("neg-volume", setv("AAA", D, "volume", -5.0), ["negative volume", "AAA", D], False),
]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize(
    "mutate,words,structural", [d[1:] for d in DEFECTS], ids=[d[0] for d in DEFECTS]
)
def test_defect_is_named(tmp_path, fmt, mutate, words, structural):
    path = write(mutate(bars()), tmp_path, fmt)
    with pytest.raises(DataValidationError) as info:
        load(path, fmt)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert path.name in msg  # the source is named too
    if structural:  # structural defects raise even when bad rows may be dropped
        with pytest.raises(DataValidationError):
            load(path, fmt, on_bad_rows="drop")
    else:  # row-level defects go to the quarantine with a reason
        panel = load(path, fmt, on_bad_rows="drop")
        q = panel.quality.quarantine
        assert len(q) == 1 and q["reason"].iloc[0] and words[0].split()[0] in q["reason"].iloc[0]
        day, sym = pd.Timestamp(q["date"].iloc[0]), q["symbol"].iloc[0]
        i, j = panel.dates.get_loc(day), panel.symbols.get_loc(sym)
        assert all(np.isnan(panel.fields[f][i, j]) for f in panel.fields)
        assert panel.shape == (4, 3)


def test_unknown_symbol_with_universe(tmp_path):
    path = write(bars(), tmp_path, "parquet")
    with pytest.raises(DataValidationError, match="unknown symbol") as info:
        read_parquet(path, universe=["AAA", "BBB"])
    assert "CCC" in str(info.value) and info.value.count == 4
    assert read_parquet(path, universe=["AAA", "BBB", "CCC", "DDD"]).shape == (4, 3)


def test_error_lists_first_offenders_and_count():
    df = bars()
    df["high"] = df["low"] - 1.0  # every row broken
    with pytest.raises(DataValidationError) as info:
        validate_bars(df)
    err = info.value
    assert err.count == 12 and len(err.offenders) == 5
    assert "and 7 more" in str(err)
    assert err.offenders[0].startswith("symbol=") and "date=2020-01-06" in err.offenders[0]


def test_nan_values_are_allowed_and_counted(tmp_path):
    df = bars()
    df.loc[3, "close"] = np.nan
    df.loc[4, ["open", "high", "low"]] = np.nan
    panel = read_csv(write(df, tmp_path, "csv"))
    assert panel.quality.nan_counts == {"open": 1, "high": 1, "low": 1, "close": 1, "volume": 0}
    assert panel.quality.n_quarantined == 0


def test_drop_keeps_every_other_row_and_all_reasons():
    df = bars()
    df.loc[0, "high"] = 1.0  # high < low, close and open outside
    df.loc[7, "volume"] = -1.0
    vb = validate_bars(df, on_bad_rows="drop")
    assert len(vb.frame) == 10 and len(vb.quarantine) == 2
    reasons = dict(
        zip(vb.quarantine["symbol"] + vb.quarantine["date"].astype(str), vb.quarantine["reason"])
    )
    first = reasons["AAA2020-01-06"]
    assert "high < low" in first and "close outside" in first and "open outside" in first
    assert reasons["BBB2020-01-09"] == "negative volume"


def test_dates_are_normalised_and_mixed_formats_parse():
    df = bars()
    df["date"] = pd.to_datetime(df["date"]).dt.strftime("%Y/%m/%d")
    df.loc[0, "date"] = "2020-01-06"
    vb = validate_bars(df)
    assert vb.frame["date"].dtype == "datetime64[ns]"
    assert vb.frame["date"].nunique() == 4


def test_bad_policy_and_non_frame():
    with pytest.raises(ValueError, match="on_bad_rows"):
        validate_bars(bars(), on_bad_rows="ignore")
    with pytest.raises(TypeError):
        validate_bars([1, 2, 3])
    with pytest.raises(DataValidationError, match="no rows"):
        validate_bars(bars().iloc[:0])


def test_csv_keeps_ticker_na_as_text(tmp_path):
    df = bars()
    df.loc[df.symbol == "CCC", "symbol"] = "NA"
    panel = read_csv(write(df, tmp_path, "csv"))
    assert "NA" in list(panel.symbols)
