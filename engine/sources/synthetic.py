"""Synthetic market generator: a seeded, realistic panel of daily bars, built in numpy.

The model, per day t and stock i (all draws from one `numpy.random.Generator(seed)`):

- log return r = beta_i * m_t + gamma_i * s_{t, sector(i)} + sigma_i * e_{t,i} + drift, with
  market m, sector s and idiosyncratic e unit-variance Student-t (``tail_df`` degrees of
  freedom: fat tails); sigma_i lognormal around 1.6 % a day;
- the return splits into an overnight gap (close[t-1] -> open) and an intraday move
  (open -> close); high/low extend max/min(open, close) by half-normal amounts, so
  low <= open, close <= high; vwap is a random mix of (open+close)/2 and (high+low)/2, so
  low <= vwap <= high;
- volume lognormal per stock, higher on days with large moves; ``cap`` = close * shares;
- listings after the start (leading NaN), delistings before the end (trailing NaN) and
  trading halts (NaN runs of 1-10 days) blank every field;
- ``industry`` group labels: up to 11 GICS-like sectors (-1 before a stock's first bar).

The same arguments give the same arrays, bit for bit. The result is checked by the row-level
validation rules (`engine.sources.validate.check_arrays`) like any other source.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from engine.panel import Panel
from engine.sources.validate import check_arrays

__all__ = ["SECTORS", "synthetic"]

SECTORS = (
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
)


def _unit_t(rng: np.random.Generator, df: float, size: Any) -> np.ndarray:
    """Student-t draws scaled to unit variance (df > 2)."""
    return rng.standard_t(df, size=size) * np.sqrt((df - 2.0) / df)


def synthetic(
    n_symbols: int = 500,
    n_dates: int = 1000,
    seed: int = 0,
    *,
    start: str = "2010-01-04",
    n_sectors: int = len(SECTORS),
    tail_df: float = 4.0,
    listing_fraction: float = 0.1,
    delisting_fraction: float = 0.05,
    halts_per_1000_days: float = 1.0,
) -> Panel:
    """A seeded synthetic Panel of ``n_dates`` business days x ``n_symbols`` stocks.

    Fields: open, high, low, close, volume, vwap, cap; group: industry. Symbols are
    ``S0000``, ``S0001``, ...; dates are business days from ``start``.
    """
    if n_symbols < 1 or n_dates < 2:
        raise ValueError("synthetic needs n_symbols >= 1 and n_dates >= 2")
    if not 1 <= n_sectors <= len(SECTORS):
        raise ValueError(f"n_sectors must be in [1, {len(SECTORS)}]")
    if tail_df <= 2:
        raise ValueError("tail_df must be > 2 (finite variance)")
    rng = np.random.default_rng(seed)
    t, n = n_dates, n_symbols
    width = max(4, len(str(n - 1)))
    symbols = [f"S{i:0{width}d}" for i in range(n)]
    dates = pd.bdate_range(start, periods=t)

    # per-stock parameters
    sector = rng.integers(0, n_sectors, size=n)
    beta = rng.normal(1.0, 0.3, size=n)
    gamma = rng.normal(0.8, 0.2, size=n)
    sigma = 0.016 * np.exp(rng.normal(0.0, 0.35, size=n))
    drift = rng.normal(0.0002, 0.0003, size=n)
    price0 = np.exp(rng.normal(np.log(40.0), 0.8, size=n))
    shares = np.exp(rng.normal(np.log(2e8), 1.0, size=n))
    log_volume0 = rng.normal(np.log(1e6), 1.0, size=n)

    # returns: market + sector + idiosyncratic, fat-tailed
    market = 0.01 * _unit_t(rng, tail_df, t)
    sectors = 0.007 * _unit_t(rng, tail_df, (t, n_sectors))
    r = _unit_t(rng, tail_df, (t, n))
    r *= sigma
    r += market[:, None] * beta
    r += sectors[:, sector] * gamma
    r += drift
    r[0] = 0.0
    gap_share = rng.uniform(0.2, 0.4, size=n)
    overnight = r * gap_share + rng.normal(0.0, 0.002, size=(t, n))
    log_close = np.log(price0) + np.cumsum(r, axis=0)
    close = np.exp(log_close)
    open_ = np.empty_like(close)
    open_[0] = close[0] * np.exp(-overnight[0])
    open_[1:] = np.exp(log_close[:-1] + overnight[1:])
    del overnight, log_close
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    spread = 0.5 * sigma
    high = top * np.exp(np.abs(rng.standard_normal((t, n))) * spread)
    low = bottom * np.exp(-np.abs(rng.standard_normal((t, n))) * spread)
    mix = rng.uniform(0.0, 1.0, size=(t, n))
    vwap = mix * (open_ + close) / 2.0 + (1.0 - mix) * (high + low) / 2.0
    np.clip(vwap, low, high, out=vwap)  # guard rounding at the edges
    del mix, top, bottom
    log_volume = log_volume0 + rng.normal(0.0, 0.4, size=(t, n))
    log_volume += 0.25 * np.abs(r) / sigma
    volume = np.floor(np.exp(log_volume))
    cap = close * shares
    del log_volume, r

    # listings, delistings and halts blank every field
    blank = np.zeros((t + 1, n), dtype=np.int32)
    first = np.zeros(n, dtype=np.int64)
    late = rng.random(n) < listing_fraction
    first[late] = rng.integers(1, max(2, int(0.8 * t)), size=int(late.sum()))
    last = np.full(n, t - 1, dtype=np.int64)
    early = rng.random(n) < delisting_fraction
    lo = np.maximum(first[early] + 20, int(0.3 * t))
    last[early] = np.minimum(t - 2, lo + (rng.random(int(early.sum())) * (t - lo)).astype(int))
    rows = np.arange(t)[:, None]
    listed = (rows >= first) & (rows <= last)
    n_halts = rng.poisson(halts_per_1000_days * n * t / 1000.0)
    h_sym = rng.integers(0, n, size=n_halts)
    h_start = rng.integers(0, t, size=n_halts)
    h_end = np.minimum(h_start + rng.geometric(0.35, size=n_halts).clip(max=10), t)
    np.add.at(blank, (h_start, h_sym), 1)
    np.add.at(blank, (h_end, h_sym), -1)
    halted = np.cumsum(blank[:t], axis=0) > 0
    missing = ~listed | halted
    fields = {
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "vwap": vwap,
        "cap": cap,
    }
    for a in fields.values():
        a[missing] = np.nan
    used, code = np.unique(sector, return_inverse=True)  # label only sectors that occur
    trades = ~missing
    first_row = np.where(trades.any(axis=0), trades.argmax(axis=0), t)  # a halt may hide listing
    industry = np.where(rows >= first_row, code, -1).astype(np.int64)
    check_arrays(fields, dates, symbols, source="synthetic: ")
    return Panel(
        dates,
        symbols,
        fields,
        {"industry": industry},
        {"industry": [SECTORS[i] for i in used]},
    )
