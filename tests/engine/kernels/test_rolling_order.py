"""engine.kernels.rolling_order against naive references, pandas, bottleneck and TA-Lib.

One table, one hypothesis comparison per kernel (see test_rolling for the scheme). Conventions
that differ between peers are converted, or compared where they cannot differ:
  * argmax/argmin: bottleneck reports the lag from the newest row and breaks ties to the newest,
    TA-Lib MAXINDEX/MININDEX the absolute row; both are compared on a tie-free copy;
  * ts_rank: bottleneck's move_rank is 2*(r-1)/(n-1)-1 of the average rank r (0 for n=1);
  * TA-Lib has no NaN and a w-1 row warm-up: gap-free copy, min_periods=w.
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

from engine.kernels import rolling, rolling_order


def _naive_rank(v, win):
    cur = win[-1]
    if np.isnan(cur):
        return np.nan
    return (np.sum(v < cur) + (np.sum(v == cur) + 1) / 2) / len(v)


def _start(t: np.ndarray, w: int) -> np.ndarray:
    return np.maximum(0, t - w + 1)


def _bn_index(fn):
    """bottleneck's lag-from-newest -> our 1..w position from the oldest row of the window."""

    def call(x, w, mc):
        lag = fn(x, w, min_count=mc, axis=0)
        t = np.arange(x.shape[0])[:, None]
        return (t - _start(t, w) + 1) - lag

    return call


def _talib_index(fn):
    """TA-Lib's absolute row index -> our position; its warm-up rows (0) are NaN."""

    def call(c, w):
        idx = fn(c, w).astype(float)
        t = np.arange(len(c))
        pos = idx - (t - w + 1) + 1
        pos[: w - 1] = np.nan
        return pos

    return call


def _bn_rank(x, w, mc):
    # Returned in our scale: r = (b + 1) * (n - 1) / 2 + 1 and pct = r / n.
    b = bn.move_rank(x, w, min_count=mc, axis=0)
    n = np.maximum(rolling.ts_count(x, w), 1)  # b is NaN where the count is 0
    r = np.where(n > 1, (b + 1) * (n - 1) / 2 + 1, 1.0)
    return np.where(np.isnan(b), np.nan, r / n)


@dataclass
class Case:
    naive: object  # (valid_values, window, **kw) -> float
    pandas: object = None
    bottleneck: object = None
    talib: object = None
    tie_free: bool = False  # compare peers on a tie-free copy (tie conventions differ)
    kw: st.SearchStrategy = field(default_factory=lambda: st.just({}))


Q = st.fixed_dictionaries(
    {"q": st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]), st.floats(0.0, 1.0))}
)

CASES: dict[str, Case] = {
    "ts_max": Case(
        naive=lambda v, win: v.max(),
        pandas=lambda r: r.max(),
        bottleneck=lambda x, w, mc: bn.move_max(x, w, min_count=mc, axis=0),
        talib=lambda c, w: talib.MAX(c, w),
    ),
    "ts_min": Case(
        naive=lambda v, win: v.min(),
        pandas=lambda r: r.min(),
        bottleneck=lambda x, w, mc: bn.move_min(x, w, min_count=mc, axis=0),
        talib=lambda c, w: talib.MIN(c, w),
    ),
    "ts_argmax": Case(
        naive=lambda v, win: np.nanargmax(win) + 1.0,
        bottleneck=_bn_index(bn.move_argmax),
        talib=_talib_index(talib.MAXINDEX),
        tie_free=True,
    ),
    "ts_argmin": Case(
        naive=lambda v, win: np.nanargmin(win) + 1.0,
        bottleneck=_bn_index(bn.move_argmin),
        talib=_talib_index(talib.MININDEX),
        tie_free=True,
    ),
    "ts_rank": Case(naive=_naive_rank, pandas=lambda r: r.rank(pct=True), bottleneck=_bn_rank),
    "ts_median": Case(
        naive=lambda v, win: np.median(v),
        pandas=lambda r: r.median(),
        bottleneck=lambda x, w, mc: bn.move_median(x, w, min_count=mc, axis=0),
    ),
    "ts_quantile": Case(
        naive=lambda v, win, q: np.quantile(v, q),
        pandas=lambda r, q: r.quantile(q),
        kw=Q,
    ),
    "ts_mad": Case(naive=lambda v, win: np.mean(np.abs(v - v.mean()))),
}


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_kernel_matches_reference_and_peers(name: str, data: st.DataObject) -> None:
    case = CASES[name]
    x, kind = data.draw(panels())
    w, mp = data.draw(window_args(x.shape[0]))
    kw = data.draw(case.kw)
    minp = w if mp is None else mp
    call = rolling_order.KERNELS[name]

    def ours(a, m=mp):
        return call(a, w, **kw) if m is None else call(a, w, min_periods=m, **kw)

    expected = naive_rolling(x, w, mp, lambda v, win: case.naive(v, win, **kw))
    assert_same(ours(x), expected, atol=1e-13, what=f"{name} vs naive ({kind}, w={w}, mp={mp})")

    def untie(a: np.ndarray) -> np.ndarray:
        if not case.tie_free:
            return a
        return a + 1e-6 * np.random.default_rng(0).random(a.shape) * np.nanmax(np.abs(a), initial=1)

    x = untie(x)
    if case.pandas is not None:
        peer = case.pandas(pd.DataFrame(x).rolling(w, min_periods=minp), **kw).to_numpy()
        assert_same(ours(x), peer, atol=1e-13, what=f"{name} vs pandas")
    if case.bottleneck is not None and w <= x.shape[0]:
        assert_same(ours(x), case.bottleneck(x, w, minp), what=f"{name} vs bottleneck")
    if case.talib is not None and 2 <= w <= x.shape[0]:
        filled = untie(pd.DataFrame(x).ffill().bfill().fillna(1.0).to_numpy())
        peer = np.column_stack([case.talib(filled[:, j].copy(), w) for j in range(x.shape[1])])
        assert_same(ours(filled, w), peer, what=f"{name} vs talib")


