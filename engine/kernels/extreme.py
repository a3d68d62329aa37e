"""Rolling extremes over (time, symbol) panels: ts_max, ts_min, ts_argmax, ts_argmin.

Same signatures and the same results, bit for bit, as the monotonic-deque kernels of
`rolling_order` (tested in tests/engine/kernels/test_extreme.py); this module computes them
with the van Herk / Gil-Werman block algorithm, swept along the rows of a block of columns:

* the rows are cut into aligned blocks of w (from row 0 of the array given). For every block
  the kernel keeps, per column, the running extreme of the block so far (a *prefix*), and the
  extreme of each *suffix* of the previous block (one backward pass over it, w rows);
* the window ending at row t is a suffix of the previous block (rows t-w+1..) plus the prefix
  of the current one (..t), so its extreme is one comparison of the two: about three
  comparisons per cell whatever w is, every one of them a select across the columns of a row
  (vectorised by LLVM), every row a contiguous read. A deque needs a data-dependent loop per
  cell and reads a (T, N) panel down its columns.

Semantics (those of `rolling_order`): NaN is skipped, the result is NaN when the window holds
fewer than `min_periods` valid values; argmax/argmin are 1..w counted from the oldest row of
the window (while the window is still shorter than w at the start of the panel, from row 0);
ties go to the oldest occurrence (0.0 and -0.0 are a tie: the older one is returned). The
result depends on the window's values only, so any start row at least one window back
reproduces it bit for bit (block invariance).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.kernels._jit import njit, prange
from engine.kernels._validate import (
    COLUMNS_PER_BLOCK,
    as_panel_array,
    call_blocked,
    check_min_periods,
    check_window,
)

__all__ = ["KERNELS", "ts_argmax", "ts_argmin", "ts_max", "ts_min", "warmup"]

_BLOCK = COLUMNS_PER_BLOCK


@njit(nogil=True, error_model="numpy", inline="always")
def _beats(new, old):
    # `new` is strictly larger than `old`; a valid value beats NaN; ties do not beat. (`|`
    # and `&`, not `or`/`and`: no short-circuit branches, so the loops vectorise.)
    return (new > old) | (np.isnan(old) & ~np.isnan(new))


@njit(nogil=True, error_model="numpy")
def _extreme_block(a, w, minp, is_max, want_index, out, j0, j1):
    # Minima are the maxima of -x: negation is exact (signed zeros, infinities, NaN) and keeps
    # ties, so one branch-free loop serves both; the sign is applied on reading and writing.
    sign = 1.0 if is_max else -1.0
    m = j1 - j0
    n_rows = a.shape[0]
    suf_val = np.empty((w, m))  # suffix maxima of the previous block of w rows
    suf_row = np.empty((w, m))  # and the row they came from (as float: exact)
    pre_val = np.full(m, np.nan)  # maximum of the current block so far
    pre_row = np.zeros(m)
    count = np.zeros(m)  # valid values in the window
    fminp = float(minp)
    for b0 in range(0, n_rows, w):
        if b0 > 0:  # suffixes of the previous (complete) block, newest row first
            s = b0 - w
            row = a[b0 - 1, j0:j1]
            for j in range(m):
                suf_val[w - 1, j] = sign * row[j]
                suf_row[w - 1, j] = b0 - 1.0
            for r in range(w - 2, -1, -1):
                row = a[s + r, j0:j1]
                fr = float(s + r)
                for j in range(m):
                    v = sign * row[j]
                    newer = suf_val[r + 1, j]
                    keep = _beats(newer, v)  # the older value wins ties
                    suf_val[r, j] = newer if keep else v
                    suf_row[r, j] = suf_row[r + 1, j] if keep else fr
        for t in range(b0, min(n_rows, b0 + w)):
            r = t - b0
            row = a[t, j0:j1]
            old_row = a[max(t - w, 0), j0:j1]
            has_old = t >= w
            first = r == 0
            start = float(max(0, t - w + 1))
            ft = float(t)
            o = out[t, j0:j1]
            for j in range(m):
                v = sign * row[j]
                c = count[j] + (0.0 if np.isnan(v) else 1.0)
                c -= 1.0 if has_old & (not np.isnan(old_row[j])) else 0.0
                count[j] = c
                take = first | _beats(v, pre_val[j])
                pre_val[j] = v if take else pre_val[j]
                pre_row[j] = ft if take else pre_row[j]
            if b0 == 0 or r == w - 1:  # the window lies in the current block
                for j in range(m):
                    value = pre_row[j] - start + 1.0 if want_index else sign * pre_val[j]
                    o[j] = value if count[j] >= fminp else np.nan
            else:  # a suffix of the previous block (older: it wins ties) and the prefix
                sv_row = suf_val[r + 1]
                sr_row = suf_row[r + 1]
                for j in range(m):
                    use_pre = _beats(pre_val[j], sv_row[j])
                    pv = pre_val[j] if use_pre else sv_row[j]
                    pr = pre_row[j] if use_pre else sr_row[j]
                    value = pr - start + 1.0 if want_index else sign * pv
                    o[j] = value if count[j] >= fminp else np.nan


@njit(parallel=True)
def _extreme(a, w, minp, is_max, want_index, out):
    n = a.shape[1]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        _extreme_block(a, w, minp, is_max, want_index, out, b * _BLOCK, min(n, (b + 1) * _BLOCK))
    return out


def _args(x: np.ndarray, w: int, min_periods: int | None) -> tuple[np.ndarray, int, int]:
    w = check_window(w, "w")
    return as_panel_array(x, "x"), w, check_min_periods(min_periods, w)


def ts_max(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Largest valid value in the last `w` rows."""
    return call_blocked(_extreme, *_args(x, w, min_periods), True, False)


def ts_min(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Smallest valid value in the last `w` rows."""
    return call_blocked(_extreme, *_args(x, w, min_periods), False, False)


def ts_argmax(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Position 1..w of the window's maximum counted from its oldest row; ties: oldest."""
    return call_blocked(_extreme, *_args(x, w, min_periods), True, True)


def ts_argmin(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Position 1..w of the window's minimum counted from its oldest row; ties: oldest."""
    return call_blocked(_extreme, *_args(x, w, min_periods), False, True)


KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "ts_min": ts_min,
    "ts_max": ts_max,
    "ts_argmin": ts_argmin,
    "ts_argmax": ts_argmax,
}


def warmup() -> None:
    """Compile every kernel of this module once on a tiny panel."""
    x = np.arange(12.0).reshape(6, 2)
    x[2, 0] = np.nan
    ts_max(x, 3)
    ts_argmin(x, 3)
