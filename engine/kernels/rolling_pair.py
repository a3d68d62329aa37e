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
    COLUMNS_PER_BLOCK,
    as_panel_array,
    call_blocked,
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
_BLOCK = COLUMNS_PER_BLOCK


@njit(nogil=True, error_model="numpy", inline="always")
def _pair_at(x, y, k, on_time):
    # Observation (u, v) of row k: (x, y); for the regression on time the wrappers pass the row
    # positions as x (a broadcast view) and the series as y.
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
def _resync_block(x, y, lo, hi, j0, jx, on_time, n, cu, cv, su, sv, suu, svv, suv):
    # `_window_means` then `_window_sums` for every column of the block at once (the same
    # arithmetic, so the same bits), reading the window row by row. On the time regressor the
    # shift cu is the integer row `hi - 1` (see `_pair_block`).
    m = n.shape[0]
    for j in range(m):
        n[j] = 0.0
        cu[j] = cv[j] = 0.0  # the first complete pair
        su[j] = sv[j] = 0.0  # sums of its differences from it
    for k in range(lo, hi):
        xr = x[k, jx : jx + m]
        yr = y[k, j0 : j0 + m]
        for j in range(m):
            u = xr[j]
            v = yr[j]
            ok = not (np.isnan(u) | np.isnan(v))
            first = ok & (n[j] == 0.0)
            cu[j] = u if first else cu[j]
            cv[j] = v if first else cv[j]
            su[j] += (u - cu[j]) if ok else 0.0
            sv[j] += (v - cv[j]) if ok else 0.0
            n[j] += 1.0 if ok else 0.0
    for j in range(m):
        nj = n[j]
        cu[j] = float(hi - 1) if on_time else (cu[j] + su[j] / nj if nj > 0.0 else 0.0)
        cv[j] = cv[j] + sv[j] / nj if nj > 0.0 else 0.0
        n[j] = su[j] = sv[j] = suu[j] = svv[j] = suv[j] = 0.0
    for k in range(lo, hi):
        xr = x[k, jx : jx + m]
        yr = y[k, j0 : j0 + m]
        for j in range(m):
            u = xr[j]
            v = yr[j]
            ok = not (np.isnan(u) | np.isnan(v))
            du = u - cu[j]
            dv = v - cv[j]
            n[j] += 1.0 if ok else 0.0
            su[j] += du if ok else 0.0
            sv[j] += dv if ok else 0.0
            suu[j] += du * du if ok else 0.0
            svv[j] += dv * dv if ok else 0.0
            suv[j] += du * dv if ok else 0.0


@njit(nogil=True, error_model="numpy")
def _resync_flagged(x, y, lo, hi, j0, jx, on_time, flag, n, cu, cv, su, sv, suu, svv, suv):
    # Recompute the sums of the flagged columns only, each down its (strided) window.
    for j in range(n.shape[0]):
        if flag[j] != 0.0:
            xc = x[:, jx + j]
            yc = y[:, j0 + j]
            cu[j], cv[j] = _window_means(xc, yc, lo, hi, on_time)
            if on_time:
                cu[j] = float(hi - 1)
            k, su[j], sv[j], suu[j], svv[j], suv[j] = _window_sums(
                xc, yc, lo, hi, on_time, cu[j], cv[j]
            )
            n[j] = float(k)


@njit(nogil=True, error_model="numpy", inline="always")
def _pair_value(n, cu, cv, su, sv, suu, svv, suv, const_u, const_v, u, v, valid, minp, ddof, stat):
    # The statistic of one column from its sums (u, v, valid: the current row, for _RESI).
    if n < minp or n == 0:
        return np.nan
    inv_n = 1.0 / n
    suv_c = suv - su * sv * inv_n  # sum of products of deviations from the means
    if stat == _COV:
        if n - ddof > 0:
            return 0.0 if const_u or const_v else suv_c / (n - ddof)
        return np.nan
    if n < 2:
        return np.nan
    suu_c = suu - su * su * inv_n
    svv_c = svv - sv * sv * inv_n
    if stat == _SLOPE:
        return 0.0 if const_v else suv_c / suu_c
    if stat == _RSQUARE:
        if const_v or svv_c <= 0.0:
            return np.nan
        return min(1.0, max(0.0, suv_c * suv_c / (suu_c * svv_c)))
    # _RESI: residual of the current row
    if not valid:
        return np.nan
    if const_v:
        return 0.0
    slope = suv_c / suu_c
    return (v - cv - sv / n) - slope * (u - cu - su / n)


