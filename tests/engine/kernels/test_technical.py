"""Technical indicators vs TA-Lib and vs naive pandas references, through one table.

Documented semantics under test: each indicator is computed on a symbol's valid bars (rows
where all its inputs are non-NaN) as if the NaN rows were not there, NaN rows give NaN, and
degenerate windows (0/0) give NaN where TA-Lib writes 0. So the expected value of a column is
TA-Lib applied to the column's valid bars, with degenerate cells set to NaN, scattered back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.kernels import technical as te

# ---- expected values on one compressed (gap-free) series --------------------------------------


def _flat(a, n):
    """True where the last n values are all equal (0/0 in range-based indicators)."""
    s = pd.Series(a)
    return (s.rolling(n).max() == s.rolling(n).min()).to_numpy(copy=True)


def _tp(h, l, c):
    return (h + l + c) / 3.0


def _rsi(c, n=14):
    out = talib.RSI(c, n)
    no_move_yet = np.cumsum(np.r_[0.0, np.diff(c)] != 0) == 0
    out[no_move_yet & ~np.isnan(out)] = np.nan
    return out


def _macd_line(c):
    return talib.MACD(c, 12, 26, 1)[0]  # signal=1 starts the line at slow-1, same values


def _pctb(c, n=20, k=2.0):
    up, _, lo = talib.BBANDS(c, n, k, k, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (c - lo) / (up - lo)
    out[_flat(c, n)] = np.nan
    return out


def _range_flat(h, l, n):
    hh = pd.Series(h).rolling(n).max()
    ll = pd.Series(l).rolling(n).min()
    return (hh == ll).to_numpy(copy=True)


def _stoch_k(h, l, c, n=14):
    out = talib.STOCHF(h, l, c, n, 1, 0)[0]
    out[_range_flat(h, l, n)] = np.nan
    return out


def _stoch_d(h, l, c, n=14, m=3):
    out = talib.STOCHF(h, l, c, n, m, 0)[1]
    bad = pd.Series(_range_flat(h, l, n).astype(float)).rolling(m).max().to_numpy(copy=True) > 0
    out[bad] = np.nan
    return out


def _willr(h, l, c, n=14):
    out = talib.WILLR(h, l, c, n)
    out[_range_flat(h, l, n)] = np.nan
    return out


def _cci(h, l, c, n=20):
    out = talib.CCI(h, l, c, n)
    out[_flat(_tp(h, l, c), n)] = np.nan
    return out


def _mfi(h, l, c, v, n=14):
    out = talib.MFI(h, l, c, v, n)
    tp = _tp(h, l, c)
    moved = np.r_[False, np.diff(tp) != 0] & (v != 0)
    no_flow = pd.Series(moved.astype(float)).rolling(n).max().to_numpy(copy=True) == 0
    out[no_flow] = np.nan
    return out


# ---- naive pandas references on the compressed series ------------------------------------------


def _naive_pctb(c, n=20, k=2.0):
    s = pd.Series(c)
    mid, sd = s.rolling(n).mean(), s.rolling(n).std(ddof=0)
    out = ((s - (mid - k * sd)) / (2 * k * sd)).to_numpy(copy=True)
    out[_flat(c, n)] = np.nan
    return out


def _naive_willr(h, l, c, n=14):
    hh = pd.Series(h).rolling(n).max().to_numpy(copy=True)
    ll = pd.Series(l).rolling(n).min().to_numpy(copy=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = -100.0 * (hh - c) / (hh - ll)
    out[hh == ll] = np.nan
    return out


def _naive_stoch_k(h, l, c, n=14):
    return 100.0 + _naive_willr(h, l, c, n)


def _naive_cci(h, l, c, n=20):
    tp = pd.Series(_tp(h, l, c))
    mean = tp.rolling(n).mean()
    mad = tp.rolling(n).apply(lambda w: np.mean(np.abs(w - w.mean())), raw=True)
    out = ((tp - mean) / (0.015 * mad)).to_numpy(copy=True)
    out[_flat(tp.to_numpy(copy=True), n)] = np.nan
    return out


def _naive_obv(c, v):
    step = np.sign(np.r_[0.0, np.diff(c)])
    return v[0] + np.cumsum(np.r_[0.0, (step * v)[1:]])


# name -> (kernel, input names, TA-Lib expectation, naive pandas reference or None, rtol, atol)
# Tolerances: 1e-9 relative everywhere except where TA-Lib's own arithmetic is the weaker one
# (BBANDS' one-pass variance, MFI's running sums) on the adversarial near-flat windows that
# hypothesis finds; test_talib_gap_free_1e9 checks 1e-9 on realistic series for all of them.
HLC = ("high", "low", "close")
TABLE = {
    "rsi": (te.rsi, ("close",), _rsi, None, 1e-9, 1e-9),
    "macd": (te.macd, ("close",), _macd_line, None, 1e-9, 1e-9),
    "macd_signal": (te.macd_signal, ("close",), lambda c: talib.MACD(c)[1], None, 1e-9, 1e-9),
    "macd_hist": (te.macd_hist, ("close",), lambda c: talib.MACD(c)[2], None, 1e-9, 1e-9),
    "atr": (te.atr, HLC, lambda h, l, c: talib.ATR(h, l, c, 14), None, 1e-9, 1e-9),
    "bbands_pctb": (te.bbands_pctb, ("close",), _pctb, _naive_pctb, 1e-6, 1e-7),
    "stoch_k": (te.stoch_k, HLC, _stoch_k, _naive_stoch_k, 1e-9, 1e-9),
    "stoch_d": (te.stoch_d, HLC, _stoch_d, None, 1e-9, 1e-9),
    "willr": (te.willr, HLC, _willr, _naive_willr, 1e-9, 1e-9),
    "cci": (te.cci, HLC, _cci, _naive_cci, 1e-9, 1e-9),
    "obv": (te.obv, ("close", "volume"), talib.OBV, _naive_obv, 1e-9, 1e-9),
    "mfi": (te.mfi, (*HLC, "volume"), _mfi, None, 1e-9, 1e-6),
}


def _scatter(fields, names, f):
    """Apply a 1-D function to each column's valid bars and scatter back (NaN elsewhere)."""
    arrays = [fields[n] for n in names]
    valid = np.logical_and.reduce([~np.isnan(a) for a in arrays])
    out = np.full(arrays[0].shape, np.nan)
    for j in range(out.shape[1]):
        idx = np.flatnonzero(valid[:, j])
        if len(idx):
            out[idx, j] = f(*(np.ascontiguousarray(a[idx, j]) for a in arrays))
    return out


