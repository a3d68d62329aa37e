"""Synthetic market: deterministic, realistic structure, consistent bars, fast at scale."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.sources import synthetic
from engine.sources.quality import true_runs


@pytest.fixture(scope="module")
def panel():
    return synthetic(300, 500, seed=7)


def test_same_seed_same_arrays_different_seed_differs(panel):
    again = synthetic(300, 500, seed=7)
    for k in panel.fields:
        np.testing.assert_array_equal(again[k], panel[k])
    np.testing.assert_array_equal(again["industry"], panel["industry"])
    assert again.fingerprint() == panel.fingerprint()
    other = synthetic(300, 500, seed=8)
    assert not np.array_equal(other["close"], panel["close"], equal_nan=True)
    assert other.fingerprint() != panel.fingerprint()


def test_bars_are_consistent(panel):
    o, h, lo, c, v, w = (panel[k] for k in ("open", "high", "low", "close", "volume", "vwap"))
    ok = ~np.isnan(c)
    for a in (o, h, lo, v, w, panel["cap"]):
        np.testing.assert_array_equal(np.isnan(a), ~ok)  # all fields missing together
    assert (lo[ok] <= o[ok]).all() and (o[ok] <= h[ok]).all()
    assert (lo[ok] <= c[ok]).all() and (c[ok] <= h[ok]).all()
    assert (lo[ok] <= w[ok]).all() and (w[ok] <= h[ok]).all()
    assert (lo[ok] > 0).all() and (v[ok] >= 0).all()
    assert (v[ok] == np.floor(v[ok])).all()


def test_listings_delistings_and_halts(panel):
    q = panel.quality
    assert len(q.listings) > 10 and len(q.delistings) > 3
    assert q.n_halts > 0
    listed = ~np.isnan(panel["close"])
    # a halt is a NaN run strictly inside the listed period
    col, start, length = true_runs(~listed)
    inner = (start > 0) & (start + length < panel.shape[0])
    assert inner.sum() > 0 and length[inner].max() <= 10
    ind = panel["industry"]
    first = listed.argmax(axis=0)
    for j in range(0, 300, 37):
        assert (ind[: first[j], j] == -1).all() and (ind[first[j] :, j] >= 0).all()
    assert set(panel.group_labels["industry"]) <= {
        "Communication Services",
        "Consumer Discretionary",
        "Consumer Staples",
        "Energy",
        "Financials",
        "Health Care",
        "Industrials",
        "Information Technology",
        "Materials",
        "Real Estate",
        "Utilities",
    }
    assert len(panel.group_labels["industry"]) == 11


def test_fat_tails_and_factor_structure(panel):
    r = np.log(panel["close"][1:] / panel["close"][:-1])
    z = (r - np.nanmean(r, axis=0)) / np.nanstd(r, axis=0)
    assert np.nanmean(z**4) > 3.5  # excess kurtosis: fatter than normal
    full = ~np.isnan(r).any(axis=0)
    c = np.corrcoef(r[:, full].T)
    assert np.nanmean(c[np.triu_indices_from(c, 1)]) > 0.1  # a market factor
    sector = panel["industry"][-1, full]
    same = sector[:, None] == sector[None, :]
    off = ~np.eye(len(sector), dtype=bool)
    assert c[same & off].mean() > c[~same].mean() + 0.05  # sector factors
    v = np.log(panel["volume"][panel["volume"] > 0])
    assert abs(float(np.mean((v - v.mean()) ** 3) / v.std() ** 3)) < 1.0  # lognormal-ish


def test_arguments_are_checked():
    with pytest.raises(ValueError):
        synthetic(0, 10)
    with pytest.raises(ValueError):
        synthetic(5, 10, tail_df=2.0)


def test_full_size_speed():
    """5000 symbols x 2500 days; the time is printed (benchmarks assert speed, not tests)."""
    t0 = time.perf_counter()
    p = synthetic(5000, 2500, seed=0)
    elapsed = time.perf_counter() - t0
    print(f"\nsynthetic(5000, 2500): {elapsed:.2f} s")
    assert p.shape == (2500, 5000)
    assert p["close"].dtype == np.float64 and p["close"].flags.c_contiguous
