"""Cross-sectional kernels: one date (row) at a time, across all symbols.

Each kernel is a plain loop over one row, run in parallel over rows with ``prange``. NaN
cells are not part of the cross-section: they are skipped in every statistic and stay NaN in
the output. Semantics, chosen to match the usual research tools:

* ``rank(x)``: percentile rank with average ties, ``average_rank / n_valid`` in (0, 1] --
  exactly ``DataFrame.rank(axis=1, pct=True, method="average")``.
* ``zscore(x)``: ``(x - mean) / std`` with the sample std (``ddof=1``, like pandas ``.std()``).
  NaN for the whole row when it has fewer than 2 valid values or they are all equal (tested on
  the values, since a float mean of equal values can differ from them in the last bit).
* ``demean(x)``: ``x - mean``.
* ``scale(x, a=1.0)``: ``x * a / sum(|x|)`` so the valid absolute values sum to ``a``
  (Alpha101 scale); a row whose valid values are all zero gives NaN.
* ``winsorize(x, k=3.0)``: clip at ``mean +- k * std`` (``ddof=1``) of the row; rows with fewer
  than 2 valid values are returned unchanged (nothing to clip against).
* ``quantile_bucket(x, n)``: bucket ``ceil(n * rank(x))`` in 1..n (ties share a bucket), in
  exact integer arithmetic so bucket edges do not depend on rounding.

Means and variances are two-pass (mean first, then squared deviations) for accuracy. Ranks
need a sort per row: numpy's SIMD sort of packed 64-bit keys (value order + column, see
`_pack_keys`; faster than its argsort and than any numba sort measured here, including an LSD
radix sort), then one numba pass per row assigns tie-averaged ranks. This
module owns per-row statistics only; grouped per-row statistics live in ``group.py``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from engine.kernels._jit import njit, prange
from engine.kernels._validate import as_panel_array, check_window

__all__ = ["KERNELS", "warmup"]


# ---- per-row helpers (serial, called inside the parallel row loop) --------------------------
# Ranking: the wrapper argsorts every row with numpy after filling NaN with +inf (numpy's
# SIMD argsort; with NaN present numpy falls back to a ~10x slower path, and numba's own sort
# is slower still). The kernel then walks each row in sorted order, skipping the NaN cells (a
# real +inf ties with the filler, so NaN cells are recognised by x, not by position).


@njit(nogil=True)
def _row_rank(x: np.ndarray, order: np.ndarray, nb: int, out: np.ndarray) -> None:
    """Rank one row into `out`, given its argsort `order`; NaN cells get NaN.

    nb == 0: percentile average rank (average 1-based rank / n_valid).
    nb >= 1: bucket ceil(nb * percentile rank), in exact integers: 2 * average rank is the
    integer first + last + 2 of the tie group's 0-based sorted positions.
    """
    n = x.shape[0]
    values = np.empty(n)
    cells = np.empty(n, dtype=np.int64)
    m = 0
    for p in range(n):
        j = order[p]
        v = x[j]
        if np.isnan(v):
            out[j] = np.nan
        else:
            values[m] = v
            cells[m] = j
            m += 1
    i = 0
    while i < m:
        k = i
        while k + 1 < m and values[k + 1] == values[i]:
            k += 1
        twice_rank = i + k + 2
        if nb == 0:
            r = 0.5 * twice_rank / m
        else:
            r = float((twice_rank * nb + 2 * m - 1) // (2 * m))
        for p in range(i, k + 1):
            out[cells[p]] = r
        i = k + 1


_PARALLEL_SORT_CELLS = 1 << 18  # below this, thread start-up costs more than it saves


def _row_order(x: np.ndarray) -> np.ndarray:
    """Row-wise argsort with NaN treated as +inf (keeps numpy on its fast SIMD path).

    numpy releases the GIL while sorting, so large panels are sorted in row chunks on
    ``numba.get_num_threads()`` threads -- the same degree of parallelism as the numba kernels,
    so an executor that pins numba to one thread per worker also gets a serial sort here.
    """
    threads = min(numba.get_num_threads(), x.shape[0])
    if threads < 2 or x.size < _PARALLEL_SORT_CELLS:
        return np.argsort(np.where(np.isnan(x), np.inf, x), axis=1)
    order = np.empty(x.shape, dtype=np.intp)
    bounds = np.linspace(0, x.shape[0], threads + 1).astype(int)

    def sort_rows(i: int) -> None:
        rows = slice(bounds[i], bounds[i + 1])
        order[rows] = np.argsort(np.where(np.isnan(x[rows]), np.inf, x[rows]), axis=1)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(sort_rows, range(threads)))
    return order


# Ranking by packed keys (rank, quantile_bucket). numpy sorts uint64 keys with its SIMD sort
# ~2.7x faster than it argsorts float64 (measured here), so each cell becomes one sortable
# 64-bit key: the float's bits mapped to an unsigned integer of the same order, its lowest
# `nbits` bits replaced by the cell's column (nbits = bits needed for a column number). One
# `sort` per row then gives the order and, in the low bits, the cells. Replacing low mantissa
# bits merges values that differ only there into one key prefix ("collision group"); within
# such a group the kernel re-sorts the cells by their exact values (groups are tiny on real
# data; exact ties are the common case and need no move). NaN cells get the largest key and
# stay NaN; -0.0 is keyed as 0.0 (they tie).
_PACKED_MAX_BITS = 24  # columns up to 16.7M; wider rows fall back to argsort
_ROWS_PER_TASK = 16  # rows keyed, sorted and ranked together by one thread (fits in L2)


@njit(nogil=True)
def _pack_keys(bits: np.ndarray, nbits: int, keys: np.ndarray) -> None:
    """Sortable keys of rows `bits` (the float64 cells viewed as uint64) into `keys`."""
    low = np.uint64((1 << nbits) - 1)
    high = ~low
    expo = np.uint64(0x7FF0000000000000)
    mant = np.uint64(0x000FFFFFFFFFFFFF)
    sign = np.uint64(1 << 63)
    nan_key = ~np.uint64(0)
    for t in range(bits.shape[0]):
        row = bits[t]
        krow = keys[t]
        for j in range(row.shape[0]):
            u = row[j]
            is_nan = ((u & expo) == expo) & ((u & mant) != 0)
            u = np.uint64(0) if u == sign else u  # -0.0 ties with 0.0
            u = ~u if (u & sign) != 0 else u | sign  # negatives reversed, below positives
            krow[j] = nan_key if is_nan else (u & high) | np.uint64(j)


@njit(nogil=True)
def _rank_group_sorted(
    xr: np.ndarray, kr: np.ndarray, m: int, nbits: int, nb: int, values, cells, o
) -> None:
    """Slow path of `_rank_packed` for a row with a collision group of unequal values: sort
    each such group by exact value, then assign ranks by tie runs."""
    low = np.uint64((1 << nbits) - 1)
    shift = np.uint64(nbits)
    for p in range(m):
        j = np.int64(kr[p] & low)
        cells[p] = j
        values[p] = xr[j]
    i = 0
    while i < m:
        prefix = kr[i] >> shift
        k = i + 1
        while k < m and (kr[k] >> shift) == prefix:
            k += 1
        if k - i > 1:  # a collision group: order its cells by exact value
            idx = np.argsort(values[i:k], kind="mergesort")
            vals = values[i:k][idx]
            cs = cells[i:k][idx]
            values[i:k] = vals
            cells[i:k] = cs
        s = i
        while s < k:  # tie runs (equal values) inside the group
            e = s
            while e + 1 < k and values[e + 1] == values[s]:
                e += 1
            twice_rank = s + e + 2
            if nb == 0:
                r = 0.5 * twice_rank / m
            else:
                r = float((twice_rank * nb + 2 * m - 1) // (2 * m))
            for p in range(s, e + 1):
                o[cells[p]] = r
            s = e + 1
        i = k


@njit(nogil=True)
def _rank_packed(x: np.ndarray, keys: np.ndarray, nbits: int, nb: int, out: np.ndarray) -> None:
    """Rank rows `x` into `out` from their sorted packed keys (see `_pack_keys`); nb as in
    `_row_rank`.

    Fast path, branch-free: the tie runs are the runs of equal key prefixes, found by one
    forward pass (run starts) and one backward pass (run ends, ranks written). It holds unless
    a run mixes unequal values (checked in the forward pass); such a row takes the slow path.
    """
    n = x.shape[1]
    low = np.uint64((1 << nbits) - 1)
    shift = np.uint64(nbits)
    nan_key = ~np.uint64(0)
    values = np.empty(n)
    cells = np.empty(n, dtype=np.int64)
    starts = np.empty(n, dtype=np.int64)
    for t in range(x.shape[0]):
        xr = x[t]
        kr = keys[t]
        o = out[t]
        m = n  # valid cells: the keys before the NaN keys
        while m > 0 and kr[m - 1] == nan_key:
            m -= 1
        for j in range(n):
            o[j] = np.nan  # NaN cells stay NaN; every valid cell is written below
        if m == 0:
            continue
        run = 0
        prev_prefix = kr[0] >> shift
        prev_value = xr[np.int64(kr[0] & low)]
        mixed = False
        for p in range(m):
            prefix = kr[p] >> shift
            value = xr[np.int64(kr[p] & low)]
            same = prefix == prev_prefix
            mixed |= same & (value != prev_value)
            run = run if same else p
            starts[p] = run
            prev_prefix = prefix
            prev_value = value
        if mixed:
            _rank_group_sorted(xr, kr, m, nbits, nb, values, cells, o)
            continue
        end = m - 1
        next_prefix = kr[m - 1] >> shift
        for p in range(m - 1, -1, -1):
            prefix = kr[p] >> shift
            end = end if prefix == next_prefix else p
            next_prefix = prefix
            twice_rank = starts[p] + end + 2
            if nb == 0:
                r = 0.5 * twice_rank / m
            else:
                r = float((twice_rank * nb + 2 * m - 1) // (2 * m))
            o[np.int64(kr[p] & low)] = r


def _rank_rows(x: np.ndarray, nb: int) -> np.ndarray:
    """Percentile rank (nb == 0) or bucket 1..nb of every cell, by packed-key sorts, in row
    chunks on ``numba.get_num_threads()`` threads (numpy's sort and the numba kernels release
    the GIL; a pinned executor with one numba thread gets a serial loop)."""
    nbits = max(1, (x.shape[1] - 1).bit_length())
    if nbits > _PACKED_MAX_BITS:
        return _rank(x, _row_order(x), nb)
    out = np.empty_like(x)
    bits = x.view(np.uint64)

    def chunk(t0: int) -> None:
        rows = slice(t0, min(x.shape[0], t0 + _ROWS_PER_TASK))
        keys = np.empty((rows.stop - rows.start, x.shape[1]), dtype=np.uint64)
        _pack_keys(bits[rows], nbits, keys)
        keys.sort(axis=1)
        _rank_packed(x[rows], keys, nbits, nb, out[rows])

    starts = range(0, x.shape[0], _ROWS_PER_TASK)
    threads = min(numba.get_num_threads(), len(starts))
    if threads < 2 or x.size < _PARALLEL_SORT_CELLS:
        for t0 in starts:
            chunk(t0)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(chunk, starts))
    return out


@njit(nogil=True)
def _row_mean_std(x: np.ndarray) -> tuple[int, float, float, bool]:
    """(n_valid, mean, sample std, all_equal) of the non-NaN values of one row."""
    cnt = 0
    s = 0.0
    lo = np.inf
    hi = -np.inf
    for v in x:  # min/max here measured faster than a separate early-exit "all equal" loop
        if not np.isnan(v):
            cnt += 1
            s += v
            lo = min(lo, v)
            hi = max(hi, v)
    if cnt == 0:
        return 0, np.nan, np.nan, True
    mean = s / cnt
    ss = 0.0
    for v in x:
        if not np.isnan(v):
            ss += (v - mean) * (v - mean)
    std = np.sqrt(ss / (cnt - 1)) if cnt > 1 else np.nan
    return cnt, mean, std, lo == hi


# ---- kernels ---------------------------------------------------------------------------------


@njit(parallel=True)
def _rank(x: np.ndarray, order: np.ndarray, nb: int) -> np.ndarray:
    """Percentile rank (nb == 0) or bucket 1..nb of each cell, given each row's argsort."""
    out = np.empty_like(x)
    for t in prange(x.shape[0]):
        _row_rank(x[t], order[t], nb, out[t])
    return out


