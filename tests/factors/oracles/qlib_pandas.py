"""A pandas transcription of Qlib's expression operators, computing all 158 Alpha158 features.

Written from Qlib 0.9.7's ``qlib/data/ops.py`` and ``qlib/data/_libs/rolling.pyx`` (MIT), as
the test oracle for ``factors.library.load("alpha158")``. Frames are wide: dates x symbols, one
column per instrument. Qlib's semantics, operator by operator:

- ``Ref($x, N)``: ``shift(N)`` -- counts rows of the instrument's calendar.
- ``Mean Sum Std Max Min Quantile``: ``rolling(N, min_periods=1)`` (pandas, NaN skipped);
  ``Std`` has ``ddof=1`` (one value -> NaN); ``Quantile`` interpolates linearly.
- ``Rank($x, N)``: ``rolling(N, min_periods=1).rank(pct=True)``: percentile rank of the current
  value among the window's valid values, average ties; NaN when the current value is NaN.
- ``IdxMax/IdxMin``: ``rolling(N, min_periods=1).apply(lambda x: x.argmax() + 1, raw=True)``:
  1..N counted from the oldest row of the window (at the start, of the rows available). The raw
  window keeps NaN, and ``np.argmax`` returns the first NaN's position if there is one.
- ``Slope/Rsquare/Resi`` (Cython, ``rolling.pyx``): least squares of the window's valid values
  on their positions 1..N in the window (NaN rows skipped, positions kept); ``Resi`` is the
  residual of the current row (NaN when it is NaN); fewer than two valid values -> NaN.
  ``Rsquare`` is also NaN where ``rolling(N, min_periods=1).std()`` is within 2e-5 of 0.
- ``Corr(a, b, N)``: pandas ``a.rolling(N, min_periods=1).corr(b)`` (pairwise complete), NaN
  where either input's own rolling std is within 2e-5 of 0 (``np.isclose(.., 0, atol=2e-05)``).
- ``Greater/Less``: ``np.maximum/np.minimum`` (NaN propagates); ``Abs Log``: numpy.
- ``>`` ``<``: ``np.greater/np.less`` -> False (0.0) when either side is NaN.
- ``/``: numpy division, ``x/0`` -> ±inf.
- Each instrument's series spans its own first..last row in Qlib's binary store, so windows
  never reach before a stock's first row and nothing is computed outside its span.
- pandas rolling (and so every rolling op but Ref) reads ±inf as NaN.
- dtypes: Qlib's store is float32 and numpy/pandas keep float32 through elementwise ops on
  float32 Series until a rolling op (float64): the input frames are cast to float32 here.

Two modes. ``"qlib"`` is all of the above: Qlib's exact conventions, which the qlib dialect of
``factors.parse`` reproduces (``scripts/compare_qlib.py`` measures both against pyqlib 0.9.7:
same NaN/inf cells, values equal to within one float32 unit in the last place).
``"alphaforge"`` keeps everything except the NaN conventions of the alpha101/python
dialects (a comparison with a NaN side gives NaN, ``ts_argmax`` skips NaN, a division giving
+-inf gives NaN, no instrument spans): what the same formulas give with those policies.

Slope/Rsquare/Resi are computed here by the centred two-pass formula, not Qlib's running sums
(which drift slightly). Outputs are float32, like Qlib's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

Mode = Literal["qlib", "alphaforge"]
WINDOWS = (5, 10, 20, 30, 60)
_STD_ATOL = 2e-05  # Qlib: np.isclose(rolling std, 0, atol=2e-05) -> NaN (Corr, Rsquare)


def _padded_windows(a: np.ndarray, n: int) -> np.ndarray:
    """(T, S) -> (T, S, n) trailing windows; rows before the first are NaN padding."""
    pad = np.full((n - 1, a.shape[1]), np.nan)
    return sliding_window_view(np.vstack([pad, a]), n, axis=0)


class QlibOps:
    """Qlib's operators over wide frames, in one of the two modes (see module docstring)."""

    def __init__(self, index: pd.Index, columns: pd.Index, span: np.ndarray, mode: Mode):
        self.index, self.columns, self.mode = index, columns, mode
        # span[t, s]: row t lies within instrument s's first..last row (Qlib's binary store)
        self.span = span if mode == "qlib" else np.ones_like(span)
        t = np.arange(len(index))[:, None]
        first = np.where(self.span.any(axis=0), self.span.argmax(axis=0), len(index))
        self.first_row = np.broadcast_to(first, span.shape)  # instrument's first row
        self.row = np.broadcast_to(t, span.shape)

    def frame(self, a: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(a, index=self.index, columns=self.columns)

    # element-wise -----------------------------------------------------------------------
    def div(self, a: pd.DataFrame, b: pd.DataFrame | float) -> pd.DataFrame:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = a / b
        if self.mode == "alphaforge":
            out = out.mask(np.isinf(out.to_numpy()))
        return out

    def greater(self, a: pd.DataFrame, b: pd.DataFrame | float) -> pd.DataFrame:
        other = b.to_numpy() if isinstance(b, pd.DataFrame) else b  # a number: weak scalar
        return self.frame(np.maximum(a.to_numpy(), other))

    def less(self, a: pd.DataFrame, b: pd.DataFrame | float) -> pd.DataFrame:
        other = b.to_numpy() if isinstance(b, pd.DataFrame) else b
        return self.frame(np.minimum(a.to_numpy(), other))

    def _compare(self, op: Callable, a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
        x, y = a.to_numpy(), b.to_numpy()
        out = op(x, y).astype(np.float64)  # NaN compares False (Qlib)
        if self.mode == "alphaforge":
            out[np.isnan(x) | np.isnan(y)] = np.nan
        else:
            out[~self.span] = np.nan  # no row outside the instrument's span
        return self.frame(out)

    def gt(self, a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
        return self._compare(np.greater, a, b)

    def lt(self, a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
        return self._compare(np.less, a, b)

    def log(self, a: pd.DataFrame) -> pd.DataFrame:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log(a)
        if self.mode == "alphaforge":
            out = out.mask(np.isinf(out.to_numpy()))
        return out

    # rolling ----------------------------------------------------------------------------
    @staticmethod
    def ref(a: pd.DataFrame, n: int) -> pd.DataFrame:
        return a.shift(n)

    @staticmethod
    def mean(a: pd.DataFrame, n: int) -> pd.DataFrame:
        return a.rolling(n, min_periods=1).mean()

    @staticmethod
    def sum(a: pd.DataFrame, n: int) -> pd.DataFrame:
        return a.rolling(n, min_periods=1).sum()

    @staticmethod
    def std(a: pd.DataFrame, n: int) -> pd.DataFrame:
        return a.rolling(n, min_periods=1).std()

    @staticmethod
    def max(a: pd.DataFrame, n: int) -> pd.DataFrame:
        return a.rolling(n, min_periods=1).max()

    @staticmethod
    def min(a: pd.DataFrame, n: int) -> pd.DataFrame:
        return a.rolling(n, min_periods=1).min()

    @staticmethod
    def quantile(a: pd.DataFrame, n: int, q: float) -> pd.DataFrame:
        return a.rolling(n, min_periods=1).quantile(q, interpolation="linear")

    @staticmethod
    def rank(a: pd.DataFrame, n: int) -> pd.DataFrame:
        return a.rolling(n, min_periods=1).rank(pct=True, method="average")

    def _idx(self, a: pd.DataFrame, n: int, find_max: bool) -> pd.DataFrame:
        x = a.to_numpy(dtype=np.float64)
        x = np.where(np.isinf(x), np.nan, x)  # pandas rolling reads +-inf as NaN
        w = _padded_windows(x, n)
        # rows of the window before the instrument's first row (or before row 0) are not there
        start = np.maximum(self.row - n + 1, self.first_row)  # first row present in the window
        lead = start - (self.row - n + 1)  # window slots before it
        slot = np.arange(n)
        absent = slot[None, None, :] < lead[:, :, None]
        nan = np.isnan(w)
        fill = -np.inf if find_max else np.inf
        body = np.where(absent | nan, fill, w)
        pos = body.argmax(axis=-1) if find_max else body.argmin(axis=-1)
        valid = (~nan & ~absent).any(axis=-1)
        if self.mode == "qlib":  # np.argmax over the raw window returns the first NaN
            has_nan = (nan & ~absent).any(axis=-1)
            first_nan = np.where(nan & ~absent, slot, n).min(axis=-1)
            pos = np.where(has_nan, first_nan, pos)
        out = (pos - lead + 1).astype(np.float64)
        out[~valid] = np.nan
        return self.frame(out)

    def idxmax(self, a: pd.DataFrame, n: int) -> pd.DataFrame:
        return self._idx(a, n, find_max=True)

    def idxmin(self, a: pd.DataFrame, n: int) -> pd.DataFrame:
        return self._idx(a, n, find_max=False)

    def _regression(self, a: pd.DataFrame, n: int) -> tuple[np.ndarray, ...]:
        """Per window: (slope, rsquare, residual of the current row), x = 1..n, NaN skipped."""
        w = _padded_windows(a.to_numpy(dtype=np.float64), n)
        m = ~np.isnan(w)
        cnt = m.sum(axis=-1)
        x = np.arange(1, n + 1, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            xbar = np.where(m, x, 0.0).sum(axis=-1) / cnt
            ybar = np.where(m, w, 0.0).sum(axis=-1) / cnt
            dx = np.where(m, x - xbar[..., None], 0.0)
            dy = np.where(m, w - ybar[..., None], 0.0)
            sxx, sxy, syy = (dx * dx).sum(-1), (dx * dy).sum(-1), (dy * dy).sum(-1)
            slope = sxy / sxx
            rsq = sxy * sxy / (sxx * syy)
            resi = a.to_numpy(dtype=np.float64) - (ybar + slope * (n - xbar))
        few = cnt < 2
        slope[few] = rsq[few] = resi[few] = np.nan
        return slope, rsq, resi

    def slope(self, a: pd.DataFrame, n: int) -> pd.DataFrame:
        return self.frame(self._regression(a, n)[0])

    def rsquare(self, a: pd.DataFrame, n: int) -> pd.DataFrame:
        rsq = self._regression(a, n)[1]
        rsq[np.isclose(self.std(a, n).to_numpy(), 0, atol=_STD_ATOL)] = np.nan
        return self.frame(rsq)

    def resi(self, a: pd.DataFrame, n: int) -> pd.DataFrame:
        return self.frame(self._regression(a, n)[2])

    def corr(self, a: pd.DataFrame, b: pd.DataFrame, n: int) -> pd.DataFrame:
        out = a.rolling(n, min_periods=1).corr(b)
        flat = np.isclose(self.std(a, n).to_numpy(), 0, atol=_STD_ATOL) | np.isclose(
            self.std(b, n).to_numpy(), 0, atol=_STD_ATOL
        )
        return out.mask(flat)


def instrument_span(fields: Mapping[str, pd.DataFrame]) -> np.ndarray:
    """(T, S) bool: row within the instrument's first..last row having any non-NaN field
    (``alpha158`` passes ``close`` alone: Qlib's span as ``scripts/compare_qlib.py`` writes it)."""
    any_value = np.zeros(next(iter(fields.values())).shape, dtype=bool)
    for frame in fields.values():
        any_value |= ~np.isnan(frame.to_numpy(dtype=np.float64))
    seen_before = np.logical_or.accumulate(any_value, axis=0)
    seen_after = np.logical_or.accumulate(any_value[::-1], axis=0)[::-1]
    return seen_before & seen_after


def alpha158(fields: Mapping[str, pd.DataFrame], mode: Mode = "qlib") -> dict[str, pd.DataFrame]:
    """All 158 Alpha158 features (Qlib's names and order) from wide ``open high low close
    volume vwap`` frames, as float32 frames."""
    # Qlib's store is float32, and numpy/pandas compute on float32 Series in float32 until a
    # rolling op (which gives float64): the frames are float32 here for the same dtype flow.
    names = ("open", "high", "low", "close", "volume", "vwap")
    o, h, l, c, v, vw = (fields[k].astype(np.float32) for k in names)
    span = instrument_span({"close": c})
    q = QlibOps(c.index, c.columns, span, mode)
    f: dict[str, pd.DataFrame] = {}

    # kbar
    hl = h - l + 1e-12
    f["KMID"] = q.div(c - o, o)
    f["KLEN"] = q.div(h - l, o)
    f["KMID2"] = q.div(c - o, hl)
    f["KUP"] = q.div(h - q.greater(o, c), o)
    f["KUP2"] = q.div(h - q.greater(o, c), hl)
    f["KLOW"] = q.div(q.less(o, c) - l, o)
    f["KLOW2"] = q.div(q.less(o, c) - l, hl)
    f["KSFT"] = q.div(2 * c - h - l, o)
    f["KSFT2"] = q.div(2 * c - h - l, hl)
    # price
    for name, x in (("OPEN0", o), ("HIGH0", h), ("LOW0", l), ("VWAP0", vw)):
        f[name] = q.div(x, c)

    c1, v1 = q.ref(c, 1), q.ref(v, 1)
    dc, dv = c - c1, v - v1
    up, down = q.gt(c, c1), q.lt(c, c1)
    logv = q.log(v + 1)
    dret = q.div(c, c1)
    dlogv = q.log(q.div(v, v1) + 1)
    wv = np.abs(q.div(c, c1) - 1) * v
    families: list[tuple[str, Callable[[int], pd.DataFrame]]] = [
        ("ROC", lambda d: q.div(q.ref(c, d), c)),
        ("MA", lambda d: q.div(q.mean(c, d), c)),
        ("STD", lambda d: q.div(q.std(c, d), c)),
        ("BETA", lambda d: q.div(q.slope(c, d), c)),
        ("RSQR", lambda d: q.rsquare(c, d)),
        ("RESI", lambda d: q.div(q.resi(c, d), c)),
        ("MAX", lambda d: q.div(q.max(h, d), c)),
        ("MIN", lambda d: q.div(q.min(l, d), c)),
        ("QTLU", lambda d: q.div(q.quantile(c, d, 0.8), c)),
        ("QTLD", lambda d: q.div(q.quantile(c, d, 0.2), c)),
        ("RANK", lambda d: q.rank(c, d)),
        ("RSV", lambda d: q.div(c - q.min(l, d), q.max(h, d) - q.min(l, d) + 1e-12)),
        ("IMAX", lambda d: q.div(q.idxmax(h, d), d)),
        ("IMIN", lambda d: q.div(q.idxmin(l, d), d)),
        ("IMXD", lambda d: q.div(q.idxmax(h, d) - q.idxmin(l, d), d)),
        ("CORR", lambda d: q.corr(c, logv, d)),
        ("CORD", lambda d: q.corr(dret, dlogv, d)),
        ("CNTP", lambda d: q.mean(up, d)),
        ("CNTN", lambda d: q.mean(down, d)),
        ("CNTD", lambda d: q.mean(up, d) - q.mean(down, d)),
        ("SUMP", lambda d: q.div(q.sum(q.greater(dc, 0), d), q.sum(np.abs(dc), d) + 1e-12)),
        ("SUMN", lambda d: q.div(q.sum(q.greater(-dc, 0), d), q.sum(np.abs(dc), d) + 1e-12)),
        (
            "SUMD",
            lambda d: q.div(
                q.sum(q.greater(dc, 0), d) - q.sum(q.greater(-dc, 0), d),
                q.sum(np.abs(dc), d) + 1e-12,
            ),
        ),
        ("VMA", lambda d: q.div(q.mean(v, d), v + 1e-12)),
        ("VSTD", lambda d: q.div(q.std(v, d), v + 1e-12)),
        ("WVMA", lambda d: q.div(q.std(wv, d), q.mean(wv, d) + 1e-12)),
        ("VSUMP", lambda d: q.div(q.sum(q.greater(dv, 0), d), q.sum(np.abs(dv), d) + 1e-12)),
        ("VSUMN", lambda d: q.div(q.sum(q.greater(-dv, 0), d), q.sum(np.abs(dv), d) + 1e-12)),
        (
            "VSUMD",
            lambda d: q.div(
                q.sum(q.greater(dv, 0), d) - q.sum(q.greater(-dv, 0), d),
                q.sum(np.abs(dv), d) + 1e-12,
            ),
        ),
    ]
    for prefix, build in families:
        for d in WINDOWS:
            f[f"{prefix}{d}"] = build(d)

    out = {}
    for name, frame in f.items():
        values = frame.to_numpy(dtype=np.float64)
        if mode == "qlib":
            values = np.where(span, values, np.nan)
        out[name] = pd.DataFrame(values.astype(np.float32), index=c.index, columns=c.columns)
    return out
