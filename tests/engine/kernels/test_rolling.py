"""engine.kernels.rolling against naive references, pandas, bottleneck and TA-Lib.

One table: each kernel with its obviously-correct reference and the peers that compute the same
thing. Every hypothesis example compares ours with all of them:
  * naive (two-pass numpy per window) and pandas `rolling(w, min_periods)` on panels with NaN,
    ties and constant runs, to 1e-9 relative (plus 1e-12 of the data's scale for results ~0);
  * bottleneck `move_*(min_count=min_periods)` when the window fits the panel;
  * TA-Lib, which knows no NaN and has a fixed warm-up of w-1 rows, on a gap-free copy of the
    panel with min_periods=w (TA-Lib's STDDEV/VAR divide by n, so they meet ddof=0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bottleneck as bn
import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from ts_reference import assert_same, naive_rolling, panels, window_args

from engine.kernels import rolling


def _naive_var(v, ddof):
    return np.var(v, ddof=ddof) if len(v) > ddof else np.nan


def _naive_skew(v):
    n = len(v)
    if n < 3 or np.all(v == v[0]):
        return np.nan
    d = v - v.mean()
    m2, m3 = np.mean(d**2), np.mean(d**3)
    return np.sqrt(n * (n - 1)) / (n - 2) * m3 / m2**1.5


def _naive_kurt(v):
    n = len(v)
    if n < 4 or np.all(v == v[0]):
        return np.nan
    d = v - v.mean()
    m2, m4 = np.mean(d**2), np.mean(d**4)
    return ((n * n - 1) * m4 / m2**2 - 3 * (n - 1) ** 2) / ((n - 2) * (n - 3))


@dataclass
class Case:
    naive: object  # (valid_values, window, **kw) -> float
    pandas: object = None  # (DataFrame.rolling, **kw) -> DataFrame
    bottleneck: object = None  # (x, w, min_count, **kw) -> array
    talib: object = None  # (column, w, **kw) -> column, compared with min_periods=w
    power: int = 1  # the result scales like x**power (absolute tolerance on ~0 results)
    kw: st.SearchStrategy = field(default_factory=lambda: st.just({}))


DDOF = st.fixed_dictionaries({"ddof": st.integers(0, 2)})

CASES: dict[str, Case] = {
    "ts_sum": Case(
        naive=lambda v, win: v.sum(),
        pandas=lambda r: r.sum(),
        bottleneck=lambda x, w, mc: bn.move_sum(x, w, min_count=mc, axis=0),
        talib=lambda c, w: talib.SUM(c, w),
    ),
    "ts_mean": Case(
        naive=lambda v, win: v.mean(),
        pandas=lambda r: r.mean(),
        bottleneck=lambda x, w, mc: bn.move_mean(x, w, min_count=mc, axis=0),
        talib=lambda c, w: talib.SMA(c, w),
    ),
    "ts_var": Case(
        naive=lambda v, win, ddof: _naive_var(v, ddof),
        pandas=lambda r, ddof: r.var(ddof=ddof),
        bottleneck=lambda x, w, mc, ddof: bn.move_var(x, w, min_count=mc, axis=0, ddof=ddof),
        talib=lambda c, w, ddof: talib.VAR(c, w, 1.0) if ddof == 0 else None,
        power=2,
        kw=DDOF,
    ),
    "ts_std": Case(
        naive=lambda v, win, ddof: np.sqrt(_naive_var(v, ddof)),
        pandas=lambda r, ddof: r.std(ddof=ddof),
        bottleneck=lambda x, w, mc, ddof: bn.move_std(x, w, min_count=mc, axis=0, ddof=ddof),
        talib=lambda c, w, ddof: talib.STDDEV(c, w, 1.0) if ddof == 0 else None,
        kw=DDOF,
    ),
    "ts_skew": Case(naive=lambda v, win: _naive_skew(v), pandas=lambda r: r.skew(), power=0),
    "ts_kurt": Case(naive=lambda v, win: _naive_kurt(v), pandas=lambda r: r.kurt(), power=0),
    "ts_product": Case(naive=lambda v, win: np.prod(v), power=0),
    "ts_count": Case(naive=lambda v, win: float(len(v)), power=0),
}


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_kernel_matches_reference_and_peers(name: str, data: st.DataObject) -> None:
    case = CASES[name]
    x, kind = data.draw(panels())
    w, mp = data.draw(window_args(x.shape[0]))
    kw = data.draw(case.kw)
    scale = max(1.0, float(np.nanmax(np.abs(x)))) if not np.isnan(x).all() else 1.0
    atol = 1e-12 * scale**case.power * (w if name == "ts_sum" else 1)
    if name == "ts_product":  # relative only: products of up to 63 prices span 1e120
        atol = 0.0
    if name == "ts_count":
        mp = 0 if mp is None else mp
        ours = rolling.ts_count(x, w, mp)
        expected = naive_rolling(x, w, mp, case.naive)
        if mp == 0:
            expected[np.isnan(expected)] = 0.0
            assert_same(ours, pd.DataFrame(x).rolling(w, min_periods=0).count(), what="pandas")
    else:
        ours = rolling.KERNELS[name](x, w, mp, **kw)
        expected = naive_rolling(x, w, mp, lambda v, win: case.naive(v, win, **kw))
    assert_same(ours, expected, atol=atol, what=f"{name} vs naive ({kind}, w={w}, mp={mp})")
    minp = w if mp is None else mp
    rtol = 1e-9

    def peer_ok(ours: np.ndarray, peer: np.ndarray, what: str) -> None:
        if name in ("ts_var", "ts_std"):
            # bottleneck/TA-Lib leave add/remove residue on constant windows (ours are exact
            # zeros): 1e-12 relative in the variance, i.e. 1e-6 in the standard deviation.
            const = ours == 0.0
            slack = 1e-12 * scale**2 if name == "ts_var" else 1e-6 * scale
            assert np.all(np.abs(peer[const]) <= slack), what
            peer = np.where(const, 0.0, peer)
        assert_same(ours, peer, rtol=rtol, atol=atol, what=what)

    if case.pandas is not None:
        peer = case.pandas(pd.DataFrame(x).rolling(w, min_periods=minp), **kw).to_numpy()
        peer_ok(ours, peer, f"{name} vs pandas")
    if case.bottleneck is not None and w <= x.shape[0]:
        peer = case.bottleneck(x, w, minp, **kw)
        if "ddof" in kw:  # bottleneck returns garbage instead of NaN when n <= ddof
            peer[rolling.ts_count(x, w) <= kw["ddof"]] = np.nan
        peer_ok(ours, peer, f"{name} vs bottleneck")
    if case.talib is not None and 2 <= w <= x.shape[0]:
        filled = pd.DataFrame(x).ffill().bfill().fillna(1.0).to_numpy()
        cols = [case.talib(filled[:, j].copy(), w, **kw) for j in range(x.shape[1])]
        if cols[0] is not None:
            ours_full = rolling.KERNELS[name](filled, w, w, **kw)
            peer_ok(ours_full, np.column_stack(cols), f"{name} vs talib")


@settings(max_examples=30, deadline=None)
@given(xk=panels(), d=st.integers(0, 65))
def test_delay_and_delta_match_pandas_shift(xk, d) -> None:
    x, _ = xk
    frame = pd.DataFrame(x)
    assert_same(rolling.delay(x, d), frame.shift(d).to_numpy(), rtol=0.0, what="delay")
    assert_same(rolling.delta(x, d), frame.diff(d).to_numpy(), rtol=0.0, what="delta")


def test_precision_on_far_from_zero_data_matches_two_pass() -> None:
    """Prices ~100 with tiny moves and volumes ~1e7 on a long series: the re-synced shifted
    sums stay at 1e-9 of the two-pass result where raw power sums would not."""
    rng = np.random.default_rng(7)
    price = 100 + np.cumsum(rng.normal(0, 1e-3, (3000, 2)), axis=0)
    volume = 1e7 + rng.normal(0, 1e5, (3000, 2))
    for x in (price, volume):
        for name, fn in (
            ("ts_var", lambda v, win: np.var(v, ddof=1)),
            ("ts_skew", lambda v, win: _naive_skew(v)),
            ("ts_kurt", lambda v, win: _naive_kurt(v)),
        ):
            ours, expected = rolling.KERNELS[name](x, 20), naive_rolling(x, 20, None, fn)
            # skew/kurt are O(1) numbers: near 0, 1e-9 relative is below their conditioning
            assert_same(ours, expected, atol=0.0 if name == "ts_var" else 1e-9, what=name)


def test_constant_window_has_zero_variance_and_nan_skew() -> None:
    x = np.array([[1.0], [2.0], [0.1], [0.1], [np.nan], [0.1], [0.1]])
    assert rolling.ts_var(x, 3, 2)[-1, 0] == 0.0
    assert rolling.ts_std(x, 4, 2)[-1, 0] == 0.0
    assert np.isnan(rolling.ts_skew(x, 4, 3)[-1, 0])
    assert rolling.ts_var(x, 4, 1)[1, 0] == 0.5


BAD_WINDOWS = [0, -1, 2.5, 3.0, "3", True, None]


@pytest.mark.parametrize("name", sorted(set(rolling.KERNELS) - {"delay", "delta"}))
@pytest.mark.parametrize("bad", BAD_WINDOWS)
def test_bad_window_raises_clear_value_error(name: str, bad) -> None:
    x = np.ones((5, 2))
    with pytest.raises(ValueError, match="w must be an integer >= 1"):
        rolling.KERNELS[name](x, bad)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: rolling.ts_mean(x, 3, 0), "min_periods"),
        (lambda x: rolling.ts_mean(x, 3, 4), "min_periods"),
        (lambda x: rolling.ts_std(x, 3, ddof=-1), "ddof"),
        (lambda x: rolling.delay(x, -1), "d must be an integer >= 0"),
        (lambda x: rolling.delta(x, 1.5), "d must be an integer >= 0"),
        (lambda x: rolling.ts_sum(x[:, 0], 3), "x: expected a 2-D"),
        (lambda x: rolling.ts_sum(x.astype(str), 3), "x: expected a numeric"),
    ],
)
def test_bad_arguments_raise_clear_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(np.ones((5, 2)))


def test_kernels_table_and_warmup() -> None:
    rolling.warmup()
    assert set(rolling.KERNELS) == {
        "delay", "delta", "ts_sum", "ts_mean", "ts_count", "ts_product",
        "ts_var", "ts_std", "ts_skew", "ts_kurt",
    }  # fmt: skip
    x = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]])
    out = rolling.ts_mean(x, 2, 1)
    assert out.dtype == np.float64 and out.flags.c_contiguous
    assert_same(out, [[1.0, 2.0], [2.0, 2.0], [4.0, 6.0]], rtol=0.0)