@njit(parallel=True)
def _zscore(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for t in prange(x.shape[0]):
        cnt, mean, std, flat = _row_mean_std(x[t])
        ok = cnt >= 2 and not flat and std > 0.0
        for j in range(x.shape[1]):
            out[t, j] = (x[t, j] - mean) / std if ok else np.nan
    return out


@njit(parallel=True)
def _demean(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for t in prange(x.shape[0]):
        cnt = 0
        s = 0.0
        for v in x[t]:
            if not np.isnan(v):
                cnt += 1
                s += v
        mean = s / cnt if cnt > 0 else np.nan
        for j in range(x.shape[1]):
            out[t, j] = x[t, j] - mean
    return out


@njit(parallel=True)
def _scale(x: np.ndarray, a: float) -> np.ndarray:
    out = np.empty_like(x)
    for t in prange(x.shape[0]):
        s = 0.0
        for v in x[t]:
            if not np.isnan(v):
                s += abs(v)
        if s > 0.0:
            for j in range(x.shape[1]):
                out[t, j] = x[t, j] / s * a  # divide first: a / s overflows for subnormal s
        else:
            for j in range(x.shape[1]):
                out[t, j] = np.nan
    return out


@njit(parallel=True)
def _winsorize(x: np.ndarray, k: float) -> np.ndarray:
    out = np.empty_like(x)
    for t in prange(x.shape[0]):
        cnt, mean, std, _ = _row_mean_std(x[t])
        if cnt < 2:
            for j in range(x.shape[1]):
                out[t, j] = x[t, j]
            continue
        lo = mean - k * std
        hi = mean + k * std
        for j in range(x.shape[1]):
            v = x[t, j]
            out[t, j] = v if np.isnan(v) else min(max(v, lo), hi)
    return out


# ---- public wrappers -------------------------------------------------------------------------


def _real(v: object, name: str, *, positive: bool = False) -> float:
    if not isinstance(v, numbers.Real) or isinstance(v, (bool, np.bool_)) or not np.isfinite(v):
        raise ValueError(f"{name} must be a finite real number, got {v!r}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")
    return float(v)


def rank(x: object) -> np.ndarray:
    """Percentile rank per row, average ties (pandas ``rank(axis=1, pct=True)``)."""
    x = as_panel_array(x, "x")
    return _rank_rows(x, 0)


def zscore(x: object) -> np.ndarray:
    """(x - row mean) / row std (ddof=1); NaN rows when < 2 valid values or all equal."""
    return _zscore(as_panel_array(x, "x"))


def demean(x: object) -> np.ndarray:
    """x - row mean of the valid values."""
    return _demean(as_panel_array(x, "x"))


def scale(x: object, a: float = 1.0) -> np.ndarray:
    """Rescale each row so the valid |x| sum to `a`; all-zero rows give NaN."""
    return _scale(as_panel_array(x, "x"), _real(a, "a"))


def winsorize(x: object, k: float = 3.0) -> np.ndarray:
    """Clip each row at mean +- k * std (ddof=1)."""
    return _winsorize(as_panel_array(x, "x"), _real(k, "k", positive=True))


def quantile_bucket(x: object, n: int) -> np.ndarray:
    """Bucket 1..n per row by percentile rank: ceil(n * rank(x)); NaN stays NaN."""
    x = as_panel_array(x, "x")
    n = check_window(n, "n")
    return _rank_rows(x, n)


KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "rank": rank,
    "zscore": zscore,
    "demean": demean,
    "scale": scale,
    "winsorize": winsorize,
    "quantile_bucket": quantile_bucket,
}


def warmup() -> None:
    """Compile every kernel once on a tiny array (numba compiles lazily, per process)."""
    x = np.array([[1.0, np.nan, 2.0, 2.0], [0.5, -1.0, np.nan, 3.0]])
    rank(x)
    zscore(x)
    demean(x)
    scale(x)
    winsorize(x)
    quantile_bucket(x, 3)