@njit(nogil=True, error_model="numpy")
def _pair_block(x, y, w, minp, ddof, stat, on_time, out, j0, j1):
    # u = x is the regressor, v = y the dependent variable (for slope/rsquare/resi: x holds the
    # row positions, y the series; `on_time` says so). Sums are of du = u - cu and dv = v - cv. One
    # state per column, updated branch-free for all columns of the block row by row; the rare
    # per-column re-syncs follow the update (see `rolling._moments_block`). Conditions combine
    # with `&`/`|`, not `and`/`or`: short-circuit branches stop LLVM vectorising (1.5x).
    m = j1 - j0
    on_u = not on_time
    jx = 0 if on_time else j0  # on the time regressor x is a (T, >= m) block of row positions
    n = np.zeros(m)
    cu = np.zeros(m)
    cv = np.zeros(m)
    su = np.zeros(m)
    sv = np.zeros(m)
    suu = np.zeros(m)
    svv = np.zeros(m)
    suv = np.zeros(m)
    last_u = np.full(m, np.nan)  # run counters over complete pairs: exact constant detection
    last_v = np.full(m, np.nan)
    run_u = np.zeros(m)
    run_v = np.zeros(m)
    flag = np.zeros(m)
    fminp = float(minp)
    tiny2 = _TINY_STD * _TINY_STD
    phase = 0  # rows since the last re-sync of all columns: when 0, i.e. t % w == 0 (no idiv)
    for t in range(x.shape[0]):
        xr = x[t, jx : jx + m]
        yr = y[t, j0:j1]
        for j in range(m if stat != _COV else 0):  # ts_cov: fused into its output loop
            u = xr[j]
            v = yr[j]
            valid = not (np.isnan(u) | np.isnan(v))
            run_u[j] = (run_u[j] + 1.0 if u == last_u[j] else 1.0) if valid else run_u[j]
            last_u[j] = u if valid else last_u[j]
            run_v[j] = (run_v[j] + 1.0 if v == last_v[j] else 1.0) if valid else run_v[j]
            last_v[j] = v if valid else last_v[j]
        lo = max(0, t - w + 1)
        if phase == 0:  # shift to the window's means and recompute the sums
            _resync_block(x, y, lo, t + 1, j0, jx, on_time, n, cu, cv, su, sv, suu, svv, suv)
        else:
            # Branch-free (subtracting or adding 0.0 leaves the sums' bits unchanged: they
            # are never -0.0); `flagged` is an int: a float sum would stop vectorisation.
            has_old = t >= w
            ko = max(t - w, 0)
            xo = x[ko, jx : jx + m]
            yo = y[ko, j0:j1]
            flagged = 0
            for j in range(m):
                ku = xo[j]
                kv = yo[j]
                gone = has_old & (not (np.isnan(ku) | np.isnan(kv)))
                du = ku - cu[j]
                dv = kv - cv[j]
                nj = n[j] - (1.0 if gone else 0.0)
                t_u = su[j] - (du if gone else 0.0)
                t_v = sv[j] - (dv if gone else 0.0)
                t_uu = suu[j] - (du * du if gone else 0.0)
                t_vv = svv[j] - (dv * dv if gone else 0.0)
                t_uv = suv[j] - (du * dv if gone else 0.0)
                # A leaving term far larger than what stays: recompute (see `rolling`).
                nn = nj * nj
                big_u = on_u & (du * du * nn > _RESYNC_RATIO * (t_uu * nj - t_u * t_u))
                big_v = dv * dv * nn > _RESYNC_RATIO * (t_vv * nj - t_v * t_v)
                big = gone & (nj > 0.0) & (big_u | big_v)
                u = xr[j]
                v = yr[j]
                ok = not (np.isnan(u) | np.isnan(v))
                restart = ok & (nj == 0.0)  # empty window: restart exactly around this pair
                c_u = u if restart else cu[j]
                c_v = v if restart else cv[j]
                du = u - c_u
                dv = v - c_v
                nj += 1.0 if ok else 0.0
                t_u = (0.0 if restart else t_u) + (du if ok else 0.0)
                t_v = (0.0 if restart else t_v) + (dv if ok else 0.0)
                t_uu = (0.0 if restart else t_uu) + (du * du if ok else 0.0)
                t_vv = (0.0 if restart else t_vv) + (dv * dv if ok else 0.0)
                t_uv = (0.0 if restart else t_uv) + (du * dv if ok else 0.0)
                drift_u = on_u & (t_u * t_u > _RESYNC_RATIO * (t_uu * nj - t_u * t_u))
                drift_v = t_v * t_v > _RESYNC_RATIO * (t_vv * nj - t_v * t_v)
                resync = big | ((nj > 1.0) & (drift_u | drift_v))
                n[j] = nj
                cu[j] = c_u
                cv[j] = c_v
                su[j] = t_u
                sv[j] = t_v
                suu[j] = t_uu
                svv[j] = t_vv
                suv[j] = t_uv
                flag[j] = 1.0 if resync else 0.0
                flagged += 1 if resync else 0
            if flagged > 0:
                _resync_flagged(
                    x, y, lo, t + 1, j0, jx, on_time, flag, n, cu, cv, su, sv, suu, svv, suv
                )
        phase = phase + 1 if phase + 1 < w else 0
        o = out[t, j0:j1]
        if stat == _CORR:  # branch-free: the kernel of ts_corr, the common case
            for j in range(m):
                nj = n[j]
                inv_n = 1.0 / nj
                suv_c = suv[j] - su[j] * sv[j] * inv_n
                suu_c = suu[j] - su[j] * su[j] * inv_n
                svv_c = svv[j] - sv[j] * sv[j] * inv_n
                mean_u = cu[j] + su[j] * inv_n
                mean_v = cv[j] + sv[j] * inv_n
                r = suv_c / np.sqrt(suu_c * svv_c)
                r = min(1.0, max(-1.0, r))
                ok = (nj >= fminp) & (nj >= 2.0) & (run_u[j] < nj) & (run_v[j] < nj)
                ok = ok & (suu_c > tiny2 * nj * mean_u * mean_u) & (suu_c > 0.0)
                ok = ok & (svv_c > tiny2 * nj * mean_v * mean_v) & (svv_c > 0.0)
                o[j] = r if ok else np.nan
        elif stat == _COV:  # branch-free, as _pair_value
            fddof = float(ddof)
            for j in range(m):
                u = xr[j]
                v = yr[j]
                valid = not (np.isnan(u) | np.isnan(v))
                ru = (run_u[j] + 1.0 if u == last_u[j] else 1.0) if valid else run_u[j]
                last_u[j] = u if valid else last_u[j]
                rv = (run_v[j] + 1.0 if v == last_v[j] else 1.0) if valid else run_v[j]
                last_v[j] = v if valid else last_v[j]
                run_u[j] = ru
                run_v[j] = rv
                nj = n[j]
                suv_c = suv[j] - su[j] * sv[j] * (1.0 / nj)
                den = nj - fddof
                const = (ru >= nj) | (rv >= nj)
                c = 0.0 if const else suv_c / den
                ok = (nj >= fminp) & (nj != 0.0) & (den > 0.0)
                o[j] = c if ok else np.nan
        elif stat == _SLOPE:  # branch-free, as _pair_value
            for j in range(m):
                nj = n[j]
                inv_n = 1.0 / nj
                suv_c = suv[j] - su[j] * sv[j] * inv_n
                suu_c = suu[j] - su[j] * su[j] * inv_n
                c = 0.0 if run_v[j] >= nj else suv_c / suu_c
                ok = (nj >= fminp) & (nj != 0.0) & (nj >= 2.0)
                o[j] = c if ok else np.nan
        else:
            for j in range(m):
                u = xr[j]
                v = yr[j]
                valid = not (np.isnan(u) or np.isnan(v))
                nj = n[j]
                o[j] = _pair_value(
                    nj, cu[j], cv[j], su[j], sv[j], suu[j], svv[j], suv[j],
                    on_u and run_u[j] >= nj, run_v[j] >= nj, u, v, valid, minp, ddof, stat,
                )  # fmt: skip


