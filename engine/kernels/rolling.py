"""Rolling-window sums and moments over (time, symbol) panels: the O(1)-per-step kernels.

Owns: delay, delta, ts_sum, ts_mean, ts_count, ts_product, ts_var, ts_std, ts_skew, ts_kurt.
Order statistics (min/max/rank/median/...) live in `rolling_order`, two-series statistics in
`rolling_pair`, recursive averages in `ewm`.

Every kernel is a plain loop over one column (time on axis 0); a thin parallel driver runs it
over the symbols with `prange`. Semantics (shared by all rolling kernels, see contracts.md):

* the window at row t is rows t-w+1..t; rows before the start count as missing;
* NaN inside the window is skipped, `min_periods` counts the valid values, and the result is NaN
  when fewer than `min_periods` are present (so `min_periods=1` gives pandas'
  `rolling(w, min_periods=1)`).

Precision. Sums and means split the window at the aligned block boundary (multiples of `w`) into
the tail of the previous block and the head of the current one, each kept by additions only (see
`_sum_1d`): O(1) per row, no drift, and no re-read of the window. Moments (var/std/skew/kurt)
keep running power sums of deviations d = x - c from a shift c: raw power sums cancel
catastrophically on data far from zero (prices ~100, volumes ~1e7), deviations from a nearby c
do not. Every `w` rows the sums are recomputed from scratch around c = the window's mean
(amortised O(1)), which also bounds the add/subtract drift to one window; they are recomputed at
once when a leaving value, or the shift c itself, lies more than 100 (var/std) or 10 (skew/kurt)
standard deviations of the window away from its mean, since the sums would then be dominated by
what they cancel (rare on real data; a constant window has c = its value and never triggers it).
Welford's add/remove update was the alternative; it needs a division per step and still drifts,
so it would need the same re-sync. Result: within 1e-9 relative (skew and kurt near 0: 1e-9
absolute) of a two-pass reference, tested. A window whose valid values are all equal is detected
exactly with a run counter: its variance is exactly 0, its skew/kurt NaN (pandas).

Block invariance. Every re-sync depends on the window's values only, so a computation started
on a row that is a multiple of `w` gives the same bits as the whole-panel one from one window
after its start on (`engine.kernels.BLOCK_ALIGNED`; tested in test_block_invariance.py).

Speed notes: compiled with error_model="numpy" (divisions are guarded, so no per-division zero
check); re-syncs are scheduled with a row counter, not `t % w` (an integer division per row);
outputs are allocated by numpy in the wrappers (`call_with_output`: huge pages).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.kernels._jit import njit, prange
from engine.kernels._validate import (
    as_panel_array,
    call_with_output,
    check_ddof,
    check_min_periods,
    check_nonnegative_int,
    check_window,
)

__all__ = [
    "KERNELS",
    "delay",
    "delta",
    "ts_count",
    "ts_kurt",
    "ts_mean",
    "ts_product",
    "ts_skew",
    "ts_std",
    "ts_sum",
    "ts_var",
    "warmup",
]

# Which statistic `_moments_1d` returns.
_VAR, _STD, _SKEW, _KURT = 0, 1, 2, 3
# Re-sync the running sums when a leaving squared deviation exceeds this many window variances.
_RESYNC_RATIO = 1e4


# --------------------------------------------------------------------------- 1-D loops


@njit(nogil=True, error_model="numpy")
def _delay_1d(a, d, out):
    for t in range(a.shape[0]):
        out[t] = a[t - d] if t >= d else np.nan


@njit(nogil=True, error_model="numpy")
def _sum_1d(a, w, minp, mean, out):
    # The rows are cut into aligned blocks of w (starting at row 0). The window ending at row t
    # is the tail of the previous block plus the head of the current one, so its sum is
    # (previous block's total - the part of it that already left) + current block so far:
    # three sums that only ever add, each restarted at a block boundary. No drift, no re-read,
    # and the bits depend on the values only, not on where the panel starts (one window after
    # a start on a multiple of w; see engine.kernels.BLOCK_ALIGNED).
    prev_total = 0.0
    prev_count = 0
    left = 0.0  # rows of the previous block that left the window
    left_count = 0
    cur = 0.0  # rows of the current block so far
    cur_count = 0
    phase = 0  # row offset inside the current block (a counter: no t % w per row)
    for t in range(a.shape[0]):
        if phase == 0:
            prev_total, prev_count = cur, cur_count
            cur = left = 0.0
            cur_count = left_count = 0
        phase = phase + 1 if phase + 1 < w else 0
        v = a[t]
        if not np.isnan(v):
            cur += v
            cur_count += 1
        if t >= w:
            old = a[t - w]
            if not np.isnan(old):
                left += old
                left_count += 1
        count = prev_count - left_count + cur_count
        if count >= minp:
            total = (prev_total - left) + cur
            out[t] = total / count if mean else total
        else:
            out[t] = np.nan


@njit(nogil=True, error_model="numpy")
def _count_1d(a, w, minp, out):
    count = 0
    for t in range(a.shape[0]):
        if not np.isnan(a[t]):
            count += 1
        if t >= w and not np.isnan(a[t - w]):
            count -= 1
        out[t] = count if count >= minp else np.nan


@njit(nogil=True, error_model="numpy")
def _product_1d(a, w, minp, out):
    # Product of the non-zero valid values times a zero counter; recomputed from scratch every
    # w rows (and whenever it stops being finite) so multiply/divide drift stays bounded.
    prod = 1.0
    zeros = 0
    count = 0
    phase = 0  # rows since the last re-sync: re-sync when 0, i.e. t % w == 0 (no idiv)
    for t in range(a.shape[0]):
        due = phase == 0
        phase = phase + 1 if phase + 1 < w else 0
        if due or not np.isfinite(prod):
            prod = 1.0
            zeros = 0
            count = 0
            for k in range(max(0, t - w + 1), t + 1):
                v = a[k]
                if not np.isnan(v):
                    count += 1
                    if v == 0.0:
                        zeros += 1
                    else:
                        prod *= v
        else:
            old = a[t - w] if t >= w else np.nan
            if not np.isnan(old):
                count -= 1
                if old == 0.0:
                    zeros -= 1
                else:
                    prod /= old
            v = a[t]
            if not np.isnan(v):
                count += 1
                if v == 0.0:
                    zeros += 1
                else:
                    prod *= v
        if count >= minp:
            out[t] = 0.0 if zeros > 0 else prod
        else:
            out[t] = np.nan


@njit(nogil=True, error_model="numpy")
def _window_mean(a, lo, hi):
    # Mean of the valid values of a[lo:hi] (0.0 if none), accumulated around the first of them
    # so it is accurate far from zero: the shift of a re-sync. It depends on the window only,
    # which keeps results independent of where a panel starts.
    first = np.nan
    total = 0.0
    n = 0
    for k in range(lo, hi):
        x = a[k]
        if not np.isnan(x):
            if n == 0:
                first = x
            total += x - first
            n += 1
    return first + total / n if n > 0 else 0.0


@njit(nogil=True, error_model="numpy")
def _window_sums(a, lo, hi, c, stat):
    # From-scratch power sums of d = x - c over the valid values of a[lo:hi].
    n = 0
    s1 = s2 = s3 = s4 = 0.0
    for k in range(lo, hi):
        x = a[k]
        if not np.isnan(x):
            d = x - c
            d2 = d * d
            n += 1
            s1 += d
            s2 += d2
            if stat >= _SKEW:
                s3 += d2 * d
                s4 += d2 * d2
    return n, s1, s2, s3, s4


@njit(nogil=True, error_model="numpy")
def _moments_1d(a, w, minp, ddof, stat, out):
    n = 0  # valid values in the window
    c = 0.0  # shift: the sums are of d = x - c
    s1 = s2 = s3 = s4 = 0.0
    last = np.nan  # last valid value and how many valid values in a row equalled it
    run = 0
    phase = 0  # rows since the last re-sync: re-sync when 0, i.e. t % w == 0 (no idiv)
    for t in range(a.shape[0]):
        v = a[t]
        if not np.isnan(v):
            if v == last:
                run += 1
            else:
                last = v
                run = 1
        resync = phase == 0
        phase = phase + 1 if phase + 1 < w else 0
        # Digits are lost when the sums are dominated by what they cancel: a leaving value far
        # outside the remaining window, or a shift c far from the window's mean (the window
        # moved away from it). Re-sync then at once: when the squared distance exceeds 1e4
        # (var/std) or 1e2 (skew/kurt, whose 4th powers square it) window variances. Rare on
        # real data; keeps the sums within ~1e-12 relative.
        ratio = _RESYNC_RATIO if stat <= _STD else np.sqrt(_RESYNC_RATIO)
        if not resync:
            if t >= w and not np.isnan(a[t - w]):
                d = a[t - w] - c
                d2 = d * d
                n -= 1
                s1 -= d
                s2 -= d2
                if stat >= _SKEW:
                    s3 -= d2 * d
                    s4 -= d2 * d2
                resync = n > 0 and d2 * n * n > ratio * (s2 * n - s1 * s1)
            if not resync and not np.isnan(v):
                if n == 0:  # empty window: restart exactly around this value
                    c = v
                    s1 = s2 = s3 = s4 = 0.0
                d = v - c
                d2 = d * d
                n += 1
                s1 += d
                s2 += d2
                if stat >= _SKEW:
                    s3 += d2 * d
                    s4 += d2 * d2
            if not resync and n > 1:
                resync = s1 * s1 > ratio * (s2 * n - s1 * s1)
        if resync:  # shift to the window's mean, recompute the sums over the window
            lo = max(0, t - w + 1)
            c = _window_mean(a, lo, t + 1)
            n, s1, s2, s3, s4 = _window_sums(a, lo, t + 1, c, stat)
        out[t] = _moment_value(n, s1, s2, s3, s4, run >= n, minp, ddof, stat)


@njit(nogil=True, error_model="numpy", inline="always")
def _moment_value(n, s1, s2, s3, s4, constant, minp, ddof, stat):
    # pandas' definitions: var/std with ddof, bias-corrected sample skew (G1) and excess
    # kurtosis (G2), all from the central moments of the valid values.
    if n < minp or n == 0:
        return np.nan
    if stat <= _STD:
        if n - ddof <= 0:
            return np.nan
        if constant:
            return 0.0
        var = (s2 - s1 * s1 / n) / (n - ddof)
        if var < 0.0:
            var = 0.0
        return var if stat == _VAR else np.sqrt(var)
    if constant or n < stat + 1:  # skew needs 3 values, kurt 4
        return np.nan
    mean = s1 / n
    e2 = s2 / n
    m2 = e2 - mean * mean
    if m2 <= 0.0:
        return np.nan
    e3 = s3 / n
    m3 = e3 - 3.0 * mean * e2 + 2.0 * mean * mean * mean
    if stat == _SKEW:
        return np.sqrt(n * (n - 1.0)) / (n - 2.0) * m3 / (m2 * np.sqrt(m2))
    e4 = s4 / n
    m4 = e4 - 4.0 * mean * e3 + 6.0 * mean * mean * e2 - 3.0 * mean * mean * mean * mean
    g2 = (n * n - 1.0) * m4 / (m2 * m2) - 3.0 * (n - 1.0) * (n - 1.0)
    return g2 / ((n - 2.0) * (n - 3.0))


# --------------------------------------------------------------------- parallel drivers


@njit(parallel=True)
def _delay(a, d, out):
    for j in prange(a.shape[1]):
        _delay_1d(a[:, j], d, out[:, j])
    return out


@njit(parallel=True)
def _sum(a, w, minp, mean, out):
    for j in prange(a.shape[1]):
        _sum_1d(a[:, j], w, minp, mean, out[:, j])
    return out


@njit(parallel=True)
def _count(a, w, minp, out):
    for j in prange(a.shape[1]):
        _count_1d(a[:, j], w, minp, out[:, j])
    return out


@njit(parallel=True)
def _product(a, w, minp, out):
    for j in prange(a.shape[1]):
        _product_1d(a[:, j], w, minp, out[:, j])
    return out


@njit(parallel=True)
def _moments(a, w, minp, ddof, stat, out):
    for j in prange(a.shape[1]):
        _moments_1d(a[:, j], w, minp, ddof, stat, out[:, j])
    return out


# ------------------------------------------------------------------------ public wrappers


def delay(x: np.ndarray, d: int) -> np.ndarray:
    """x shifted down by `d` rows (calendar rows); the first `d` rows are NaN."""
    return call_with_output(_delay, as_panel_array(x, "x"), check_nonnegative_int(d, "d"))


def delta(x: np.ndarray, d: int) -> np.ndarray:
    """x - delay(x, d): NaN when either the current or the lagged value is NaN."""
    a = as_panel_array(x, "x")
    return a - call_with_output(_delay, a, check_nonnegative_int(d, "d"))


def ts_sum(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Sum of the valid values in the last `w` rows."""
    w = check_window(w, "w")
    return call_with_output(
        _sum, as_panel_array(x, "x"), w, check_min_periods(min_periods, w), False
    )