def _check(name, fields, strict_tol=False):
    kernel, names, expect, naive, rtol, atol = TABLE[name]
    if strict_tol:
        rtol, atol = 1e-9, 1e-9
    got = kernel(*(fields[n] for n in names))
    assert got.shape == fields["close"].shape and got.dtype == np.float64
    for label, f, tol in (("TA-Lib", expect, (rtol, atol)), ("naive", naive, (1e-9, 1e-9))):
        if f is None:
            continue
        want = _scatter(fields, names, f)
        np.testing.assert_array_equal(
            np.isnan(got), np.isnan(want), err_msg=f"{name} vs {label}: NaN pattern"
        )
        np.testing.assert_allclose(
            got, want, rtol=tol[0], atol=tol[1], equal_nan=True, err_msg=f"{name} vs {label}"
        )


# ---- generated bars: price steps on a grid (so flat stretches happen), gaps per field ---------
# The grid is binary (1/16) so sums of prices are exact: a typical price (h + l + c) / 3 moves
# only when the bar moved. (TA-Lib 0.8 treats typical-price changes of ~1e-14 relative, i.e.
# rounding noise of a decimal grid, as "no change" in MFI; the kernels compare exactly.)


@st.composite
def bar_panels(draw):
    T = draw(st.integers(1, 70))
    N = draw(st.integers(1, 3))
    ints = lambda lo, hi: hnp.arrays(np.int64, (T, N), elements=st.integers(lo, hi))  # noqa: E731
    close = 100.0 + 0.0625 * np.cumsum(draw(ints(-20, 20)), axis=0)
    fields = {
        "close": close,
        "high": close + 0.0625 * draw(ints(0, 10)),
        "low": close - 0.0625 * draw(ints(0, 10)),
        "volume": draw(ints(0, 10**6)).astype(np.float64),
    }
    gap = st.sampled_from([False] * 8 + [True])
    for name in fields:
        mask = draw(hnp.arrays(np.bool_, (T, N), elements=gap))
        fields[name] = np.where(mask, np.nan, fields[name])
    return fields


def test_table_covers_every_kernel():
    assert set(TABLE) == set(te.KERNELS)


