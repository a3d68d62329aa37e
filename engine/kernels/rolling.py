"""Rolling-window sums and moments over (time, symbol) panels: the O(1)-per-step kernels.

Owns: delay, delta, ts_sum, ts_mean, ts_count, ts_product, ts_var, ts_std, ts_skew, ts_kurt.
Order statistics (min/max/rank/median/...) live in `rolling_order`, two-series statistics in
`rolling_pair`, recursive averages in `ewm`.

Every kernel sweeps the rows of a block of columns (time on axis 0), keeping one state per
column in small arrays: each row of the block is a contiguous read and the loop over the
columns is made of selects that LLVM vectorises; the per-column arithmetic is the textbook
1-D algorithm. A thin parallel driver hands the blocks to threads with `prange` (see
`_validate.call_blocked`). A column-at-a-time loop over a C-order (T, N) panel reads one cache
line per cell instead (2-5x slower, measured).

Semantics (shared by all rolling kernels, see contracts.md):

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
conditions inside the column loops combine with `&`/`|` (short-circuit `and`/`or` are branches
that stop vectorisation), counts are floats, reductions that must vectorise are integers;
outputs are allocated by numpy in the wrappers (`call_blocked`: huge pages).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.kernels._jit import njit, prange
from engine.kernels._validate import (
    COLUMNS_PER_BLOCK,
    as_panel_array,
    call_blocked,
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
_BLOCK = COLUMNS_PER_BLOCK


# ------------------------------------------------------------------- row-sweep kernels
# Each `_*_block(a, ..., out, j0, j1)` computes columns j0..j1-1 of the panel: it walks the
# rows in order and keeps one state per column in small arrays, so every row of the block is
# one contiguous read and the inner loop over the columns is branch-free where it can be
# (selects, vectorised by LLVM). The per-column arithmetic is the textbook 1-D algorithm.


@njit(nogil=True, error_model="numpy")
def _sum_block(a, w, minp, mean, out, j0, j1):
    # The rows are cut into aligned blocks of w (starting at row 0). The window ending at row t
    # is the tail of the previous block plus the head of the current one, so its sum is
    # (previous block's total - the part of it that already left) + current block so far:
    # three sums that only ever add, each restarted at a block boundary. No drift, no re-read,
    # and the bits depend on the values only, not on where the panel starts (one window after
    # a start on a multiple of w; see engine.kernels.BLOCK_ALIGNED).
    m = j1 - j0
    prev_total = np.zeros(m)
    prev_count = np.zeros(m)  # counts as floats: exact, and the selects vectorise
    left = np.zeros(m)  # rows of the previous block that left the window
    left_count = np.zeros(m)
    cur = np.zeros(m)  # rows of the current block so far
    cur_count = np.zeros(m)
    fminp = float(minp)
    phase = 0  # row offset inside the current block (a counter: no t % w per row)
    for t in range(a.shape[0]):
        if phase == 0:
            for j in range(m):
                prev_total[j] = cur[j]
                prev_count[j] = cur_count[j]
                cur[j] = left[j] = cur_count[j] = left_count[j] = 0.0
        phase = phase + 1 if phase + 1 < w else 0
        row = a[t, j0:j1]
        old_row = a[max(t - w, 0), j0:j1]
        has_old = t >= w
        o = out[t, j0:j1]
        for j in range(m):
            old = old_row[j]
            gone = has_old & (not np.isnan(old))
            left[j] += old if gone else 0.0
            left_count[j] += 1.0 if gone else 0.0
            v = row[j]
            ok = not np.isnan(v)
            cur[j] += v if ok else 0.0
            cur_count[j] += 1.0 if ok else 0.0
            count = prev_count[j] - left_count[j] + cur_count[j]
            total = (prev_total[j] - left[j]) + cur[j]
            value = total / count if mean else total
            o[j] = value if count >= fminp else np.nan


@njit(nogil=True, error_model="numpy")
def _count_block(a, w, minp, out, j0, j1):
    m = j1 - j0
    count = np.zeros(m)
    fminp = float(minp)
    for t in range(a.shape[0]):
        row = a[t, j0:j1]
        old_row = a[max(t - w, 0), j0:j1]
        has_old = t >= w
        o = out[t, j0:j1]
        for j in range(m):
            c = count[j] + (0.0 if np.isnan(row[j]) else 1.0)
            c -= 1.0 if has_old & (not np.isnan(old_row[j])) else 0.0
            count[j] = c
            o[j] = c if c >= fminp else np.nan


@njit(nogil=True, error_model="numpy")
def _product_1d(a, w, minp, out):
    # Product of the non-zero valid values times a zero counter; recomputed from scratch every
    # w rows (and whenever it stops being finite) so multiply/divide drift stays bounded.
    # (Column at a time: no peer computes it, and it is rare in factor libraries.)
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
def _resync_block(a, lo, hi, j0, higher, n, c, s1, s2, s3, s4):
    # `_window_mean` then `_window_sums` for every column of the block at once (same
    # arithmetic, so the same bits), reading the window row by row.
    m = n.shape[0]
    for j in range(m):
        n[j] = 0.0
        c[j] = np.nan  # the first valid value
        s1[j] = 0.0  # sum of x - first
    for k in range(lo, hi):
        row = a[k, j0 : j0 + m]
        for j in range(m):
            x = row[j]
            ok = not np.isnan(x)
            first = c[j] if n[j] > 0.0 else x
            c[j] = first if ok else c[j]
            s1[j] += (x - first) if ok else 0.0
            n[j] += 1.0 if ok else 0.0
    for j in range(m):
        c[j] = c[j] + s1[j] / n[j] if n[j] > 0.0 else 0.0
        n[j] = 0.0
        s1[j] = s2[j] = s3[j] = s4[j] = 0.0
    for k in range(lo, hi):
        row = a[k, j0 : j0 + m]
        for j in range(m):
            x = row[j]
            ok = not np.isnan(x)
            d = x - c[j]
            d2 = d * d
            n[j] += 1.0 if ok else 0.0
            s1[j] += d if ok else 0.0
            s2[j] += d2 if ok else 0.0
            if higher is not None:
                s3[j] += d2 * d if ok else 0.0
                s4[j] += d2 * d2 if ok else 0.0


@njit(nogil=True, error_model="numpy")
def _resync_flagged(a, lo, hi, j0, stat, flag, n, c, s1, s2, s3, s4):
    # Recompute the sums of the flagged columns only, each down its (strided) window.
    for j in range(n.shape[0]):
        if flag[j] != 0.0:
            col = a[:, j0 + j]
            c[j] = _window_mean(col, lo, hi)
            k, s1[j], s2[j], s3[j], s4[j] = _window_sums(col, lo, hi, c[j], stat)
            n[j] = float(k)


@njit(nogil=True, error_model="numpy")
def _moments_block(a, w, minp, ddof, stat, higher, out, j0, j1):
    # `higher` is None for var/std, True for skew/kurt: numba compiles the two apart and
    # prunes the third/fourth power sums from the var/std loops (1.3x), unlike a runtime flag.
    m = j1 - j0
    n = np.zeros(m)  # valid values in the window (a float: exact, and it vectorises)
    c = np.zeros(m)  # shift: the sums are of d = x - c
    s1 = np.zeros(m)
    s2 = np.zeros(m)
    s3 = np.zeros(m)
    s4 = np.zeros(m)
    last = np.full(m, np.nan)  # last valid value and how many valid values in a row equalled it
    run = np.zeros(m)
    flag = np.zeros(m)  # 1.0: this column's sums must be recomputed at this row
    # Digits are lost when the sums are dominated by what they cancel: a leaving value far
    # outside the remaining window, or a shift c far from the window's mean (the window moved
    # away from it). Re-sync that column at once: when the squared distance exceeds 1e4
    # (var/std) or 1e2 (skew/kurt, whose 4th powers square it) window variances. Rare on real
    # data; keeps the sums within ~1e-12 relative.
    ratio = _RESYNC_RATIO if stat <= _STD else np.sqrt(_RESYNC_RATIO)
    fminp = float(minp)
    fddof = float(ddof)
    phase = 0  # rows since the last re-sync of all columns: when 0, i.e. t % w == 0 (no idiv)
    for t in range(a.shape[0]):
        row = a[t, j0:j1]
        o = out[t, j0:j1]
        for j in range(m):
            v = row[j]
            ok = not np.isnan(v)
            run[j] = (run[j] + 1.0 if v == last[j] else 1.0) if ok else run[j]
            last[j] = v if ok else last[j]
        lo = max(0, t - w + 1)
        if phase == 0:  # shift to the window's mean, recompute the sums over the window
            _resync_block(a, lo, t + 1, j0, higher, n, c, s1, s2, s3, s4)
        else:
            # Branch-free update of every column (selects; adding or subtracting 0.0 leaves a
            # sum's bits unchanged, the sums never being -0.0); the rare re-syncs follow.
            # Conditions combine with `&`/`|`: short-circuit `and`/`or` stop vectorisation.
            old_row = a[max(t - w, 0), j0:j1]
            has_old = t >= w
            flagged = 0  # an int: a float sum would stop LLVM vectorising the loop
            for j in range(m):
                old = old_row[j]
                gone = has_old & (not np.isnan(old))
                d = old - c[j]
                d2 = d * d
                nj = n[j] - (1.0 if gone else 0.0)
                t1 = s1[j] - (d if gone else 0.0)
                t2 = s2[j] - (d2 if gone else 0.0)
                if higher is not None:
                    s3[j] -= d2 * d if gone else 0.0
                    s4[j] -= d2 * d2 if gone else 0.0
                big = gone & (nj > 0.0) & (d2 * nj * nj > ratio * (t2 * nj - t1 * t1))
                v = row[j]
                ok = not np.isnan(v)
                restart = ok & (nj == 0.0)  # empty window: restart exactly around this value
                cj = v if restart else c[j]
                t1 = 0.0 if restart else t1
                t2 = 0.0 if restart else t2
                d = v - cj
                d2 = d * d
                nj += 1.0 if ok else 0.0
                t1 += d if ok else 0.0
                t2 += d2 if ok else 0.0
                if higher is not None:
                    s3[j] = 0.0 if restart else s3[j]
                    s4[j] = 0.0 if restart else s4[j]
                    s3[j] += d2 * d if ok else 0.0
                    s4[j] += d2 * d2 if ok else 0.0
                drift = (nj > 1.0) & (t1 * t1 > ratio * (t2 * nj - t1 * t1))
                n[j] = nj
                c[j] = cj
                s1[j] = t1
                s2[j] = t2
                flag[j] = 1.0 if big | drift else 0.0
                flagged += 1 if big | drift else 0
            if flagged > 0:
                _resync_flagged(a, lo, t + 1, j0, stat, flag, n, c, s1, s2, s3, s4)
        phase = phase + 1 if phase + 1 < w else 0
        if higher is not None:
            for j in range(m):
                o[j] = _moment_value(
                    n[j], s1[j], s2[j], s3[j], s4[j], run[j] >= n[j], minp, ddof, stat
                )
        else:  # `_moment_value` for var/std, branch-free
            for j in range(m):
                nj = n[j]
                var = (s2[j] - s1[j] * s1[j] / nj) / (nj - fddof)
                var = 0.0 if (var < 0.0) | (run[j] >= nj) else var
                value = np.sqrt(var) if stat == _STD else var
                o[j] = value if (nj >= fminp) & (nj > 0.0) & (nj - fddof > 0.0) else np.nan


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
# prange over blocks of _BLOCK columns (`call_blocked` hands them out one at a time).


@njit(parallel=True)
def _sum(a, w, minp, mean, out):
    n = a.shape[1]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        _sum_block(a, w, minp, mean, out, b * _BLOCK, min(n, (b + 1) * _BLOCK))
    return out


@njit(parallel=True)
def _count(a, w, minp, out):
    n = a.shape[1]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        _count_block(a, w, minp, out, b * _BLOCK, min(n, (b + 1) * _BLOCK))
    return out


@njit(parallel=True)
def _moments(a, w, minp, ddof, stat, out):
    n = a.shape[1]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        j0, j1 = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        if stat <= _STD:
            _moments_block(a, w, minp, ddof, stat, None, out, j0, j1)
        else:
            _moments_block(a, w, minp, ddof, stat, True, out, j0, j1)
    return out


@njit(parallel=True)
def _product(a, w, minp, out):
    for j in prange(a.shape[1]):
        _product_1d(a[:, j], w, minp, out[:, j])
    return out


# ------------------------------------------------------------------------ public wrappers


def delay(x: np.ndarray, d: int) -> np.ndarray:
    """x shifted down by `d` rows (calendar rows); the first `d` rows are NaN.

    A row copy: numpy's memcpy beats any loop, so this one is not a numba kernel."""
    a = as_panel_array(x, "x")
    d = check_nonnegative_int(d, "d")
    out = np.empty_like(a)
    out[: min(d, len(a))] = np.nan
    if d < len(a):
        out[d:] = a[: len(a) - d]
    return out


