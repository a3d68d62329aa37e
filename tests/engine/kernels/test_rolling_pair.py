"""engine.kernels.rolling_pair against naive references, pandas and TA-Lib.

One table, one hypothesis comparison per kernel (scheme as in test_rolling): naive two-pass
numpy over the complete pairs of each window, pandas `rolling().cov/corr` (pandas also uses
pairwise-complete observations), TA-Lib CORREL / LINEARREG_SLOPE on a gap-free copy with
min_periods=w. Slope/R^2/residual regress x on the row position inside the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ts_reference import KINDS, assert_same, make_panel, naive_rolling_pair, panels, window_args

from engine.kernels import rolling_pair


def _const(v) -> bool:
    return bool(np.all(v == v[0]))


def _flat(v) -> bool:
    """Constant for ts_corr (the kernel's documented rule): all equal, or a standard deviation
    within ``_TINY_STD`` (1e-12) of the mean's magnitude, where the differences are rounding
    (hypothesis found 1e7 and 1e7 + 1.15e-7 in one window: std 5.8e-15 x the mean)."""
    return _const(v) or bool(np.std(v) <= rolling_pair._TINY_STD * abs(np.mean(v)))


def _naive_corr(a, b):
    if len(a) < 2 or _flat(a) or _flat(b):
        return np.nan
    da, db = a - a.mean(), b - b.mean()
    return np.sum(da * db) / np.sqrt(np.sum(da * da) * np.sum(db * db))


def _naive_fit(t, v):
    """(slope, intercept) of the least-squares line of v on t."""
    dt = t - t.mean()
    slope = np.sum(dt * (v - v.mean())) / np.sum(dt * dt)
    return slope, v.mean() - slope * t.mean()


def _naive_slope(t, v):
    return np.nan if len(v) < 2 else _naive_fit(t, v)[0]


def _naive_rsquare(t, v):
    return np.nan if len(v) < 2 or _const(v) else _naive_corr(t, v) ** 2


def _naive_resi(t, v, t_now, v_now):
    if len(v) < 2 or np.isnan(v_now):
        return np.nan
    slope, intercept = _naive_fit(t, v)
    return v_now - (intercept + slope * t_now)


def _on_position(fn, with_current=False):
    """Wrap fn(t, v[, t_now, v_now]) into a naive pair reference on (position, x)."""

    def ref(x, _y, w, mp):
        pos = np.broadcast_to(np.arange(x.shape[0], dtype=float)[:, None], x.shape).copy()
        if not with_current:
            return naive_rolling_pair(pos, x, w, mp, fn)
        out = naive_rolling_pair(pos, x, w, mp, lambda t, v: fn(t, v, t[-1], v[-1]))
        out[np.isnan(x)] = np.nan  # the current row must be valid (t[-1] is then the current)
        return out

    return ref


@dataclass
class Case:
    naive: object  # (x, y, w, min_periods, **kw) -> array
    pandas: object = None  # (x_rolling, y_frame, **kw) -> frame
    talib: object = None  # (x_column, y_column, w) -> column
    power: int = 0  # result scales like (x*y)**power/2 ... absolute tolerance near 0
    two: bool = True  # takes two arrays
    kw: st.SearchStrategy = field(default_factory=lambda: st.just({}))


CASES: dict[str, Case] = {
    "ts_cov": Case(
        naive=lambda x, y, w, mp, ddof: naive_rolling_pair(
            x,
            y,
            w,
            mp,
            lambda a, b: (
                np.sum((a - a.mean()) * (b - b.mean())) / (len(a) - ddof)
                if len(a) > ddof
                else np.nan
            ),
        ),  # fmt: skip
        pandas=lambda r, y, ddof: r.cov(y, ddof=ddof),
        power=2,
        kw=st.fixed_dictionaries({"ddof": st.integers(0, 2)}),
    ),
    "ts_corr": Case(
        naive=lambda x, y, w, mp: naive_rolling_pair(x, y, w, mp, _naive_corr),
        pandas=lambda r, y: r.corr(y),
        talib=lambda a, b, w: talib.CORREL(a, b, w),
    ),
    "ts_slope": Case(
        naive=_on_position(_naive_slope),
        talib=lambda a, b, w: talib.LINEARREG_SLOPE(a, w),
        power=1,
        two=False,
    ),
    "ts_rsquare": Case(naive=_on_position(_naive_rsquare), two=False),
    "ts_resi": Case(naive=_on_position(_naive_resi, with_current=True), power=1, two=False),
}


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_kernel_matches_reference_and_peers(name: str, data: st.DataObject) -> None:
    case = CASES[name]
    x, kind = data.draw(panels())
    y_kind = data.draw(st.sampled_from(KINDS))
    y_nan = data.draw(st.sampled_from([0.0, 0.2]))
    y = make_panel(data.draw(st.integers(0, 2**32 - 1)), *x.shape, y_kind, y_nan)
    w, mp = data.draw(window_args(x.shape[0]))
    kw = data.draw(case.kw)
    minp = w if mp is None else mp
    call = rolling_pair.KERNELS[name]
    arrays = (x, y) if case.two else (x,)

    def ours(*a, m=mp):
        return call(*a, w, min_periods=m, **kw)

    scale = np.nanmax(np.abs(x), initial=1.0) * (
        np.nanmax(np.abs(y), initial=1.0) if case.two else 1
    )
    atol = 1e-12 * (scale if case.power else 1.0)
    expected = case.naive(x, y, w, mp, **kw)
    what = f"{name} vs naive ({kind}/{y_kind}, w={w}, mp={mp})"
    assert_same(ours(*arrays), expected, atol=atol, what=what)
    if case.pandas is not None:
        peer = case.pandas(pd.DataFrame(x).rolling(w, min_periods=minp), pd.DataFrame(y), **kw)
        peer = peer.to_numpy(copy=True)
        if name == "ts_corr":  # pandas divides ~0 by ~0 on constant windows (NaN/inf/junk)
            peer[np.isnan(expected)] = np.nan
        assert_same(ours(*arrays), peer, atol=atol, what=f"{name} vs pandas")
    if case.talib is not None and 2 <= w <= x.shape[0]:
        fx, fy = (pd.DataFrame(a).ffill().bfill().fillna(1.0).to_numpy() for a in (x, y))
        peer = np.column_stack(
            [case.talib(fx[:, j].copy(), fy[:, j].copy(), w) for j in range(x.shape[1])]
        )
        mine = ours(fx, fy, m=w) if case.two else ours(fx, m=w)
        if name == "ts_corr":  # TA-Lib returns junk/0 for constant windows, we return NaN
            peer[np.isnan(mine)] = np.nan
        assert_same(
            mine,
            peer,
            rtol=1e-9,
            atol=1e-9 * (scale if case.power else 1.0),
            what=f"{name} vs talib",
        )


def test_degenerate_windows() -> None:
    x = np.array([[1.0], [1.0], [1.0], [2.0], [np.nan]])
    y = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    assert np.isnan(rolling_pair.ts_corr(x, y, 3)[2, 0])  # x constant
    assert rolling_pair.ts_cov(x, y, 3)[2, 0] == 0.0
    assert rolling_pair.ts_slope(x, 3)[2, 0] == 0.0
    assert np.isnan(rolling_pair.ts_rsquare(x, 3)[2, 0])
    assert np.isnan(rolling_pair.ts_resi(x, 3, 2)[4, 0])  # current x is NaN
    assert_same(rolling_pair.ts_slope(y, 3, 1)[:, 0], [np.nan, 1, 1, 1, 1], rtol=1e-12)


def test_precision_on_prices_and_volumes() -> None:
    rng = np.random.default_rng(3)
    price = 100 + np.cumsum(rng.normal(0, 1e-2, (3000, 3)), axis=0)
    volume = 1e7 + rng.normal(0, 1e5, (3000, 3))
    for name in ("ts_cov", "ts_corr"):
        expected = CASES[name].naive(
            price, volume, 10, None, **({"ddof": 1} if name == "ts_cov" else {})
        )
        assert_same(rolling_pair.KERNELS[name](price, volume, 10), expected, what=name)
    expected = CASES["ts_slope"].naive(volume, None, 20, None)
    assert_same(rolling_pair.ts_slope(volume, 20), expected, what="slope")


def _cov_corr_refs(x, y, w, mp, ddof):
    return (
        CASES["ts_cov"].naive(x, y, w, mp, ddof=ddof),
        CASES["ts_corr"].naive(x, y, w, mp),
    )


@pytest.mark.parametrize("w", [1, 2, 3, 10, 41])
def test_cov_corr_on_a_panel_wider_than_a_column_block(w: int) -> None:
    # ts_cov/ts_corr sweep blocks of columns (_PAIR_BLOCK): several of them, a partial one,
    # columns that are all NaN or start late, and NaN stretches longer than the window.
    n = 2 * rolling_pair._PAIR_BLOCK + 37
    x = make_panel(11, 90, n, "price", 0.1)
    y = make_panel(12, 90, n, "volume", 0.1)
    x[:, 5] = np.nan
    y[:60, 200] = np.nan
    x[20:75, 130] = np.nan
    for mp, ddof in ((None, 1), (1, 0)):
        cov, corr = _cov_corr_refs(x, y, w, mp, ddof)
        scale = np.nanmax(np.abs(x)) * np.nanmax(np.abs(y))
        got = rolling_pair.ts_cov(x, y, w, min_periods=mp, ddof=ddof)
        assert_same(got, cov, atol=1e-12 * scale, what=f"cov w={w} mp={mp}")
        got = rolling_pair.ts_corr(x, y, w, min_periods=mp)
        assert_same(got, corr, atol=1e-12, what=f"corr w={w} mp={mp}")


@pytest.mark.parametrize("offset", range(8))
def test_cov_corr_whatever_the_output_alignment(offset: int) -> None:
    # Rows of 8k columns all start at the same offset in a cache line: the drivers then start
    # the column blocks on a line and stream whole lines out. Every offset gives the same bits.
    x = make_panel(21, 40, 8 * 37, "price", 0.1)
    y = make_panel(22, 40, 8 * 37, "returns", 0.1)
    cov, corr = _cov_corr_refs(x, y, 7, None, 1)
    scale = np.nanmax(np.abs(x)) * np.nanmax(np.abs(y))
    buf = np.empty(x.size + 8)
    out = buf[offset : offset + x.size].reshape(x.shape)
    for driver, args, expected, atol, call in (
        (rolling_pair._cov, (7, 7, 1), cov, 1e-12 * scale, rolling_pair.ts_cov),
        (rolling_pair._corr, (7, 7), corr, 1e-12, rolling_pair.ts_corr),
    ):
        out[:] = 123.0
        driver(x, y, *args, out)
        assert_same(out, expected, atol=atol, what=f"{call.__name__} offset {offset}")
        np.testing.assert_array_equal(out, call(x, y, 7))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), w=st.integers(2, 12))
@example(seed=271, w=3)  # x = 1e7 and 1e7 + 1.15e-7 in one window: constant by _TINY_STD
def test_constant_windows_are_exact(seed: int, w: int) -> None:
    # Few levels and long constant runs on both sides, starting anywhere relative to the
    # blocks of w rows: where either side's valid values are all equal, ts_cov is exactly
    # +0.0 and ts_corr NaN; elsewhere both match the two-pass reference.
    rng = np.random.default_rng(seed)
    t, n = 70, 8
    levels = rng.choice([-3.5, 0.0, 1.0, 100.25, 1e7], size=(t, n))
    x = np.repeat(levels[: t // 5], 5, axis=0)[:t] + (rng.random((t, n)) < 0.3) * rng.random((t, n))
    y = np.repeat(levels[t // 5 :][: t // 7], 7, axis=0)[:t] + (rng.random((t, n)) < 0.3)
    x[rng.random((t, n)) < 0.1] = np.nan
    y[rng.random((t, n)) < 0.1] = np.nan
    cov, corr = _cov_corr_refs(x, y, w, 1, 0)
    got_cov = rolling_pair.ts_cov(x, y, w, min_periods=1, ddof=0)
    got_corr = rolling_pair.ts_corr(x, y, w, min_periods=1)
    const = np.zeros((t, n), dtype=bool)
    for j in range(n):
        for i in range(t):
            s = slice(max(0, i - w + 1), i + 1)
            ok = ~(np.isnan(x[s, j]) | np.isnan(y[s, j]))
            if ok.any():
                const[i, j] = _const(x[s, j][ok]) or _const(y[s, j][ok])
    assert const.sum() > 5 and (~const & ~np.isnan(cov)).sum() > 5  # both kinds occur
    assert np.all(got_cov[const] == 0.0) and not np.signbit(got_cov[const]).any()
    assert np.isnan(got_corr[const]).all()
    scale = np.nanmax(np.abs(x)) * np.nanmax(np.abs(y))
    assert_same(got_cov, cov, atol=1e-12 * scale, what="cov")
    assert_same(got_corr, corr, atol=1e-12, what="corr")


def test_cov_corr_precision_across_jumps() -> None:
    # A level jumps by orders of magnitude with tiny noise around each level: right after a
    # jump the shift is far from the window's mean, which must trigger a recomputation.
    rng = np.random.default_rng(5)
    t = 400
    level = np.repeat([100.0, 1e5, 100.0, 3.0, 1e6], t // 5)[:, None]
    x = level * (1 + 1e-6 * rng.standard_normal((t, 4)))
    y = 1e7 + rng.normal(0, 1.0, (t, 4)) + 1e3 * level
    for w in (5, 10, 17):
        cov, corr = _cov_corr_refs(x, y, w, None, 1)
        assert_same(rolling_pair.ts_cov(x, y, w), cov, what=f"cov w={w}")
        assert_same(rolling_pair.ts_corr(x, y, w), corr, atol=1e-12, what=f"corr w={w}")


@pytest.mark.parametrize("name", sorted(rolling_pair.KERNELS))
@pytest.mark.parametrize("bad", [0, -3, 2.0, "4", None])
def test_bad_window_raises_clear_value_error(name: str, bad) -> None:
    arrays = (np.ones((4, 2)),) * (2 if CASES[name].two else 1)
    with pytest.raises(ValueError, match="w must be an integer >= 1"):
        rolling_pair.KERNELS[name](*arrays, bad)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="same shape"):
        rolling_pair.ts_corr(np.ones((4, 2)), np.ones((4, 3)), 2)


def test_kernels_table_and_warmup() -> None:
    rolling_pair.warmup()
    assert set(rolling_pair.KERNELS) == {"ts_corr", "ts_cov", "ts_slope", "ts_rsquare", "ts_resi"}
