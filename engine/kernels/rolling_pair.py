"""Rolling two-variable statistics over (time, symbol) panels.

Owns: ts_cov, ts_corr (two series, pairwise-complete observations), and ts_slope, ts_rsquare,
ts_resi (Qlib Slope/Rsquare/Resi: the regression of x on the row position t inside the window,
skipping NaN rows). All are O(1) amortised per row with the same precision scheme as `rolling`:
running sums of products of deviations from shifts (cu, cv), recomputed from scratch around the
window's means every `w` rows (and at once when a leaving term or a shift lies far outside the
window), so raw-scale cancellation (prices ~100, volumes ~1e7) and add/subtract drift stay
bounded to one window. The row position enters as an integer offset from the re-sync row, so its
sums are exact and independent of where the panel starts (block invariance, see `rolling`).

Degenerate windows: ts_corr is NaN when either series is constant on the window's valid pairs
(detected exactly with run counters) or its standard deviation is below 1e-12 times its mean's
magnitude; ts_rsquare is NaN when x is constant; slope/rsquare/resi need 2 valid rows; ts_resi
(the residual of the current row) is NaN when the current x is NaN; ts_cov is exactly 0 when
either side is constant, ts_slope and ts_resi when x is. Because the position
regressor only enters through deviations from its mean, the slope, R^2 and residual do not
depend on whether positions count from 1 or from the panel start.
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
    check_same_shape,
    check_window,
)

__all__ = ["KERNELS", "ts_corr", "ts_cov", "ts_resi", "ts_rsquare", "ts_slope", "warmup"]

# Which statistic `_pair_1d` returns.
_COV, _CORR, _SLOPE, _RSQUARE, _RESI = 0, 1, 2, 3, 4
# Re-sync the running sums when a leaving squared deviation exceeds this many window variances.
_RESYNC_RATIO = 1e4
_TINY_STD = 1e-12  # relative to |mean|: below this a series counts as constant for ts_corr


@njit(nogil=True, error_model="numpy", inline="always")
def _pair_at(x, y, k, on_time):
    # Observation (u, v) of row k: (x, y), or (row position, x) for the regression on time.
    if on_time:
        return float(k), x[k]
    return x[k], y[k]


@njit(nogil=True, error_model="numpy")
def _window_means(x, y, lo, hi, on_time):
    # Means of u and v over the complete pairs of rows lo..hi-1 ((0, 0) if none), accumulated
    # around the first pair: the shifts of a re-sync; they depend on the window only.
    fu = fv = 0.0
    su = sv = 0.0
    n = 0
    for k in range(lo, hi):
        u, v = _pair_at(x, y, k, on_time)
        if not (np.isnan(u) or np.isnan(v)):
            if n == 0:
                fu = u
                fv = v
            su += u - fu
            sv += v - fv
            n += 1
    if n == 0:
        return 0.0, 0.0
    return fu + su / n, fv + sv / n


@njit(nogil=True, error_model="numpy")
def _window_sums(x, y, lo, hi, on_time, cu, cv):
    # From-scratch sums of du, dv and their products over the complete pairs of rows lo..hi-1.
    n = 0
    su = sv = suu = svv = suv = 0.0
    for k in range(lo, hi):
        u, v = _pair_at(x, y, k, on_time)
        if not (np.isnan(u) or np.isnan(v)):
            du = u - cu
            dv = v - cv
            n += 1
            su += du
            sv += dv
            suu += du * du
            svv += dv * dv
            suv += du * dv
    return n, su, sv, suu, svv, suv


@njit(nogil=True, error_model="numpy")
def _pair_1d(x, y, w, minp, ddof, stat, on_time, out):
    # u is the regressor (x for cov/corr, the row position for slope), v the dependent
    # variable (y for cov/corr, x for slope). Sums are of du = u - cu and dv = v - cv.
    on_u = not on_time
    n = 0
    cu = 0.0
    cv = 0.0
    su = sv = suu = svv = suv = 0.0
    last_u = last_v = np.nan  # run counters over complete pairs: exact constant detection
    run_u = run_v = 0
    phase = 0  # rows since the last re-sync: re-sync when 0, i.e. t % w == 0 (no idiv)
    for t in range(x.shape[0]):
        u, v = _pair_at(x, y, t, on_time)
        valid = not (np.isnan(u) or np.isnan(v))
        if valid:
            if u == last_u:
                run_u += 1
            else:
                last_u = u
                run_u = 1
            if v == last_v:
                run_v += 1
            else:
                last_v = v
                run_v = 1
        resync = phase == 0
        phase = phase + 1 if phase + 1 < w else 0
        if not resync:
            if t >= w:
                ku, kv = _pair_at(x, y, t - w, on_time)
                if not (np.isnan(ku) or np.isnan(kv)):
                    du = ku - cu
                    dv = kv - cv
                    n -= 1
                    su -= du
                    sv -= dv
                    suu -= du * du
                    svv -= dv * dv
                    suv -= du * dv
                    # A leaving term far larger than what stays: recompute (see `rolling`).
                    if n > 0:  # d^2 > ratio * (squared deviations) / n, division-free
                        nn = n * n
                        big_u = du * du * nn > _RESYNC_RATIO * (suu * n - su * su)
                        big_v = dv * dv * nn > _RESYNC_RATIO * (svv * n - sv * sv)
                        resync = (big_u and on_u) or big_v
            if valid and not resync:
                if n == 0:  # empty window: restart exactly around this pair
                    cu = u
                    cv = v
                    su = sv = suu = svv = suv = 0.0
                du = u - cu
                dv = v - cv
                n += 1
                su += du
                sv += dv
                suu += du * du
                svv += dv * dv
                suv += du * dv
            if not resync and n > 1:  # a shift far from the window's mean: see `rolling`
                drift_u = on_u and su * su > _RESYNC_RATIO * (suu * n - su * su)
                resync = drift_u or sv * sv > _RESYNC_RATIO * (svv * n - sv * sv)
        if resync:  # shift to the window's means and recompute the sums
            lo = max(0, t - w + 1)
            cu, cv = _window_means(x, y, lo, t + 1, on_time)
            if on_time:  # an integer shift keeps the position sums exact, start-independent
                cu = float(t)
            n, su, sv, suu, svv, suv = _window_sums(x, y, lo, t + 1, on_time, cu, cv)
        out[t] = np.nan
        if n < minp or n == 0:
            continue
        inv_n = 1.0 / n
        suv_c = suv - su * sv * inv_n  # sum of products of deviations from the means
        if stat == _COV:
            if n - ddof > 0:
                out[t] = 0.0 if (on_u and run_u >= n) or run_v >= n else suv_c / (n - ddof)
            continue
        if n < 2:
            continue
        suu_c = suu - su * su * inv_n
        svv_c = svv - sv * sv * inv_n
        if stat == _CORR:
            mean_u = cu + su * inv_n
            mean_v = cv + sv * inv_n
            if run_u >= n or run_v >= n:
                continue
            if suu_c <= _TINY_STD * _TINY_STD * n * mean_u * mean_u or suu_c <= 0.0:
                continue
            if svv_c <= _TINY_STD * _TINY_STD * n * mean_v * mean_v or svv_c <= 0.0:
                continue
            r = suv_c / np.sqrt(suu_c * svv_c)
            out[t] = min(1.0, max(-1.0, r))
        elif stat == _SLOPE:
            out[t] = 0.0 if run_v >= n else suv_c / suu_c
        elif stat == _RSQUARE:
            if run_v >= n or svv_c <= 0.0:
                continue
            out[t] = min(1.0, max(0.0, suv_c * suv_c / (suu_c * svv_c)))
        else:  # _RESI: residual of the current row
            if not valid:
                continue
            if run_v >= n:
                out[t] = 0.0
                continue
            slope = suv_c / suu_c
            out[t] = (v - cv - sv / n) - slope * (u - cu - su / n)


@njit(parallel=True)
def _pair(x, y, w, minp, ddof, stat, on_time, out):
    for j in prange(x.shape[1]):
        _pair_1d(x[:, j], y[:, j], w, minp, ddof, stat, on_time, out[:, j])
    return out


def _two(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = as_panel_array(x, "x")
    b = as_panel_array(y, "y")
    check_same_shape(a, b)
    return a, b


def ts_cov(
    x: np.ndarray, y: np.ndarray, w: int, min_periods: int | None = None, ddof: int = 1
) -> np.ndarray:
    """Covariance of x and y over the window's rows where both are valid, / (n - ddof)."""
    a, b = _two(x, y)
    w = check_window(w, "w")
    return call_with_output(
        _pair, a, b, w, check_min_periods(min_periods, w), check_ddof(ddof), _COV, False
    )


