"""Group kernels: per-row statistics within groups given by an int64 label array.

Labels ``g`` are int64 codes of the same (T, N) shape as ``x`` (the last array argument);
``-1`` means "no group". Per row and label, over the cells whose ``x`` is not NaN:

* ``group_mean(x, g)``: the group's mean, written to every member cell.
* ``group_neutralize(x, g)``: ``x - group mean`` (Alpha101 IndNeutralize).
* ``group_zscore(x, g)``: ``(x - group mean) / group std`` (sample std, ``ddof=1``, like
  ``cross_section.zscore``); NaN for a group with fewer than 2 valid values or all equal.
* ``group_rank(x, g)``: percentile rank with average ties within the group
  (``groupby(...).rank(pct=True)``).

A cell whose ``x`` is NaN or whose label is -1 gives NaN (a symbol without a value or without a
group has no grouped value; unlike pandas ``transform("mean")``, the group mean is not written
into NaN cells). Each row costs O(N + K) for K labels (sum/count arrays indexed by label), and
O(N log N) for rank (one value argsort by numpy, then a stable counting sort by label) --
never O(N * K).
Labels are compacted with ``np.unique`` when their codes are sparse and large. This module owns
grouped per-row statistics; ungrouped ones live in ``cross_section.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.kernels._jit import njit, prange
from engine.kernels._validate import as_panel_array, check_same_shape
from engine.kernels.cross_section import _row_order  # numpy argsort per row, NaN last

__all__ = ["KERNELS", "warmup"]


@njit(nogil=True)
def _group_moments(
    x: np.ndarray, g: np.ndarray, k: int, want_std: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, mean, sample std or NaN-if-degenerate) per label for one row (two-pass)."""
    cnt = np.zeros(k, dtype=np.int64)
    mean = np.zeros(k)
    lo = np.full(k, np.inf)
    hi = np.full(k, -np.inf)
    for j in range(x.shape[0]):
        lab = g[j]
        v = x[j]
        if lab >= 0 and not np.isnan(v):
            cnt[lab] += 1
            mean[lab] += v
            lo[lab] = min(lo[lab], v)
            hi[lab] = max(hi[lab], v)
    for lab in range(k):
        mean[lab] = mean[lab] / cnt[lab] if cnt[lab] > 0 else np.nan
    std = np.full(k, np.nan)
    if want_std:
        ss = np.zeros(k)
        for j in range(x.shape[0]):
            lab = g[j]
            v = x[j]
            if lab >= 0 and not np.isnan(v):
                ss[lab] += (v - mean[lab]) * (v - mean[lab])
        for lab in range(k):
            sd = np.sqrt(ss[lab] / (cnt[lab] - 1)) if cnt[lab] >= 2 else 0.0
            if lo[lab] != hi[lab] and sd > 0.0:  # sd can underflow to 0 for tiny values
                std[lab] = sd
    return cnt, mean, std


@njit(parallel=True)
def _group_stat(x: np.ndarray, g: np.ndarray, k: int, mode: int) -> np.ndarray:
    """mode 0 = mean, 1 = neutralize, 2 = zscore."""
    out = np.empty_like(x)
    for t in prange(x.shape[0]):
        _, mean, std = _group_moments(x[t], g[t], k, mode == 2)
        for j in range(x.shape[1]):
            lab = g[t, j]
            v = x[t, j]
            if lab < 0 or np.isnan(v):
                out[t, j] = np.nan
            elif mode == 0:
                out[t, j] = mean[lab]
            elif mode == 1:
                out[t, j] = v - mean[lab]
            else:
                out[t, j] = (v - mean[lab]) / std[lab]
    return out