def delta(x: np.ndarray, d: int) -> np.ndarray:
    """x - delay(x, d): NaN when either the current or the lagged value is NaN."""
    a = as_panel_array(x, "x")
    d = check_nonnegative_int(d, "d")
    out = np.empty_like(a)
    out[: min(d, len(a))] = np.nan
    if d < len(a):
        np.subtract(a[d:], a[: len(a) - d], out=out[d:])
    return out


def ts_sum(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Sum of the valid values in the last `w` rows."""
    w = check_window(w, "w")
    return call_blocked(_sum, as_panel_array(x, "x"), w, check_min_periods(min_periods, w), False)


def ts_mean(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Mean of the valid values in the last `w` rows."""
    w = check_window(w, "w")
    return call_blocked(_sum, as_panel_array(x, "x"), w, check_min_periods(min_periods, w), True)


def ts_count(x: np.ndarray, w: int, min_periods: int | None = 0) -> np.ndarray:
    """Number of valid (non-NaN) values in the last `w` rows; never NaN unless it is below
    `min_periods` (default 0 or None: never, like pandas `rolling(w, min_periods=0).count()`
    and Qlib `Count`)."""
    w = check_window(w, "w")
    minp = 0 if min_periods is None or min_periods == 0 else check_min_periods(min_periods, w)
    return call_blocked(_count, as_panel_array(x, "x"), w, minp)


def ts_product(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Product of the valid values in the last `w` rows."""
    w = check_window(w, "w")
    return call_with_output(_product, as_panel_array(x, "x"), w, check_min_periods(min_periods, w))


def ts_var(x: np.ndarray, w: int, min_periods: int | None = None, ddof: int = 1) -> np.ndarray:
    """Variance of the valid values in the window, divided by n - ddof (NaN when n <= ddof)."""
    w = check_window(w, "w")
    minp = check_min_periods(min_periods, w)
    return call_blocked(_moments, as_panel_array(x, "x"), w, minp, check_ddof(ddof), _VAR)


def ts_std(x: np.ndarray, w: int, min_periods: int | None = None, ddof: int = 1) -> np.ndarray:
    """Standard deviation: sqrt of `ts_var` with the same ddof."""
    w = check_window(w, "w")
    minp = check_min_periods(min_periods, w)
    return call_blocked(_moments, as_panel_array(x, "x"), w, minp, check_ddof(ddof), _STD)


def ts_skew(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Bias-corrected sample skewness (pandas); NaN below 3 values or for a constant window."""
    w = check_window(w, "w")
    return call_blocked(
        _moments, as_panel_array(x, "x"), w, check_min_periods(min_periods, w), 0, _SKEW
    )


def ts_kurt(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Bias-corrected excess kurtosis (pandas); NaN below 4 values or for a constant window."""
    w = check_window(w, "w")
    return call_blocked(
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