@njit(parallel=True)
def _pair(x, y, w, minp, ddof, stat, on_time, out):
    n = x.shape[1]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        _pair_block(x, y, w, minp, ddof, stat, on_time, out, b * _BLOCK, min(n, (b + 1) * _BLOCK))
    return out


@njit(parallel=True)
def _pair_time(y, rows, w, minp, stat, out):
    # The regression on time: `rows` holds the row positions in its first columns.
    n = y.shape[1]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        j0 = b * _BLOCK
        _pair_block(rows, y, w, minp, 0, stat, True, out, j0, min(n, j0 + _BLOCK))
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
    return call_blocked(
        _pair, a, b, w, check_min_periods(min_periods, w), check_ddof(ddof), _COV, False
    )


def ts_corr(x: np.ndarray, y: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Pearson correlation over the window's complete pairs; NaN if either side is constant."""
    a, b = _two(x, y)
    w = check_window(w, "w")
    return call_blocked(_pair, a, b, w, check_min_periods(min_periods, w), 0, _CORR, False)


def _on_time(x: np.ndarray, w: int, min_periods: int | None, stat: int) -> np.ndarray:
    a = as_panel_array(x, "x")
    w = check_window(w, "w")
    # The regressor: each row's position, in a C-contiguous (T, block) array that every column
    # block reads from its column 0 (contiguous loads vectorise; a stride-0 view does not).
    width = max(1, min(a.shape[1], _BLOCK))
    rows = np.repeat(np.arange(a.shape[0], dtype=np.float64)[:, None], width, axis=1)
    return call_blocked(_pair_time, a, rows, w, check_min_periods(min_periods, w), stat)


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