@njit(parallel=True)
def _group_rank(x: np.ndarray, g: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """Rank within groups, given each row's value argsort `order` (NaN last)."""
    out = np.empty_like(x)
    n = x.shape[1]
    for t in prange(x.shape[0]):
        row = x[t]
        lab_row = g[t]
        by_value = np.empty(n, dtype=np.int64)
        m = 0
        for p in range(n):
            j = order[t, p]
            out[t, j] = np.nan
            if lab_row[j] >= 0 and not np.isnan(row[j]):
                by_value[m] = j
                m += 1
        if m == 0:
            continue
        # stable counting sort by label: each label's members stay sorted by value
        start = np.zeros(k + 1, dtype=np.int64)
        for p in range(m):
            start[lab_row[by_value[p]] + 1] += 1
        for lab in range(k):
            start[lab + 1] += start[lab]
        fill = start[:k].copy()
        grouped = np.empty(m, dtype=np.int64)
        for p in range(m):
            lab = lab_row[by_value[p]]
            grouped[fill[lab]] = by_value[p]
            fill[lab] += 1
        for lab in range(k):
            a = start[lab]
            b = start[lab + 1]
            size = b - a
            i = a
            while i < b:
                e = i
                while e + 1 < b and row[grouped[e + 1]] == row[grouped[i]]:
                    e += 1
                r = 0.5 * ((i - a) + (e - a) + 2) / size
                for p in range(i, e + 1):
                    out[t, grouped[p]] = r
                i = e + 1
    return out


def _prepare(x: object, g: object) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate (x, g); return float x, compact int64 labels and the number of labels."""
    x = as_panel_array(x, "x")
    g_arr = np.asarray(g)
    if g_arr.ndim != 2:
        raise ValueError(f"g: expected a 2-D (time, symbol) label array, got {g_arr.ndim}-D")
    if g_arr.dtype.kind not in "iu":
        raise ValueError(f"g: expected integer group codes (-1 = no group), got {g_arr.dtype}")
    check_same_shape(x, g_arr, ("x", "g"))
    g_arr = np.ascontiguousarray(g_arr, dtype=np.int64)
    if g_arr.size == 0:
        return x, g_arr, 0
    if g_arr.min() < -1:
        raise ValueError(f"g: group codes must be >= -1 (-1 = no group), got {g_arr.min()}")
    k = int(g_arr.max()) + 1
    if k > 1024 and k > g_arr.shape[1]:
        # sparse large codes: compact so per-row label arrays stay O(N)
        codes, inverse = np.unique(g_arr, return_inverse=True)
        inverse = inverse.reshape(g_arr.shape)
        shift = 1 if codes[0] == -1 else 0
        g_arr = np.ascontiguousarray(inverse - shift, dtype=np.int64)
        k = len(codes) - shift
    return x, g_arr, k


def group_mean(x: object, g: object) -> np.ndarray:
    """Mean of x within each row's group, on every member cell whose x is valid."""
    x, g, k = _prepare(x, g)
    return _group_stat(x, g, k, 0)


def group_neutralize(x: object, g: object) -> np.ndarray:
    """x - group mean per row (Alpha101 IndNeutralize)."""
    x, g, k = _prepare(x, g)
    return _group_stat(x, g, k, 1)


def group_zscore(x: object, g: object) -> np.ndarray:
    """(x - group mean) / group std (ddof=1) per row."""
    x, g, k = _prepare(x, g)
    return _group_stat(x, g, k, 2)


def group_rank(x: object, g: object) -> np.ndarray:
    """Percentile rank within the group per row, average ties."""
    x, g, k = _prepare(x, g)
    return _group_rank(x, g, _row_order(x), k)


KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "group_neutralize": group_neutralize,
    "group_rank": group_rank,
    "group_mean": group_mean,
    "group_zscore": group_zscore,
}


def warmup() -> None:
    """Compile every kernel once on a tiny array (numba compiles lazily, per process)."""
    x = np.array([[1.0, np.nan, 2.0, 2.0], [0.5, -1.0, np.nan, 3.0]])
    g = np.array([[0, 0, 1, -1], [1, 1, 0, 0]], dtype=np.int64)
    for fn in KERNELS.values():
        fn(x, g)
