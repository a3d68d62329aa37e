"""Test helpers for the time-series kernels: realistic random panels and naive references.

The references are deliberately slow and obvious: for every row they cut the window out,
drop the NaNs and apply a two-pass numpy formula. Panels mimic what the kernels see in
production (prices ~100, volumes ~1e7, returns ~0.02) with NaN runs, repeated values and
constant stretches, so ties and degenerate windows are exercised.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import strategies as st

KINDS = ("price", "volume", "returns", "ties")


def make_panel(seed: int, t: int, n: int, kind: str, nan_frac: float) -> np.ndarray:
    """A (t, n) float64 panel of the given kind with NaN runs and constant stretches."""
    rng = np.random.default_rng(seed)
    if kind == "price":
        x = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.02, (t, n)), axis=0)), 2)
    elif kind == "volume":
        x = np.round(1e7 * rng.lognormal(0, 0.5, (t, n)), -2)
    elif kind == "returns":
        x = rng.normal(0.0005, 0.02, (t, n))
    else:  # few distinct levels: many ties
        x = 100.0 + 0.5 * rng.integers(-3, 4, (t, n))
    x[rng.random((t, n)) < nan_frac] = np.nan
    for j in range(n):
        if t > 2 and rng.random() < 0.5:  # a NaN run
            i0 = rng.integers(0, t)
            x[i0 : i0 + rng.integers(1, 12), j] = np.nan
        if t > 2 and rng.random() < 0.4:  # a constant run
            i0 = rng.integers(0, t)
            x[i0 : i0 + rng.integers(2, 15), j] = x[i0, j] if not np.isnan(x[i0, j]) else x[0, j]
    return x


@st.composite
def panels(draw: st.DrawFn, max_t: int = 60, max_n: int = 6, kinds=KINDS, nan=True):
    """(panel, kind): a random panel as `make_panel` builds it."""
    t = draw(st.integers(1, max_t))
    n = draw(st.integers(1, max_n))
    kind = draw(st.sampled_from(kinds))
    nan_frac = draw(st.sampled_from([0.0, 0.1, 0.3])) if nan else 0.0
    x = make_panel(draw(st.integers(0, 2**32 - 1)), t, n, kind, nan_frac)
    if not nan:
        x = np.where(np.isnan(x), 100.0, x)
    return x, kind


@st.composite
def window_args(draw: st.DrawFn, t: int) -> tuple[int, int | None]:
    """(w, min_periods) with w in 1..t+3 and min_periods None or in 1..w."""
    w = draw(st.integers(1, t + 3))
    mp = draw(st.one_of(st.none(), st.integers(1, w)))
    return w, mp


def naive_rolling(
    x: np.ndarray, w: int, min_periods: int | None, fn: Callable[..., float]
) -> np.ndarray:
    """Apply fn(valid_values, window, t_in_window) to every window; NaN below min_periods.

    `window` holds the raw rows (NaN included) from max(0, t-w+1) to t, and the last element
    is the current row.
    """
    mp = w if min_periods is None else min_periods
    out = np.full(x.shape, np.nan)
    for j in range(x.shape[1]):
        for t in range(x.shape[0]):
            window = x[max(0, t - w + 1) : t + 1, j]
            valid = window[~np.isnan(window)]
            if len(valid) >= mp and len(valid) > 0:
                out[t, j] = fn(valid, window)
    return out


def naive_rolling_pair(
    x: np.ndarray, y: np.ndarray, w: int, min_periods: int | None, fn: Callable[..., float]
) -> np.ndarray:
    """fn(xv, yv) over the complete pairs of each window; NaN below min_periods pairs."""
    mp = w if min_periods is None else min_periods
    out = np.full(x.shape, np.nan)
    for j in range(x.shape[1]):
        for t in range(x.shape[0]):
            s = slice(max(0, t - w + 1), t + 1)
            xv, yv = x[s, j], y[s, j]
            ok = ~(np.isnan(xv) | np.isnan(yv))
            if ok.sum() >= mp and ok.sum() > 0:
                out[t, j] = fn(xv[ok], yv[ok])
    return out


def assert_same(
    actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-9, atol: float = 0.0, what: str = ""
) -> None:
    """Equal NaN patterns and values equal to rtol (relative) / atol on the valid region."""
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, what
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    bad = np.argwhere(nan_a != nan_e)
    assert len(bad) == 0, (
        f"{what}: NaN patterns differ at {bad[:5].tolist()}: "
        f"ours {actual[tuple(bad[0])]}, expected {expected[tuple(bad[0])]}"
    )
    ok = ~nan_a
    err = np.abs(actual[ok] - expected[ok])
    lim = atol + rtol * np.abs(expected[ok])
    if err.size and (err > lim).any():
        i = int(np.argmax(err - lim))
        raise AssertionError(
            f"{what}: ours {actual[ok][i]!r} vs expected {expected[ok][i]!r} "
            f"(abs err {err[i]:.3g}, allowed {lim[i]:.3g})"
        )