def ts_mean(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Mean of the valid values in the last `w` rows."""
    w = check_window(w, "w")
    return call_with_output(
        _sum, as_panel_array(x, "x"), w, check_min_periods(min_periods, w), True
    )


def ts_count(x: np.ndarray, w: int, min_periods: int | None = 0) -> np.ndarray:
    """Number of valid (non-NaN) values in the last `w` rows; never NaN unless it is below
    `min_periods` (default 0 or None: never, like pandas `rolling(w, min_periods=0).count()`
    and Qlib `Count`)."""
    w = check_window(w, "w")
    minp = 0 if min_periods is None or min_periods == 0 else check_min_periods(min_periods, w)
    return call_with_output(_count, as_panel_array(x, "x"), w, minp)


def ts_product(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Product of the valid values in the last `w` rows."""
    w = check_window(w, "w")
    return call_with_output(_product, as_panel_array(x, "x"), w, check_min_periods(min_periods, w))


def ts_var(x: np.ndarray, w: int, min_periods: int | None = None, ddof: int = 1) -> np.ndarray:
    """Variance of the valid values in the window, divided by n - ddof (NaN when n <= ddof)."""
    w = check_window(w, "w")
    minp = check_min_periods(min_periods, w)
    return call_with_output(_moments, as_panel_array(x, "x"), w, minp, check_ddof(ddof), _VAR)


def ts_std(x: np.ndarray, w: int, min_periods: int | None = None, ddof: int = 1) -> np.ndarray:
    """Standard deviation: sqrt of `ts_var` with the same ddof."""
    w = check_window(w, "w")
    minp = check_min_periods(min_periods, w)
    return call_with_output(_moments, as_panel_array(x, "x"), w, minp, check_ddof(ddof), _STD)


def ts_skew(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Bias-corrected sample skewness (pandas); NaN below 3 values or for a constant window."""
    w = check_window(w, "w")
    return call_with_output(
        _moments, as_panel_array(x, "x"), w, check_min_periods(min_periods, w), 0, _SKEW
    )


def ts_kurt(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Bias-corrected excess kurtosis (pandas); NaN below 4 values or for a constant window."""
    w = check_window(w, "w")
    return call_with_output(
        _moments, as_panel_array(x, "x"), w, check_min_periods(min_periods, w), 0, _KURT
    )


KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "delay": delay,
    "delta": delta,
    "ts_sum": ts_sum,
    "ts_mean": ts_mean,
    "ts_count": ts_count,
    "ts_product": ts_product,
    "ts_var": ts_var,
    "ts_std": ts_std,
    "ts_skew": ts_skew,
    "ts_kurt": ts_kurt,
}


def warmup() -> None:
    """Compile every kernel of this module once on a tiny panel."""
    x = np.arange(12.0).reshape(6, 2)
    x[2, 0] = np.nan
    delay(x, 1)
    for name in ("ts_sum", "ts_mean", "ts_count", "ts_product", "ts_var", "ts_skew"):
        KERNELS[name](x, 3)
