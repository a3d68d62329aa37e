"""Rolling order statistics over (time, symbol) panels.

Owns the registry entries of ts_min, ts_max, ts_argmin, ts_argmax (skipping NaN they run in
`extreme`, van Herk / Gil-Werman, ~3 comparisons per cell), and the O(w)-per-row ones:
ts_rank (each row of a block of columns compared with the window's rows, branch-free and
vectorised across the columns: 2.5-3x faster than the same scan down one column at a time
over a ring of its last w values, on 560 x 200 blocks, w = 5..60), ts_median/ts_quantile (a
sorted copy of the window's valid values kept by insertion and deletion: O(log w) search
plus an O(w) shift; one pass serves several quantiles, `ts_quantiles`), ts_mad (two passes
over the window, the textbook definition: the mean moves, so every deviation changes). The
last two walk one column at a time (a row sweep over column blocks measured no faster for
them). Window/NaN/min_periods
semantics are the shared ones described in `rolling`. All results depend on the window's
values only, so any start row at least one window back reproduces them bit for bit.

Qlib's IdxMax/IdxMin (``nan_first=1``; ``ts_argmax_listed`` also clips the window to the
instrument's listed rows; numpy's argmax, where a NaN wins) sweep rows over blocks of columns
like `rolling`'s kernels: up to w = 10 each row's window is scanned across the block's columns
at once (vectorised selects), beyond that a monotonic deque and the window's NaN rows are kept
per column (O(1) amortised).

Conventions: argmax/argmin are 1..w counted from the oldest row of the window (Qlib IdxMax);
while the window is still shorter than w at the start of the panel, the position counts from
row 0. Ties go to the first (oldest) occurrence. ts_rank is the pandas `rank(pct=True)`
of the current value among the valid values of the window, average ties; it is NaN when the
current value is NaN. ts_quantile interpolates linearly (pandas `quantile`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numba
import numpy as np

from engine.kernels import extreme
from engine.kernels._jit import njit, prange
from engine.kernels._validate import (
    COLUMNS_PER_BLOCK,
    COLUMNS_PER_TASK,
    as_panel_array,
    call_blocked,
    call_with_output,
    check_min_periods,
    check_window,
)

_BLOCK = COLUMNS_PER_BLOCK
# Qlib's IdxMax/IdxMin scan the window up to this length and keep a deque beyond. Where
# the crossing lies depends on the CPU's vector width (572 x 200, one thread): on one host
# the scan still won at w = 60 (2.51 against 2.63 ms); on an AVX2 Zen 3 it won at w = 5
# (1.56 against 2.43 ms), tied at w = 10 (2.67 / 2.93) and lost beyond (w = 60: 14.7
# against 3.4 ms).
_SCAN_MAX_W = 10

__all__ = [
    "KERNELS",
    "ts_argmax",
    "ts_argmax_listed",
    "ts_argmin",
    "ts_argmin_listed",
    "ts_mad",
    "ts_max",
    "ts_median",
    "ts_min",
    "ts_quantile",
    "ts_quantiles",
    "ts_rank",
    "warmup",
]


# --------------------------------------------------------------------------- 1-D loops


@njit(nogil=True, error_model="numpy")
def _rank_block(a, w, minp, out, j0, j1):
    # For each row, the window's rows of columns j0:j1 are compared with the current row, a
    # contiguous read per window row: the per-column counters are selects LLVM vectorises.
    m = j1 - j0
    less = np.empty(m)  # float counters: the selects vectorise (measured 1.5x over int)
    equal = np.empty(m)  # includes the current value itself
    n = np.empty(m)
    for t in range(a.shape[0]):
        cur = a[t, j0:j1]
        less[:] = 0.0
        equal[:] = 0.0
        n[:] = 0.0
        for r in range(max(0, t - w + 1), t + 1):
            row = a[r, j0:j1]
            for jj in range(m):
                x = row[jj]
                v = cur[jj]
                less[jj] += 1.0 if x < v else 0.0
                equal[jj] += 1.0 if x == v else 0.0
                n[jj] += 1.0 if x == x else 0.0
        o = out[t, j0:j1]
        for jj in range(m):
            ok = (cur[jj] == cur[jj]) & (n[jj] >= minp)
            o[jj] = (less[jj] + (equal[jj] + 1) / 2.0) / n[jj] if ok else np.nan


@njit(nogil=True, error_model="numpy")
def _quantile_1d(a, w, minp, qs, outs, j):
    # `buf[:n]` holds the valid values of the window in sorted order. A leaving value is
    # found by binary search (the first of its equals) and removed, an entering one goes after
    # its equals; when both happen on a row, one shift between the two positions does both.
    # Every quantile in `qs` is read off the same sorted window (column j of outs[k] for
    # qs[k]).
    buf = np.empty(w, dtype=np.float64)
    n = 0
    for t in range(a.shape[0]):
        v = a[t]
        old = a[t - w] if t >= w else np.nan
        if not np.isnan(old):
            lo, hi = 0, n  # first position with buf[i] >= old
            while lo < hi:
                mid = (lo + hi) >> 1
                if buf[mid] < old:
                    lo = mid + 1
                else:
                    hi = mid
            i = lo
            if np.isnan(v):
                for k in range(i, n - 1):
                    buf[k] = buf[k + 1]
                n -= 1
            elif v >= old:  # the slots i+1.. holding values <= v move left by one
                k = i + 1
                while k < n and buf[k] <= v:
                    buf[k - 1] = buf[k]
                    k += 1
                buf[k - 1] = v
            else:  # v < old <= buf[i+1:]: the slots ..i-1 holding values > v move right
                k = i - 1
                while k >= 0 and buf[k] > v:
                    buf[k + 1] = buf[k]
                    k -= 1
                buf[k + 1] = v
        elif not np.isnan(v):
            i = n
            while i > 0 and buf[i - 1] > v:
                buf[i] = buf[i - 1]
                i -= 1
            buf[i] = v
            n += 1
        for kq in range(qs.shape[0]):
            if n >= minp and n > 0:
                pos = qs[kq] * (n - 1)
                lo = int(np.floor(pos))
                hi = min(lo + 1, n - 1)
                frac = pos - lo
                outs[kq][t, j] = buf[lo] + (buf[hi] - buf[lo]) * frac if frac > 0.0 else buf[lo]
            else:
                outs[kq][t, j] = np.nan


@njit(nogil=True, error_model="numpy")
def _mad_1d(a, w, minp, out):
    for t in range(a.shape[0]):
        start = max(0, t - w + 1)
        total = 0.0
        n = 0
        for k in range(start, t + 1):
            x = a[k]
            if not np.isnan(x):
                total += x
                n += 1
        if n < minp or n == 0:
            out[t] = np.nan
            continue
        mean = total / n
        dev = 0.0
        for k in range(start, t + 1):
            x = a[k]
            if not np.isnan(x):
                dev += abs(x - mean)
        out[t] = dev / n


@njit(nogil=True, error_model="numpy")
def _argext_numpy_block(a, span, use_span, w, minp, is_max, out, j0, j1):
    # Qlib's IdxMax/IdxMin: np.argmax over the raw window (a NaN in it is the answer: numpy's
    # argmax returns the first NaN), the window clipped to its rows where `span` is not NaN
    # (Qlib's series of an instrument starts at its first row). Per column, two rings of row
    # numbers: a monotonic deque of the window's extreme candidates (equal values keep the
    # oldest in front) and the NaN rows in order, so a row costs O(1) amortised. The window
    # start s only moves forward (it is the first listed row at or after t-w+1).
    m = j1 - j0
    rows = np.empty((m, w), dtype=np.int64)  # deque of candidate rows
    vals = np.empty((m, w))  # their values
    head = np.zeros(m, dtype=np.int64)
    size = np.zeros(m, dtype=np.int64)
    nans = np.empty((m, w), dtype=np.int64)  # NaN rows of the window, oldest first
    nhead = np.zeros(m, dtype=np.int64)
    nsize = np.zeros(m, dtype=np.int64)
    start = np.zeros(m, dtype=np.int64)
    for t in range(a.shape[0]):
        lo = t - w + 1 if t >= w - 1 else 0
        row = a[t]
        for jj in range(m):
            j = j0 + jj
            st = max(start[jj], lo)
            if use_span:
                while st < t and np.isnan(span[st, j]):
                    st += 1
            start[jj] = st
            while size[jj] > 0 and rows[jj, head[jj]] < st:
                head[jj] = head[jj] + 1 if head[jj] + 1 < w else 0
                size[jj] -= 1
            while nsize[jj] > 0 and nans[jj, nhead[jj]] < st:
                nhead[jj] = nhead[jj] + 1 if nhead[jj] + 1 < w else 0
                nsize[jj] -= 1
            v = row[j]
            if np.isnan(v):
                k = nhead[jj] + nsize[jj]
                nans[jj, k - w if k >= w else k] = t
                nsize[jj] += 1
            else:
                while size[jj] > 0:
                    k = head[jj] + size[jj] - 1
                    k = k - w if k >= w else k
                    if (vals[jj, k] < v) if is_max else (vals[jj, k] > v):
                        size[jj] -= 1
                    else:
                        break
                k = head[jj] + size[jj]
                k = k - w if k >= w else k
                rows[jj, k] = t
                vals[jj, k] = v
                size[jj] += 1
            count = t - st + 1 - nsize[jj]
            if count >= minp and count > 0:
                pos = nans[jj, nhead[jj]] if nsize[jj] > 0 else rows[jj, head[jj]]
                out[t, j] = pos - st + 1.0
            else:
                out[t, j] = np.nan


@njit(nogil=True, error_model="numpy")
def _argext_scan_block(a, span, use_span, w, minp, is_max, out, j0, j1):
    # The same values as `_argext_numpy_block`, by scanning each row's whole window across the
    # block's columns at once: O(w) per row but branch-free selects that LLVM vectorises,
    # faster than the deque for small w (see _SCAN_MAX_W). Row numbers are kept
    # as floats so that every select is over one type.
    m = j1 - j0
    start = np.zeros(m, dtype=np.int64)
    first = np.empty(m)  # the window's first row (clipped to the listing), as a float
    best = np.empty(m)
    pos = np.empty(m)  # row of the extreme so far, -1 while none
    nan_row = np.empty(m)  # row of the window's first NaN, `none` while none
    nans = np.empty(m)
    none = np.inf
    for t in range(a.shape[0]):
        lo = t - w + 1 if t >= w - 1 else 0
        for jj in range(m):
            st = max(start[jj], lo)
            if use_span:
                while st < t and np.isnan(span[st, j0 + jj]):
                    st += 1
            start[jj] = st
            first[jj] = st
        best[:] = 0.0
        pos[:] = -1.0
        nan_row[:] = none
        nans[:] = 0.0
        for r in range(lo, t + 1):
            row = a[r, j0:j1]
            rf = float(r)
            for jj in range(m):
                x = row[jj]
                inside = rf >= first[jj]
                isnan = x != x
                nan_here = inside & isnan
                nan_row[jj] = rf if nan_here & (nan_row[jj] == none) else nan_row[jj]
                nans[jj] += 1.0 if nan_here else 0.0
                beats = (x > best[jj]) if is_max else (x < best[jj])  # ties: the oldest
                take = inside & ~isnan & (beats | (pos[jj] < 0.0))
                best[jj] = x if take else best[jj]
                pos[jj] = rf if take else pos[jj]
        o = out[t, j0:j1]
        for jj in range(m):
            count = t - first[jj] + 1.0 - nans[jj]
            at = nan_row[jj] if nan_row[jj] != none else pos[jj]
            o[jj] = at - first[jj] + 1.0 if (count >= minp) & (count > 0) else np.nan


# --------------------------------------------------------------------- parallel drivers


@njit(parallel=True)
def _argext_numpy(a, span, use_span, w, minp, is_max, out):
    n = a.shape[1]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        j0, j1 = b * _BLOCK, min(n, b * _BLOCK + _BLOCK)
        if w <= _SCAN_MAX_W:
            _argext_scan_block(a, span, use_span, w, minp, is_max, out, j0, j1)
        else:
            _argext_numpy_block(a, span, use_span, w, minp, is_max, out, j0, j1)
    return out


@njit(parallel=True)
def _rank(a, w, minp, out):
    n = a.shape[1]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        j0 = b * _BLOCK
        _rank_block(a, w, minp, out, j0, min(n, j0 + _BLOCK))
    return out


@njit(parallel=True)
def _quantile(a, w, minp, qs, outs):
    for j in prange(a.shape[1]):
        _quantile_1d(a[:, j], w, minp, qs, outs, j)
    return outs


@njit(parallel=True)
def _mad(a, w, minp, out):
    for j in prange(a.shape[1]):
        _mad_1d(a[:, j], w, minp, out[:, j])
    return out


# ------------------------------------------------------------------------ public wrappers


def _args(x: np.ndarray, w: int, min_periods: int | None) -> tuple[np.ndarray, int, int]:
    w = check_window(w, "w")
    return as_panel_array(x, "x"), w, check_min_periods(min_periods, w)


# Max/min and their positions skipping NaN run in `extreme` (van Herk / Gil-Werman); the
# Qlib policies below (a NaN in the window wins, window clipped to the listing) scan here.
ts_max = extreme.ts_max
ts_min = extreme.ts_min


def _argext(x, span, w, min_periods, nan_first, is_max) -> np.ndarray:
    if span is None and not nan_first:
        fn = extreme.ts_argmax if is_max else extreme.ts_argmin
        return fn(x, w, min_periods)
    a, w, minp = _args(x, w, min_periods)
    if span is None:
        return call_blocked(_argext_numpy, a, a, False, w, minp, is_max)
    span = as_panel_array(span, "listed")
    if span.shape != a.shape:
        raise ValueError(f"x and listed must have the same shape, got {a.shape} and {span.shape}")
    return call_blocked(_argext_numpy, a, span, True, w, minp, is_max)


def ts_argmax(
    x: np.ndarray, w: int, min_periods: int | None = None, nan_first: int = 0
) -> np.ndarray:
    """Position 1..w of the window's maximum counted from its oldest row; ties: oldest.

    NaN is skipped; ``nan_first=1`` (Qlib): a NaN in the window is the answer (numpy's
    ``argmax`` returns the first NaN's position)."""
    return _argext(x, None, w, min_periods, nan_first, True)


def ts_argmin(
    x: np.ndarray, w: int, min_periods: int | None = None, nan_first: int = 0
) -> np.ndarray:
    """Position 1..w of the window's minimum counted from its oldest row; ties: oldest.

    NaN is skipped; ``nan_first=1`` (Qlib): a NaN in the window is the answer."""
    return _argext(x, None, w, min_periods, nan_first, False)


def ts_argmax_listed(
    x: np.ndarray, listed: np.ndarray, w: int, min_periods: int | None = None
) -> np.ndarray:
    """Qlib's IdxMax: ``ts_argmax(nan_first=1)`` over the window clipped to the rows where
    ``listed`` is not NaN (an instrument's series starts at its first row in Qlib)."""
    return _argext(x, listed, w, min_periods, 1, True)


def ts_argmin_listed(
    x: np.ndarray, listed: np.ndarray, w: int, min_periods: int | None = None
) -> np.ndarray:
    """Qlib's IdxMin: see ``ts_argmax_listed``."""
    return _argext(x, listed, w, min_periods, 1, False)


def ts_rank(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Percentile rank of the current value among the window's valid values, average ties:
    (n_less + (n_equal + 1) / 2) / n_valid. NaN when the current value is NaN."""
    return call_blocked(_rank, *_args(x, w, min_periods))


def _check_q(q: object) -> float:
    if isinstance(q, bool) or not isinstance(q, (int, float, np.floating, np.integer)):
        raise ValueError(f"q must be a number in [0, 1], got {q!r}")
    if not 0.0 <= float(q) <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    return float(q)


def ts_quantiles(
    x: np.ndarray, w: int, qs: Sequence[float], min_periods: int | None = None
) -> list[np.ndarray]:
    """``[ts_quantile(x, w, q, min_periods) for q in qs]`` in one pass (one sorted window
    serves every q), bit for bit the same values: Alpha158's QTLU and QTLD are the 0.8 and
    0.2 quantiles of the same windows (the planner pairs such nodes, ``Plan.siblings``).
    Each quantile is its own array, so each is freed when its last user is done."""
    qarr = np.array([_check_q(q) for q in qs], dtype=np.float64)
    if qarr.size == 0:
        raise ValueError("qs must hold at least one quantile")
    a, w, minp = _args(x, w, min_periods)
    previous = numba.set_parallel_chunksize(COLUMNS_PER_TASK)  # as call_with_output
    try:
        outs = _quantile(a, w, minp, qarr, tuple(np.empty(a.shape) for _ in range(qarr.size)))
    finally:
        numba.set_parallel_chunksize(previous)
    return list(outs)


def ts_quantile(x: np.ndarray, w: int, q: float, min_periods: int | None = None) -> np.ndarray:
    """`q`-quantile (0 <= q <= 1) of the window's valid values, linear interpolation."""
    return ts_quantiles(x, w, (q,), min_periods)[0]


def ts_median(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Median of the window's valid values (mean of the middle two for an even count)."""
    return ts_quantiles(x, w, (0.5,), min_periods)[0]


def ts_mad(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Mean absolute deviation of the window's valid values around their mean (Qlib Mad)."""
    return call_with_output(_mad, *_args(x, w, min_periods))


KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "ts_min": ts_min,
    "ts_max": ts_max,
    "ts_argmin": ts_argmin,
    "ts_argmax": ts_argmax,
    "ts_argmin_listed": ts_argmin_listed,
    "ts_argmax_listed": ts_argmax_listed,
    "ts_rank": ts_rank,
    "ts_median": ts_median,
    "ts_quantile": ts_quantile,
    "ts_mad": ts_mad,
}


def warmup() -> None:
    """Compile every kernel of this module once on a tiny panel."""
    x = np.arange(12.0).reshape(6, 2)
    x[2, 0] = np.nan
    ts_max(x, 3)
    ts_argmin(x, 3)
    ts_argmax(x, 3, 1, 1)
    ts_argmin_listed(x, x, 3, 1)
    ts_rank(x, 3)
    ts_quantile(x, 3, 0.25)
    ts_quantiles(x, 3, (0.2, 0.8))
    ts_mad(x, 3)
