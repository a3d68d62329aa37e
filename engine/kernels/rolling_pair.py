"""Rolling two-variable statistics over (time, symbol) panels.

Owns: ts_cov, ts_corr (two series, pairwise-complete observations), and ts_slope, ts_rsquare,
ts_resi (Qlib Slope/Rsquare/Resi: the regression of x on the row position t inside the window,
skipping NaN rows). All are O(1) amortised per row and keep sums of products of deviations
(du, dv) from shifts (cu, cv): raw sums cancel catastrophically on prices ~100 and volumes ~1e7,
deviations from a nearby shift do not. All sweep the rows of a block of columns (see `rolling`).

ts_cov / ts_corr: the rows are cut into aligned blocks of w (from row 0). The window ending at
row t is the tail of the previous block plus the head of the current one, so its sums are the
tail's suffix sums (computed once per block, walking the previous block backwards) plus the
head's running sums: additions only, so nothing drifts and no value ever has to be subtracted
out again. The shift of a block is the last complete pair of the previous block's tail (else the
block's first one). A window whose shift is far from its mean (a jump: the centred sums would be
lost in rounding, n*sum(du^2) - sum(du)^2 below 1e-4 sum(du)^2) is recomputed from scratch
around its mean. Constant windows come out exact without special cases: if one side equals
the shift, its deviations are exactly 0; otherwise they are all equal and non-zero, which the
same test catches. So ts_cov is exactly 0 when either side is constant and ts_corr is NaN (as
it is when either standard deviation is below 1e-12 times its mean's magnitude, Qlib).

ts_slope / ts_rsquare / ts_resi keep running sums, updated by adding the entering row and
subtracting the leaving one, recomputed from scratch around the window's means every `w` rows
(and at once when a leaving term or a shift lies far outside the window), so add/subtract
drift stays bounded to one window; constant x is detected exactly with a run counter. The row
position enters as an integer offset from the re-sync row, so its sums are exact and
independent of where the panel starts. Degenerate windows: ts_rsquare is NaN when x is
constant; slope/rsquare/resi need 2 valid rows; ts_resi (the residual of the current row) is
NaN when the current x is NaN; ts_slope and ts_resi are 0 when x is constant. Because the
position regressor only enters through deviations from its mean, the slope, R^2 and residual
do not depend on whether positions count from 1 or from the panel start.

Block invariance: every state depends on the current and the previous block of w rows only,
so a computation started on a multiple of `w` gives the same bits as the whole-panel one from
one window after its start on (`engine.kernels.BLOCK_ALIGNED`, test_block_invariance.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from llvmlite import ir
from numba import int64, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

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

# Which statistic `_pair_block` returns.
_SLOPE, _RSQUARE, _RESI = 2, 3, 4
# Re-sync the running sums when a leaving squared deviation exceeds this many window variances;
# recompute a ts_cov/ts_corr window when its shift is this many variances from its mean.
_RESYNC_RATIO = 1e4
_TINY_STD = 1e-12  # relative to |mean|: below this a series counts as constant for ts_corr
_BLOCK = COLUMNS_PER_BLOCK
# ts_cov/ts_corr: columns per block (measured best of 64..512 on a 2500 x 5000 panel: the
# state, 9 rows, and the w + 1 tail sums, 6 rows each, of 128 columns stay in L1/L2), and how
# many rows ahead each row prefetches the panel rows it will read.
_PAIR_BLOCK = 128
_AHEAD = 2


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
    phase = 0  # rows since the last re-sync of all columns: when 0, i.e. t % w == 0 (no idiv)
    for t in range(x.shape[0]):
        xr = x[t, jx : jx + m]
        yr = y[t, j0:j1]
        for j in range(m):
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
        if stat == _SLOPE:  # branch-free, as _pair_value
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


# ----------------------------------------------------------------- ts_cov and ts_corr
# Rows of the state array of `_cov_corr_rows` (one column per panel column of the block): the
# shift, the sums over the current block's rows so far (the head), and the row's results.
_CU, _CV, _HN, _HU, _HV, _HUU, _HVV, _HUV, _RES = range(9)
_NSTATE = 9
_NSUMS = 6  # sums per tail: n, su, sv, suu, svv, suv


def _item_pointer(context, builder, aryty, ary_value, i, j):
    # LLVM pointer to a 2-D array's element [i, j] (indices known to be in range).
    ary = context.make_array(aryty)(context, builder, ary_value)
    return cgutils.get_item_pointer(context, builder, aryty, ary, [i, j], wraparound=False)


@intrinsic
def _prefetch(typingctx, arr, i, j):
    # Ask the CPU to fetch the cache line of arr[i, j] into every cache level (llvm.prefetch).
    # A hint: no effect on results.
    sig = types.void(arr, i, j)

    def codegen(context, builder, signature, args):
        ptr = _item_pointer(context, builder, signature.args[0], *args)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0"
        )
        read, all_levels, data = ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)
        builder.call(fn, [builder.bitcast(ptr, i8p), read, all_levels, data])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _address(typingctx, arr, i, j):
    # The address of arr[i, j], as an unsigned integer.
    sig = types.uint64(arr, i, j)

    def codegen(context, builder, signature, args):
        ptr = _item_pointer(context, builder, signature.args[0], *args)
        return builder.ptrtoint(ptr, ir.IntType(64))

    return sig, codegen


@intrinsic
def _stream8(typingctx, dst, i, c, src, row, j):
    # dst[i, c:c+8] = src[row, j:j+8] as one non-temporal 64-byte store: the cache line is
    # written without being read into the caches first (a write to memory that is not cached
    # costs a read otherwise). dst[i, c] must be 64-byte aligned.
    sig = types.void(dst, i, c, src, row, j)

    def codegen(context, builder, signature, args):
        dptr = _item_pointer(context, builder, signature.args[0], *args[:3])
        sptr = _item_pointer(context, builder, signature.args[3], *args[3:])
        vec = ir.VectorType(ir.DoubleType(), 8)
        value = builder.load(builder.bitcast(sptr, vec.as_pointer()), align=8)
        store = builder.store(value, builder.bitcast(dptr, vec.as_pointer()), align=64)
        one = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])
        store.set_metadata("nontemporal", one)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _store_fence(typingctx):
    # A full memory fence: the non-temporal stores are weakly ordered; make them visible
    # before the threads that wrote them report back.
    sig = types.void()

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


@njit(nogil=True, error_model="numpy", inline="always")
def _cov_of(n, su, sv, suv, fminp, fddof):
    # Covariance from sums of deviations from any shift, with one division. Never -0.0: the
    # sums start at +0.0, so they are never -0.0, and x - x is +0.0.
    c = (n * suv - su * sv) / (n * (n - fddof))
    return c if (n >= fminp) & (n != 0.0) & (n - fddof > 0.0) else np.nan


@njit(nogil=True, error_model="numpy", inline="always")
def _corr_of(n, cu, cv, su, sv, suu, svv, suv, fminp, tiny2):
    # Correlation from sums of deviations from the shift (cu, cv); NaN on a constant side.
    inv_n = 1.0 / n
    suv_c = suv - su * sv * inv_n
    suu_c = suu - su * su * inv_n
    svv_c = svv - sv * sv * inv_n
    mean_u = cu + su * inv_n
    mean_v = cv + sv * inv_n
    r = suv_c / np.sqrt(suu_c * svv_c)
    r = min(1.0, max(-1.0, r))
    ok = (n >= fminp) & (n >= 2.0)
    ok = ok & (suu_c > tiny2 * n * mean_u * mean_u) & (suu_c > 0.0)
    ok = ok & (svv_c > tiny2 * n * mean_v * mean_v) & (svv_c > 0.0)
    return r if ok else np.nan


@njit(nogil=True, error_model="numpy", inline="always")
def _cancels(n, s, ss):
    # The centred sum of squares n*ss - s*s is lost in rounding against s*s: the shift is far
    # from the window's mean (a jump), or, s != 0 and nothing left, the side is constant and
    # differs from the shift. Either way the window is recomputed around its mean.
    return (n > 1.0) & (s != 0.0) & (s * s >= _RESYNC_RATIO * (ss * n - s * s))


@njit(nogil=True, error_model="numpy", inline="always")
def _head_and_tail(st, tails, p, j):
    # The window's sums: the head's plus tail p's.
    return (
        tails[p, 0, j] + st[_HN, j],
        tails[p, 1, j] + st[_HU, j],
        tails[p, 2, j] + st[_HV, j],
        tails[p, 3, j] + st[_HUU, j],
        tails[p, 4, j] + st[_HVV, j],
        tails[p, 5, j] + st[_HUV, j],
    )


@njit(nogil=True, error_model="numpy")
def _exact_value(x, y, lo, hi, fminp, fddof, corr):
    # The statistic of rows lo..hi-1 of the columns x, y, from sums around their means.
    cu, cv = _window_means(x, y, lo, hi, False)
    k, su, sv, suu, svv, suv = _window_sums(x, y, lo, hi, False, cu, cv)
    if corr:
        return _corr_of(float(k), cu, cv, su, sv, suu, svv, suv, fminp, _TINY_STD * _TINY_STD)
    return _cov_of(float(k), su, sv, suv, fminp, fddof)


@njit(nogil=True, error_model="numpy", inline="always")
def _first_pair(x, y, r, c0, st, m):
    # Columns without a shift take their pair in row r if it is complete; returns how many
    # columns still have none.
    unset = 0
    for j in range(m):
        u = x[r, c0 + j]
        v = y[r, c0 + j]
        first = np.isnan(st[_CU, j]) & (not (np.isnan(u) | np.isnan(v)))
        st[_CU, j] = u if first else st[_CU, j]
        st[_CV, j] = v if first else st[_CV, j]
        unset += 1 if np.isnan(st[_CU, j]) else 0
    return unset


@njit(nogil=True, error_model="numpy", inline="always")
def _cov_corr_rows(x, y, w, minp, ddof, corr, out, j0, j1):
    # Columns j0..j1-1 (at most _PAIR_BLOCK), row by row. How it stays vectorised and cheap:
    # the state lives in two arrays whose rows have a constant length, so LLVM sees they
    # cannot overlap; column indices are unsigned (c0 + j), so numba adds no negative-index
    # wrap-around and loads stay contiguous vector loads; no row views are taken (each would be
    # an atomic reference-count increment and decrement on the panel, shared by all threads);
    # the panel rows are prefetched (the hardware prefetcher does not follow 1 KB pieces of
    # rows 40 KB apart: 1.5x).
    m = uint64(min(j1 - j0, _PAIR_BLOCK))
    c0 = uint64(j0)
    st = np.empty((_NSTATE, _PAIR_BLOCK))
    tails = np.empty((w + 1, _NSUMS, _PAIR_BLOCK))  # tails[1..w-1]: set at each block start
    tails[w] = 0.0  # the empty tail (the window at a block's last row)
    # The tail's rows and slots, looked up rather than computed: LLVM hoists the column
    # loops' alias checks out of a row loop it can follow, and for one that walks rows
    # backwards the hoisted check always fails (then the scalar loop runs, 3x slower).
    rows = np.empty(w, np.int64)
    slots = np.arange(w + 1)
    fminp = float(minp)
    fddof = float(ddof)
    tiny2 = _TINY_STD * _TINY_STD
    n_rows = x.shape[0]
    # Rows of the block are written with non-temporal stores when they start on a cache line
    # (the drivers start blocks there when they can) and cover whole lines: with the aligned
    # blocks, 1.2-1.4x (the output is a third of the memory traffic, and half of its cost was
    # reading each line before writing it).
    streaming = (m & uint64(7)) == uint64(0)
    phase = 0  # t % w, counted
    for t in range(n_rows):
        if phase == 0:  # a new block: its shift, the previous block's tails, an empty head
            for j in range(m):
                st[_CU, j] = st[_CV, j] = np.nan
                st[_HN, j] = st[_HU, j] = st[_HV, j] = 0.0
                st[_HUU, j] = st[_HVV, j] = st[_HUV, j] = 0.0
            for i in range(w):
                rows[i] = t - w + i
            unset = int64(m)
            i = w - 1  # the tail is rows t-w+1 .. t-1: its last complete pair,
            while (unset > 0) & (i > 0):
                if rows[i] >= 0:
                    unset = _first_pair(x, y, rows[i], c0, st, m)
                i -= 1
            r = t  # else this block's first one
            while (unset > 0) & (r < min(t + w, n_rows)):
                unset = _first_pair(x, y, r, c0, st, m)
                r += 1
            for i in range(w - 1, 0, -1):  # tails[i]: sums over rows t-w+i .. t-1
                r = rows[i]
                q = slots[i]
                q1 = slots[i + 1]
                if r >= 0:
                    for j in range(m):
                        u = x[r, c0 + j]
                        v = y[r, c0 + j]
                        ok = not (np.isnan(u) | np.isnan(v))
                        du = u - st[_CU, j]
                        dv = v - st[_CV, j]
                        tails[q, 0, j] = tails[q1, 0, j] + (1.0 if ok else 0.0)
                        tails[q, 1, j] = tails[q1, 1, j] + (du if ok else 0.0)
                        tails[q, 2, j] = tails[q1, 2, j] + (dv if ok else 0.0)
                        tails[q, 3, j] = tails[q1, 3, j] + (du * du if ok else 0.0)
                        tails[q, 4, j] = tails[q1, 4, j] + (dv * dv if ok else 0.0)
                        tails[q, 5, j] = tails[q1, 5, j] + (du * dv if ok else 0.0)
                else:
                    for k in range(_NSUMS):
                        for j in range(m):
                            tails[q, k, j] = 0.0
        ahead = min(t + _AHEAD, n_rows - 1)
        for jj in range(j0, j1, 8):  # every cache line (8 float64) of the row
            _prefetch(x, ahead, jj)
            _prefetch(y, ahead, jj)
        p = phase + 1  # row t's window: tail p (rows t-w+1 .. block start) and the head
        redo = 0  # an int: a float sum would stop LLVM vectorising the loop
        for j in range(m):  # branch-free: selects (LLVM vectorises them)
            u = x[t, c0 + j]
            v = y[t, c0 + j]
            ok = not (np.isnan(u) | np.isnan(v))
            c_u = st[_CU, j]
            c_v = st[_CV, j]
            du = u - c_u
            dv = v - c_v
            st[_HN, j] += 1.0 if ok else 0.0
            st[_HU, j] += du if ok else 0.0
            st[_HV, j] += dv if ok else 0.0
            st[_HUU, j] += du * du if ok else 0.0
            st[_HVV, j] += dv * dv if ok else 0.0
            st[_HUV, j] += du * dv if ok else 0.0
            n, su, sv, suu, svv, suv = _head_and_tail(st, tails, p, j)
            redo += 1 if _cancels(n, su, suu) | _cancels(n, sv, svv) else 0
            if corr:
                st[_RES, j] = _corr_of(n, c_u, c_v, su, sv, suu, svv, suv, fminp, tiny2)
            else:
                st[_RES, j] = _cov_of(n, su, sv, suv, fminp, fddof)
        if redo > 0:  # rare: recompute those windows from scratch, down their columns
            lo = max(0, t - w + 1)
            for j in range(m):
                n, su, sv, suu, svv, _ = _head_and_tail(st, tails, p, j)
                if _cancels(n, su, suu) | _cancels(n, sv, svv):
                    jc = int64(c0 + j)
                    st[_RES, j] = _exact_value(x[:, jc], y[:, jc], lo, t + 1, fminp, fddof, corr)
        if streaming & ((_address(out, t, c0) & uint64(63)) == uint64(0)):
            for j in range(uint64(0), m, uint64(8)):
                _stream8(out, t, c0 + j, st, _RES, j)
        else:
            for j in range(m):
                out[t, c0 + j] = st[_RES, j]
        phase = phase + 1 if phase + 1 < w else 0
    if streaming:
        _store_fence()


@njit(nogil=True, error_model="numpy")
def _cov_block(x, y, w, minp, ddof, out, j0, j1):
    _cov_corr_rows(x, y, w, minp, ddof, False, out, j0, j1)


@njit(nogil=True, error_model="numpy")
def _corr_block(x, y, w, minp, out, j0, j1):
    _cov_corr_rows(x, y, w, minp, 0, True, out, j0, j1)


@njit(nogil=True, error_model="numpy")
def _lead(out):
    # Columns before the first cache line boundary (64 bytes) of out's rows if they all start at
    # the same offset in a line, else 0. The first block is those columns, the others start on
    # a line: their rows can be streamed out (_stream8), and a vector store of 8 columns touches
    # one line, not two (numpy aligns arrays to 16 bytes only; so are x and y's loads when they
    # share out's offset, as numpy's large arrays do).
    if (out.shape[0] == 0) | (out.shape[1] == 0) | ((out.shape[1] * 8) % 64 != 0):
        return 0
    return int64((uint64(64) - (_address(out, 0, 0) & uint64(63))) & uint64(63)) // 8


@njit(nogil=True, error_model="numpy", inline="always")
def _n_blocks(lead, n):
    return (1 if lead > 0 else 0) + (n - lead + _PAIR_BLOCK - 1) // _PAIR_BLOCK


@njit(nogil=True, error_model="numpy", inline="always")
def _block_columns(b, lead, n):
    # Block b: the `lead` columns, then _PAIR_BLOCK columns at a time.
    if lead > 0:
        if b == 0:
            return 0, lead
        j0 = lead + (b - 1) * _PAIR_BLOCK
    else:
        j0 = b * _PAIR_BLOCK
    return j0, min(n, j0 + _PAIR_BLOCK)


@njit(parallel=True)
def _cov(x, y, w, minp, ddof, out):
    n = x.shape[1]
    lead = min(_lead(out), n)
    for b in prange(_n_blocks(lead, n)):
        j0, j1 = _block_columns(b, lead, n)
        _cov_block(x, y, w, minp, ddof, out, j0, j1)
    return out


@njit(parallel=True)
def _corr(x, y, w, minp, out):
    n = x.shape[1]
    lead = min(_lead(out), n)
    for b in prange(_n_blocks(lead, n)):
        j0, j1 = _block_columns(b, lead, n)
        _corr_block(x, y, w, minp, out, j0, j1)
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
    return call_blocked(_cov, a, b, w, check_min_periods(min_periods, w), check_ddof(ddof))


def ts_corr(x: np.ndarray, y: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Pearson correlation over the window's complete pairs; NaN if either side is constant."""
    a, b = _two(x, y)
    w = check_window(w, "w")
    return call_blocked(_corr, a, b, w, check_min_periods(min_periods, w))


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
    ts_cov(x, x[::-1].copy(), 3)
    ts_corr(x, x[::-1].copy(), 3)
    ts_slope(x, 3)