@pytest.mark.parametrize("name", sorted(TABLE))
@settings(max_examples=40, deadline=None)
@given(fields=bar_panels())
def test_matches_talib_and_naive_with_gaps(name, fields):
    _check(name, fields)


def _random_walk(T=400, N=4, seed=7):
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    return {
        "close": close,
        "high": close * (1 + 0.02 * rng.random((T, N))),
        "low": close * (1 - 0.02 * rng.random((T, N))),
        "volume": rng.integers(10**4, 10**7, (T, N)).astype(np.float64),
    }


@pytest.mark.parametrize("name", sorted(TABLE))
def test_talib_gap_free_1e9(name):
    """Realistic gap-free series: every indicator within 1e-9 of TA-Lib, leading NaNs as doc'd."""
    _check(name, _random_walk(), strict_tol=True)


def test_gaps_are_skipped_not_poisoned():
    f = _random_walk(T=120, N=1)
    h, l, c = f["high"].copy(), f["low"].copy(), f["close"].copy()
    h[50] = l[50] = c[50] = np.nan  # the whole bar is missing (a halt)
    ok = ~np.isnan(c[:, 0])
    for ours, theirs in ((te.rsi(c), talib.RSI), (te.atr(h, l, c), talib.ATR)):
        assert np.isnan(ours[50, 0]) and not np.isnan(ours[51:, 0]).any()
        args = (c[ok, 0],) if theirs is talib.RSI else (h[ok, 0], l[ok, 0], c[ok, 0])
        np.testing.assert_allclose(ours[ok, 0], theirs(*args, 14), rtol=1e-12)
    # what TA-Lib does with the gap in place (documented in the module docstring)
    assert (talib.RSI(c[:, 0], 14)[50:] == 0.0).all()
    assert np.isnan(talib.ATR(h[:, 0], l[:, 0], c[:, 0], 14)[50:]).all()


def test_warmup_counts():
    f = _random_walk(T=60, N=1)
    h, l, c, v = f["high"], f["low"], f["close"], f["volume"]
    lead = {
        "rsi": te.rsi(c),
        "macd": te.macd(c),
        "macd_signal": te.macd_signal(c),
        "atr": te.atr(h, l, c),
        "bbands_pctb": te.bbands_pctb(c),
        "stoch_k": te.stoch_k(h, l, c),
        "stoch_d": te.stoch_d(h, l, c),
        "willr": te.willr(h, l, c),
        "cci": te.cci(h, l, c),
        "obv": te.obv(c, v),
        "mfi": te.mfi(h, l, c, v),
    }
    counts = {k: int(np.isnan(a).sum()) for k, a in lead.items()}
    assert counts == {
        "rsi": 14,
        "macd": 25,
        "macd_signal": 33,
        "atr": 14,
        "bbands_pctb": 19,
        "stoch_k": 13,
        "stoch_d": 15,
        "willr": 13,
        "cci": 19,
        "obv": 0,
        "mfi": 14,
    }


def test_flat_windows_give_nan():
    c = np.full((30, 1), 10.0)
    v = np.full((30, 1), 100.0)
    for out in (
        te.rsi(c),
        te.bbands_pctb(c),
        te.stoch_k(c, c, c),
        te.stoch_d(c, c, c),
        te.willr(c, c, c),
        te.cci(c, c, c),
        te.mfi(c, c, c, v),
    ):
        assert np.isnan(out).all()
    assert talib.RSI(c[:, 0], 14)[-1] == 0.0  # TA-Lib's choice, documented as different


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda c: te.rsi(c, 0), "n must be"),
        (lambda c: te.rsi(c, 14.0), "n must be"),
        (lambda c: te.macd(c, 26, 12), "fast must be < slow"),
        (lambda c: te.macd_signal(c, 12, 26, 0), "signal must be"),
        (lambda c: te.bbands_pctb(c, 20, 0.0), "k must be"),
        (lambda c: te.stoch_d(c, c, c, 14, 0), "m must be"),
        (lambda c: te.atr(c, c[:-1], c), "same shape"),
        (lambda c: te.obv(c, c[:, 0]), "volume:"),
        (lambda c: te.mfi(c, c, c, c, -1), "n must be"),
    ],
)
def test_bad_arguments(call, word):
    with pytest.raises(ValueError, match=word):
        call(np.ones((30, 2)))


def test_warmup_runs():
    te.warmup()
