"""A straightforward pandas transcription of 46 of the "101 Formulaic Alphas" (the test oracle).

Frames are wide: dates x symbols. Written from the paper's definitions (Kakushadze 2016,
Appendix A), with alphaforge's documented conventions where the paper leaves a choice:

- ``rank(x)``: cross-sectional percentile rank per date (``rank(axis=1, pct=True)``, average
  ties, NaN stays NaN) -- across stocks, not along time.
- time-series operators use ``rolling(d)`` with pandas' default ``min_periods = d``: a full
  window of valid values, else NaN; fractional ``d`` is floored.
- ``ts_rank``: ``rolling(d).rank(pct=True)`` (the current value's percentile in its window).
- ``ts_argmax/ts_argmin``: position 1..d of the extreme counted from the oldest row, first
  occurrence on ties.
- ``decay_linear(x, d)``: weights d, d-1, .., 1 (today heaviest) divided by their sum.
- ``stddev``/``covariance``: ``ddof = 1``; ``correlation``: pandas' rolling ``corr``, NaN where
  either input is constant on the window (std below 1e-12 of its mean's magnitude).
- ``scale(x, a)``: ``a * x / sum(|x|)`` per date; ``signedpower(x, a) = sign(x) * |x|^a``.
- ``indneutralize(x, g)``: ``x`` minus the mean of ``x`` over the stocks of its group that date
  (``g`` holds integer group codes; ``-1`` = no group -> NaN).
- comparisons give 1.0/0.0 and NaN when a side is NaN; ``c ? a : b`` is NaN when ``c`` is NaN;
  a division by zero, a log of a non-positive number, or any ±inf gives NaN.
- ``adv{d}``: the average daily dollar volume, the mean over ``d`` days of ``amount``
  (``vwap * volume`` when the data has no traded-value column; ``compute(adv=...)`` can
  change it), ``returns = close / delay(close, 1) - 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

Frame = pd.DataFrame


# ---------------------------------------------------------------------------------------------
# operators
# ---------------------------------------------------------------------------------------------
def _clean(x: Frame) -> Frame:
    """±inf -> NaN (alphaforge's convention for divisions by zero and overflows)."""
    return x.mask(np.isinf(x.to_numpy(dtype=np.float64)))


def rank(x: Frame) -> Frame:
    return x.rank(axis=1, pct=True, method="average")


def delay(x: Frame, d: int) -> Frame:
    return x.shift(d)


def delta(x: Frame, d: int) -> Frame:
    return x - x.shift(d)


def ts_sum(x: Frame, d: int) -> Frame:
    return x.rolling(d).sum()


def ts_mean(x: Frame, d: int) -> Frame:
    return x.rolling(d).mean()


def stddev(x: Frame, d: int) -> Frame:
    return x.rolling(d).std(ddof=1)


def ts_min(x: Frame, d: int) -> Frame:
    return x.rolling(d).min()


def ts_max(x: Frame, d: int) -> Frame:
    return x.rolling(d).max()


def ts_rank(x: Frame, d: int) -> Frame:
    return x.rolling(d).rank(pct=True, method="average")


def _full_windows(x: Frame, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, S, d) trailing windows (NaN-padded at the start) and a mask of complete ones."""
    a = x.to_numpy(dtype=np.float64)
    w = sliding_window_view(np.vstack([np.full((d - 1, a.shape[1]), np.nan), a]), d, axis=0)
    return w, ~np.isnan(w).any(axis=-1)


def ts_argmax(x: Frame, d: int) -> Frame:
    w, full = _full_windows(x, d)
    pos = np.where(full, np.nan_to_num(w, nan=-np.inf).argmax(axis=-1) + 1.0, np.nan)
    return pd.DataFrame(pos, index=x.index, columns=x.columns)


def ts_argmin(x: Frame, d: int) -> Frame:
    w, full = _full_windows(x, d)
    pos = np.where(full, np.nan_to_num(w, nan=np.inf).argmin(axis=-1) + 1.0, np.nan)
    return pd.DataFrame(pos, index=x.index, columns=x.columns)


def product(x: Frame, d: int) -> Frame:
    w, full = _full_windows(x, d)
    return pd.DataFrame(np.where(full, w.prod(axis=-1), np.nan), index=x.index, columns=x.columns)


def decay_linear(x: Frame, d: int) -> Frame:
    w, full = _full_windows(x, d)
    weights = np.arange(1, d + 1, dtype=np.float64)  # oldest 1 .. newest d
    out = (w * weights).sum(axis=-1) / weights.sum()
    return pd.DataFrame(np.where(full, out, np.nan), index=x.index, columns=x.columns)


def correlation(x: Frame, y: Frame, d: int) -> Frame:
    out = x.rolling(d).corr(y)
    both = x.notna() & y.notna()
    xs, ys = x.where(both), y.where(both)
    flat = (xs.rolling(d).std() <= 1e-12 * xs.rolling(d).mean().abs()) | (
        ys.rolling(d).std() <= 1e-12 * ys.rolling(d).mean().abs()
    )
    return _clean(out.mask(flat))


def covariance(x: Frame, y: Frame, d: int) -> Frame:
    return x.rolling(d).cov(y, ddof=1)


def scale(x: Frame, a: float = 1.0) -> Frame:
    total = x.abs().sum(axis=1, min_count=1)
    return _clean(x.div(total, axis=0) * a)


def signedpower(x: Frame, a: float | Frame) -> Frame:
    return _clean(np.sign(x) * np.abs(x) ** a)


def power(x: Frame, a: float | Frame) -> Frame:
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _clean(x**a)


def log(x: Frame) -> Frame:
    return np.log(x.where(x > 0))


def div(a: Frame | float, b: Frame | float) -> Frame:
    with np.errstate(invalid="ignore", divide="ignore"):
        return _clean(a / b)


def _nan_of(*xs: Frame | float) -> np.ndarray | bool:
    out: np.ndarray | bool = False
    for x in xs:
        if isinstance(x, pd.DataFrame):
            out = out | np.isnan(x.to_numpy(dtype=np.float64))
    return out


def _boolean(op: Callable, a: Frame | float, b: Frame | float) -> Frame:
    like = a if isinstance(a, pd.DataFrame) else b
    value = np.asarray(op(a, b), dtype=np.float64)
    value = np.where(_nan_of(a, b), np.nan, value)
    return pd.DataFrame(value, index=like.index, columns=like.columns)


def lt(a: Frame | float, b: Frame | float) -> Frame:
    return _boolean(lambda p, q: p < q, a, b)


def eq(a: Frame | float, b: Frame | float) -> Frame:
    return _boolean(lambda p, q: p == q, a, b)


def or_(a: Frame, b: Frame) -> Frame:
    return _boolean(lambda p, q: (p != 0) | (q != 0), a, b)


def where(cond: Frame, a: Frame | float, b: Frame | float) -> Frame:
    c = cond.to_numpy(dtype=np.float64)
    av = a.to_numpy(dtype=np.float64) if isinstance(a, pd.DataFrame) else a
    bv = b.to_numpy(dtype=np.float64) if isinstance(b, pd.DataFrame) else b
    out = np.where(np.isnan(c), np.nan, np.where(c != 0, av, bv))
    return pd.DataFrame(out, index=cond.index, columns=cond.columns)


def indneutralize(x: Frame, groups: Frame) -> Frame:
    a = x.to_numpy(dtype=np.float64)
    g = groups.to_numpy()
    out = np.full(a.shape, np.nan)
    for t in range(a.shape[0]):
        for code in np.unique(g[t]):
            if code < 0:
                continue
            members = g[t] == code
            vals = a[t, members]
            ok = ~np.isnan(vals)
            if ok.any():
                out[t, members] = vals - vals[ok].mean()
    return pd.DataFrame(out, index=x.index, columns=x.columns)


# ---------------------------------------------------------------------------------------------
# the alphas
# ---------------------------------------------------------------------------------------------
class Alpha101:
    """The inputs of the alphas (wide frames) and one method per transcribed alpha."""

    def __init__(
        self,
        fields: Mapping[str, Frame],
        groups: Mapping[str, Frame],
        adv: Callable[[Mapping[str, Frame], int], Frame] | None = None,
    ):
        self.open, self.high, self.low = fields["open"], fields["high"], fields["low"]
        self.close, self.volume, self.vwap = fields["close"], fields["volume"], fields["vwap"]
        self.returns = fields["returns"]
        self.cap = fields.get("cap")
        self.fields = fields
        self.groups = groups
        self._adv = adv or (lambda f, d: ts_mean(f.get("amount", f["vwap"] * f["volume"]), d))

    def adv(self, d: int) -> Frame:
        return self._adv(self.fields, d)

    def alpha001(self) -> Frame:
        inner = where(lt(self.returns, 0), stddev(self.returns, 20), self.close)
        return rank(ts_argmax(signedpower(inner, 2.0), 5)) - 0.5

    def alpha002(self) -> Frame:
        a = rank(delta(log(self.volume), 2))
        b = rank(div(self.close - self.open, self.open))
        return -1 * correlation(a, b, 6)

    def alpha003(self) -> Frame:
        return -1 * correlation(rank(self.open), rank(self.volume), 10)

    def alpha004(self) -> Frame:
        return -1 * ts_rank(rank(self.low), 9)

    def alpha005(self) -> Frame:
        a = rank(self.open - ts_sum(self.vwap, 10) / 10)
        return a * (-1 * rank(self.close - self.vwap).abs())

    def alpha006(self) -> Frame:
        return -1 * correlation(self.open, self.volume, 10)

    def alpha007(self) -> Frame:
        d7 = delta(self.close, 7)
        hot = (-1 * ts_rank(d7.abs(), 60)) * np.sign(d7)
        return where(lt(self.adv(20), self.volume), hot, -1.0)

    def alpha008(self) -> Frame:
        x = ts_sum(self.open, 5) * ts_sum(self.returns, 5)
        return -1 * rank(x - delay(x, 10))

    def _alpha009(self, d: int) -> Frame:
        d1 = delta(self.close, 1)
        inner = where(lt(ts_max(d1, d), 0), d1, -1 * d1)
        return where(lt(0, ts_min(d1, d)), d1, inner)

    def alpha009(self) -> Frame:
        return self._alpha009(5)

    def alpha010(self) -> Frame:
        return rank(self._alpha009(4))

    def alpha011(self) -> Frame:
        x = self.vwap - self.close
        return (rank(ts_max(x, 3)) + rank(ts_min(x, 3))) * rank(delta(self.volume, 3))

    def alpha012(self) -> Frame:
        return np.sign(delta(self.volume, 1)) * (-1 * delta(self.close, 1))

    def alpha013(self) -> Frame:
        return -1 * rank(covariance(rank(self.close), rank(self.volume), 5))

    def alpha014(self) -> Frame:
        return (-1 * rank(delta(self.returns, 3))) * correlation(self.open, self.volume, 10)

    def alpha016(self) -> Frame:
        return -1 * rank(covariance(rank(self.high), rank(self.volume), 5))

    def alpha017(self) -> Frame:
        a = -1 * rank(ts_rank(self.close, 10))
        b = rank(delta(delta(self.close, 1), 1))
        c = rank(ts_rank(div(self.volume, self.adv(20)), 5))
        return (a * b) * c

    def alpha018(self) -> Frame:
        co = self.close - self.open
        x = (stddev(co.abs(), 5) + co) + correlation(self.close, self.open, 10)
        return -1 * rank(x)

    def alpha019(self) -> Frame:
        s = -1 * np.sign((self.close - delay(self.close, 7)) + delta(self.close, 7))
        return s * (1 + rank(1 + ts_sum(self.returns, 250)))

    def alpha020(self) -> Frame:
        a = -1 * rank(self.open - delay(self.high, 1))
        b = rank(self.open - delay(self.close, 1))
        c = rank(self.open - delay(self.low, 1))
        return (a * b) * c

    def alpha022(self) -> Frame:
        c = correlation(self.high, self.volume, 5)
        return -1 * (delta(c, 5) * rank(stddev(self.close, 20)))

    def alpha023(self) -> Frame:
        return where(lt(ts_sum(self.high, 20) / 20, self.high), -1 * delta(self.high, 2), 0.0)

    def alpha024(self) -> Frame:
        x = div(delta(ts_sum(self.close, 100) / 100, 100), delay(self.close, 100))
        cond = or_(lt(x, 0.05), eq(x, 0.05))
        return where(cond, -1 * (self.close - ts_min(self.close, 100)), -1 * delta(self.close, 3))

    def alpha025(self) -> Frame:
        return rank((((-1 * self.returns) * self.adv(20)) * self.vwap) * (self.high - self.close))

    def alpha026(self) -> Frame:
        c = correlation(ts_rank(self.volume, 5), ts_rank(self.high, 5), 5)
        return -1 * ts_max(c, 3)

    def alpha028(self) -> Frame:
        x = (correlation(self.adv(20), self.low, 5) + (self.high + self.low) / 2) - self.close
        return scale(x)

    def alpha030(self) -> Frame:
        c, c1, c2, c3 = (delay(self.close, k) for k in range(4))
        s = (np.sign(c - c1) + np.sign(c1 - c2)) + np.sign(c2 - c3)
        return div((1.0 - rank(s)) * ts_sum(self.volume, 5), ts_sum(self.volume, 20))

    def alpha033(self) -> Frame:
        return rank(-1 * power(1 - div(self.open, self.close), 1))

    def alpha034(self) -> Frame:
        a = 1 - rank(div(stddev(self.returns, 2), stddev(self.returns, 5)))
        return rank(a + (1 - rank(delta(self.close, 1))))

    def alpha035(self) -> Frame:
        a = ts_rank(self.volume, 32)
        b = 1 - ts_rank((self.close + self.high) - self.low, 16)
        return (a * b) * (1 - ts_rank(self.returns, 32))

    def alpha038(self) -> Frame:
        return (-1 * rank(ts_rank(self.close, 10))) * rank(div(self.close, self.open))

    def alpha040(self) -> Frame:
        return (-1 * rank(stddev(self.high, 10))) * correlation(self.high, self.volume, 10)

    def alpha041(self) -> Frame:
        return power(self.high * self.low, 0.5) - self.vwap

    def alpha042(self) -> Frame:
        return div(rank(self.vwap - self.close), rank(self.vwap + self.close))

    def alpha043(self) -> Frame:
        return ts_rank(div(self.volume, self.adv(20)), 20) * ts_rank(-1 * delta(self.close, 7), 8)

    def alpha044(self) -> Frame:
        return -1 * correlation(self.high, rank(self.volume), 5)

    def _slope_change(self) -> Frame:
        c10, c20 = delay(self.close, 10), delay(self.close, 20)
        return ((c20 - c10) / 10) - ((c10 - self.close) / 10)

    def alpha046(self) -> Frame:
        x = self._slope_change()
        fall = (-1 * 1) * (self.close - delay(self.close, 1))
        return where(lt(0.25, x), -1.0, where(lt(x, 0), 1.0, fall))

    def alpha049(self) -> Frame:
        fall = (-1 * 1) * (self.close - delay(self.close, 1))
        return where(lt(self._slope_change(), -1 * 0.1), 1.0, fall)

    def alpha051(self) -> Frame:
        fall = (-1 * 1) * (self.close - delay(self.close, 1))
        return where(lt(self._slope_change(), -1 * 0.05), 1.0, fall)

    def alpha053(self) -> Frame:
        x = div((self.close - self.low) - (self.high - self.close), self.close - self.low)
        return -1 * delta(x, 9)

    def alpha054(self) -> Frame:
        num = -1 * ((self.low - self.close) * power(self.open, 5))
        return div(num, (self.low - self.high) * power(self.close, 5))

    def alpha055(self) -> Frame:
        lo, hi = ts_min(self.low, 12), ts_max(self.high, 12)
        k = rank(div(self.close - lo, hi - lo))
        return -1 * correlation(k, rank(self.volume), 6)

    def alpha056(self) -> Frame:
        if self.cap is None:
            raise KeyError("alpha056 needs a 'cap' (market capitalisation) field")
        a = rank(div(ts_sum(self.returns, 10), ts_sum(ts_sum(self.returns, 2), 3)))
        return 0 - (1 * (a * rank(self.returns * self.cap)))

    def alpha057(self) -> Frame:
        d = decay_linear(rank(ts_argmax(self.close, 30)), 2)
        return 0 - (1 * div(self.close - self.vwap, d))

    def alpha058(self) -> Frame:
        n = indneutralize(self.vwap, self.groups["sector"])
        return -1 * ts_rank(decay_linear(correlation(n, self.volume, 3), 7), 5)

    def alpha060(self) -> Frame:
        clv = div((self.close - self.low) - (self.high - self.close), self.high - self.low)
        a = 2 * scale(rank(clv * self.volume))
        return 0 - (1 * (a - scale(rank(ts_argmax(self.close, 10)))))

    def alpha101(self) -> Frame:
        return div(self.close - self.open, (self.high - self.low) + 0.001)


def transcribed() -> list[str]:
    """Names (``alpha001`` ..) of the alphas this module transcribes."""
    return sorted(n for n in vars(Alpha101) if n.startswith("alpha") and n[5:].isdigit())


def compute(
    fields: Mapping[str, Frame],
    groups: Mapping[str, Frame],
    names: list[str] | None = None,
    adv: Callable[[Mapping[str, Frame], int], Frame] | None = None,
) -> dict[str, Frame]:
    """The transcribed alphas (or ``names`` of them) as wide float64 frames."""
    model = Alpha101(fields, groups, adv)
    return {n: getattr(model, n)().astype(np.float64) for n in (names or transcribed())}