def ts_corr(x: np.ndarray, y: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Pearson correlation over the window's complete pairs; NaN if either side is constant."""
    a, b = _two(x, y)
    w = check_window(w, "w")
    return call_with_output(_pair, a, b, w, check_min_periods(min_periods, w), 0, _CORR, False)


def _on_time(x: np.ndarray, w: int, min_periods: int | None, stat: int) -> np.ndarray:
    a = as_panel_array(x, "x")
    w = check_window(w, "w")
    return call_with_output(_pair, a, a, w, check_min_periods(min_periods, w), 0, stat, True)


def ts_slope(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Slope of the least-squares line of x on the row position in the window (Qlib Slope)."""
    return _on_time(x, w, min_periods, _SLOPE)


def ts_rsquare(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """R^2 of the regression of x on the row position (Qlib Rsquare); NaN for constant x."""
    return _on_time(x, w, min_periods, _RSQUARE)


def ts_resi(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Residual of the current row from the regression of x on the row position (Qlib Resi)."""
    return _on_time(x, w, min_periods, _RESI)


KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "ts_corr": ts_corr,
    "ts_cov": ts_cov,
    "ts_slope": ts_slope,
    "ts_rsquare": ts_rsquare,
    "ts_resi": ts_resi,
}


def warmup() -> None:
    """Compile every kernel of this module once on a tiny panel."""
    x = np.arange(12.0).reshape(6, 2)
    x[2, 0] = np.nan
    ts_corr(x, x[::-1].copy(), 3)
    ts_slope(x, 3)