def test_argmax_counts_from_oldest_row_and_breaks_ties_to_the_oldest() -> None:
    x = np.array([[1.0], [3.0], [3.0], [2.0], [np.nan], [0.0]])
    assert_same(rolling_order.ts_argmax(x, 3, 1)[:, 0], [1, 2, 2, 1, 1, 1], rtol=0.0)
    assert_same(rolling_order.ts_argmin(x, 3, 1)[:, 0], [1, 1, 1, 3, 2, 3], rtol=0.0)
    assert_same(rolling_order.ts_max(x, 3, 1)[:, 0], [1, 3, 3, 3, 3, 2], rtol=0.0)


def test_rank_is_nan_when_the_current_value_is_nan_and_averages_ties() -> None:
    x = np.array([[2.0], [1.0], [2.0], [np.nan], [2.0]])
    assert_same(rolling_order.ts_rank(x, 3, 1)[:, 0], [1.0, 0.5, 5 / 6, np.nan, 0.75], rtol=0)


@pytest.mark.parametrize("name", sorted(rolling_order.KERNELS))
@pytest.mark.parametrize("bad", [0, -2, 1.5, "5", None, False])
def test_bad_window_raises_clear_value_error(name: str, bad) -> None:
    args = (0.5,) if name == "ts_quantile" else ()
    arrays = (np.ones((4, 2)),) * (2 if name.endswith("_listed") else 1)
    with pytest.raises(ValueError, match="w must be an integer >= 1"):
        rolling_order.KERNELS[name](*arrays, bad, *args)


@pytest.mark.parametrize("q", [-0.1, 1.5, "0.5", None, float("nan")])
def test_bad_quantile_raises(q) -> None:
    with pytest.raises(ValueError, match="q must be"):
        rolling_order.ts_quantile(np.ones((4, 2)), 3, q)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    qs=st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=4),
)
def test_quantiles_in_one_pass_are_each_quantile_bit_for_bit(data: st.DataObject, qs) -> None:
    """The planner computes sibling quantile nodes (QTLU/QTLD) with ts_quantiles: it must give
    exactly the values ts_quantile gives for each q, and those are numpy's quantiles."""
    x, kind = data.draw(panels())
    w, mp = data.draw(window_args(x.shape[0]))
    together = rolling_order.ts_quantiles(x, w, qs, min_periods=mp)
    assert len(together) == len(qs)
    for q, got in zip(qs, together):
        alone = rolling_order.ts_quantile(x, w, q, min_periods=mp)
        np.testing.assert_array_equal(got, alone, err_msg=f"q={q} ({kind}, w={w}, mp={mp})")
        expected = naive_rolling(x, w, mp, lambda v, win, q=q: np.quantile(v, q))
        assert_same(got, expected, atol=1e-13, what=f"ts_quantiles q={q} vs numpy")


def test_quantiles_need_at_least_one_valid_q() -> None:
    with pytest.raises(ValueError, match="at least one"):
        rolling_order.ts_quantiles(np.ones((4, 2)), 3, [])
    with pytest.raises(ValueError, match="q must be in"):
        rolling_order.ts_quantiles(np.ones((4, 2)), 3, [0.2, 1.5])


