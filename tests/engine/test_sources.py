"""Sources: Parquet, CSV, SQL (SQLite file and real PostgreSQL) and the bundled sample."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from engine.errors import DataValidationError
from engine.panel import Panel
from engine.sources import read_csv, read_parquet, read_sql, sample, synthetic

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    frame = synthetic(12, 60, seed=4).to_frame(["open", "high", "low", "close", "volume"])
    return frame.reset_index().rename(columns={"asset": "symbol"})


@pytest.fixture(scope="module")
def expected(bars) -> Panel:
    return Panel.from_frame(bars)


def assert_same(a: Panel, b: Panel) -> None:
    assert a.dates.equals(b.dates) and a.symbols.equals(b.symbols)
    assert set(a.fields) == set(b.fields)
    for k in a.fields:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a["industry"], b["industry"])
    assert a.group_labels == b.group_labels


def test_parquet_and_csv_give_the_same_panel(tmp_path, bars, expected):
    bars.to_parquet(tmp_path / "b.parquet")
    bars.to_csv(tmp_path / "b.csv", index=False)
    assert_same(read_parquet(tmp_path / "b.parquet"), expected)
    assert_same(read_csv(tmp_path / "b.csv"), expected)
    p = read_parquet(tmp_path / "b.parquet", columns=["date", "symbol", "close"])
    assert list(p.fields) == ["close"]


def test_rename_and_missing_file(tmp_path, bars, expected):
    bars.rename(columns={"date": "Date", "symbol": "Name"}).to_csv(tmp_path / "r.csv", index=False)
    got = read_csv(tmp_path / "r.csv", rename={"Date": "date", "Name": "symbol"})
    assert_same(got, expected)
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_parquet(tmp_path / "nope.parquet")


def write_table(url: str, name: str, bars: pd.DataFrame) -> None:
    engine = sa.create_engine(url)
    try:
        bars.assign(date=bars["date"].dt.date).to_sql(name, engine, index=False)
    finally:
        engine.dispose()


def check_sql(url: str, table: str, bars: pd.DataFrame, expected: Panel) -> None:
    assert_same(read_sql(table, url), expected)
    sub = read_sql(table, url, start="2010-02-01", end="2010-02-10", symbols=["S0003", "S0002"])
    assert list(sub.symbols) == ["S0002", "S0003"]
    assert sub.dates[0] == pd.Timestamp("2010-02-01") and sub.dates[-1] == pd.Timestamp(
        "2010-02-10"
    )
    want = expected.sel("2010-02-01", "2010-02-10", ["S0002", "S0003"])
    np.testing.assert_array_equal(sub["close"], want["close"])
    q = read_sql(f"SELECT * FROM {table} WHERE symbol = :s", url, params={"s": "S0002"})
    assert list(q.symbols) == ["S0002"]
    np.testing.assert_array_equal(q["close"][:, 0], expected.sel(symbols=["S0002"])["close"][:, 0])
    with pytest.raises(ValueError, match="invalid table name"):
        read_sql(f"{table}; DROP TABLE {table}", url)
    with pytest.raises(ValueError, match="invalid table name"):
        read_sql('bars" --', url)
    with pytest.raises(DataValidationError, match="not found"):
        read_sql("no_such_table", url)
    assert_same(read_sql(table, url), expected)  # still there


def test_read_sql_sqlite_file(tmp_path, bars, expected):
    url = f"sqlite:///{tmp_path / 'bars.db'}"
    write_table(url, "bars", bars)
    check_sql(url, "bars", bars, expected)


def test_read_sql_postgresql(pg_url, bars, expected):
    table = f"bars_{uuid.uuid4().hex[:8]}"
    write_table(pg_url, table, bars)
    try:
        check_sql(pg_url, table, bars, expected)
        with pytest.raises(DataValidationError, match=f"public.{table}x' not found") as info:
            read_sql(f"public.{table}x", pg_url)
        assert "postgresql" in str(info.value)  # names where it looked
        secret = sa.engine.make_url(pg_url).set(password="s3cret-pw")
        with pytest.raises(Exception) as info:  # noqa: B017 - any failure must hide it
            read_sql("no_such_table", secret.render_as_string(hide_password=False))
        assert "s3cret-pw" not in str(info.value)
    finally:
        engine = sa.create_engine(pg_url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()


def test_read_sql_validates(tmp_path, bars):
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    bad = bars.copy()
    bad.loc[5, "high"] = bad.loc[5, "low"] - 1
    write_table(url, "bars", bad)
    with pytest.raises(DataValidationError, match="high < low") as info:
        read_sql("bars", url)
    assert bad.loc[5, "symbol"] in str(info.value)
    assert f"{bad.loc[5, 'date']:%Y-%m-%d}" in str(info.value)
    assert read_sql("bars", url, on_bad_rows="drop").quality.n_quarantined == 1


def test_bundled_sample():
    path = REPO / "engine" / "data" / "sp500_sample.parquet"
    size = path.stat().st_size
    print(f"\nsample file: {size / 1e6:.2f} MB")
    assert size < 5_000_000
    assert (REPO / "engine" / "data" / "README.md").read_text().count("Cam Nugent") >= 1
    p = sample()
    assert p.shape[0] == 1259 and 60 <= p.shape[1] <= 100
    assert len(p.group_labels["industry"]) == 11
    q = p.quality
    assert q.n_quarantined >= 3 and q.nan_counts["open"] > 0 and len(q.zero_volume) > 0
    assert q.n_halts > 0 and len(q.listings) > 0
    assert "vwap" in p and np.isfinite(p["vwap"]).any()