def test_kernels_table_and_warmup() -> None:
    rolling_order.warmup()
    assert set(rolling_order.KERNELS) == {
        "ts_min", "ts_max", "ts_argmin", "ts_argmax", "ts_argmin_listed", "ts_argmax_listed",
        "ts_rank", "ts_median", "ts_quantile", "ts_mad",
    }  # fmt: skip


# ---- Qlib's IdxMax/IdxMin: numpy's argmax on the raw window, clipped at the listing ---------


def _qlib_idx(x: np.ndarray, listed: np.ndarray | None, w: int, find_max: bool) -> np.ndarray:
    """pandas rolling(w, min_periods=1).apply(lambda v: v.argmax() + 1, raw=True), per
    column, over the rows from the column's listing (first non-NaN ``listed``) on."""
    out = np.full(x.shape, np.nan)
    for j in range(x.shape[1]):
        for t in range(x.shape[0]):
            s = max(0, t - w + 1)
            if listed is not None:
                while s < t and np.isnan(listed[s, j]):
                    s += 1
            win = x[s : t + 1, j]
            if np.isnan(win).all():
                continue
            out[t, j] = (np.argmax(win) if find_max else np.argmin(win)) + 1.0
    return out


def _listing_panel(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(60, 5)), 1)  # ties
    x[rng.random(x.shape) < 0.15] = np.nan  # halts
    listed = np.ones_like(x)
    listed[:17, 1] = np.nan  # listed at row 17
    listed[40:, 2] = np.nan  # delisted after row 39
    listed[:3, 3] = listed[50:, 3] = np.nan
    x[np.isnan(listed)] = np.nan
    return x, listed


@pytest.mark.parametrize("find_max", [True, False])
@pytest.mark.parametrize("w", [1, 3, 10])
def test_nan_first_and_listed_match_numpy_argmax(find_max, w):
    x, listed = _listing_panel(w)
    which = "ts_argmax" if find_max else "ts_argmin"
    got = rolling_order.KERNELS[which](x, w, 1, nan_first=1)
    np.testing.assert_array_equal(got, _qlib_idx(x, None, w, find_max))
    got = rolling_order.KERNELS[which + "_listed"](x, listed, w, 1)
    np.testing.assert_array_equal(got, _qlib_idx(x, listed, w, find_max))
    # the default skips NaN: on NaN-free windows all three agree
    clean = np.arange(40.0).reshape(8, 5) % 7
    ones = np.ones_like(clean)
    a = rolling_order.KERNELS[which](clean, w, 1)
    np.testing.assert_array_equal(a, rolling_order.KERNELS[which](clean, w, 1, nan_first=1))
    np.testing.assert_array_equal(a, rolling_order.KERNELS[which + "_listed"](clean, ones, w, 1))


@pytest.mark.parametrize("w", [1, 4, 9])
def test_qlib_argmax_slices_reproduce_whole_series(w):
    """Window-local: started w-1 rows before any row, the values are the same bits."""
    x, listed = _listing_panel(100 + w)
    full = rolling_order.ts_argmax_listed(x, listed, w, 1)
    full_nf = rolling_order.ts_argmin(x, w, 2 if w > 1 else 1, nan_first=1)
    for t0 in range(0, 60, 7):
        s = max(0, t0 - (w - 1))
        part = rolling_order.ts_argmax_listed(x[s:], listed[s:], w, 1)
        np.testing.assert_array_equal(part[t0 - s :], full[t0:])
        part = rolling_order.ts_argmin(x[s:], w, 2 if w > 1 else 1, nan_first=1)
        np.testing.assert_array_equal(part[t0 - s :], full_nf[t0:])


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    w=st.one_of(st.integers(1, 16), st.integers(60, 75)),  # the scan to w = 10, the deque
    t=st.integers(1, 90),
    find_max=st.booleans(),
)
def test_qlib_argext_matches_numpy_argmax_window_by_window(seed, w, t, find_max):
    """Both kernels (the vectorised scan up to w = 10, the monotonic deque beyond) equal
    numpy's argmax window by window, for any listing pattern: listings, delistings,
    relistings and halts anywhere, values outside the listing included, ties and +-inf."""
    rng = np.random.default_rng(seed)
    x = rng.choice([-np.inf, -1.0, 0.0, 0.5, 1.0, 2.0, np.inf, np.nan], size=(t, 4))
    listed = np.where(rng.random((t, 4)) < 0.3, np.nan, 1.0)
    which = "ts_argmax" if find_max else "ts_argmin"
    got = rolling_order.KERNELS[which + "_listed"](x, listed, w, 1)
    np.testing.assert_array_equal(got, _qlib_idx(x, listed, w, find_max))
    got = rolling_order.KERNELS[which](x, w, 1, nan_first=1)
    np.testing.assert_array_equal(got, _qlib_idx(x, None, w, find_max))
