"""Argument checks shared by every kernel module.

Kernels are numba loops that trust their inputs; the public wrappers call these helpers first
so a bad window or a malformed array fails with a ValueError naming the argument instead of a
numba typing error or a silent wrong answer. This module owns validation (and `call_with_output`,
how wrappers hand kernels a numpy-allocated output); it computes nothing.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numba
import numpy as np

__all__ = [
    "COLUMNS_PER_BLOCK",
    "as_panel_array",
    "call_blocked",
    "call_with_output",
    "check_array",
    "check_ddof",
    "check_min_periods",
    "check_nonnegative_int",
    "check_same_shape",
    "check_window",
]

#: Columns per parallel task handed out by prange in `call_with_output`.
COLUMNS_PER_TASK = 64
#: Columns a row-sweep kernel keeps state for at once (see `call_blocked`): 256 float64 =
#: 2 KB per row, so a window of rows of a block and its state arrays stay in L1/L2; measured
#: best of 64..1024 on a 2500 x 5000 panel.
COLUMNS_PER_BLOCK = 256


def _is_int(value: object) -> bool:
    """True for Python/numpy integers, False for bool and floats (even 3.0)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def as_panel_array(x: object, name: str = "x") -> np.ndarray:
    """Return `x` as a float64 C-contiguous 2-D (T, N) array, copying only when needed.

    1-D input is not accepted: panels always have a symbol axis, and guessing its
    orientation would hide bugs. Raises ValueError naming `name`.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - numpy conversion errors vary
        raise ValueError(f"{name}: cannot convert to an array ({exc})") from exc
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (time, symbol) array, got {arr.ndim}-D")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


check_array = as_panel_array


def check_same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("x", "y")) -> None:
    """Raise ValueError unless two panel arrays have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {a.shape} and {b.shape}"
        )


def check_window(w: object, name: str = "window") -> int:
    """Return `w` as int if it is an integer >= 1, else raise ValueError naming `name`."""
    if not _is_int(w):
        raise ValueError(f"{name} must be an integer >= 1, got {w!r} ({type(w).__name__})")
    if w < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {w!r}")
    return int(w)


def check_nonnegative_int(d: object, name: str = "d") -> int:
    """Return `d` as int if it is an integer >= 0 (lags, periods), else raise ValueError."""
    if not _is_int(d) or d < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {d!r}")
    return int(d)


def check_min_periods(mp: object, w: int) -> int:
    """Return min_periods (default `w` when None) after checking 1 <= min_periods <= w."""
    if mp is None:
        return w
    if not _is_int(mp):
        raise ValueError(f"min_periods must be an integer in [1, {w}], got {mp!r}")
    if not 1 <= mp <= w:
        raise ValueError(f"min_periods must be in [1, window={w}], got {mp!r}")
    return int(mp)


def check_ddof(ddof: object) -> int:
    """Return ddof as int if it is an integer >= 0, else raise ValueError."""
    if not _is_int(ddof) or ddof < 0:
        raise ValueError(f"ddof must be an integer >= 0, got {ddof!r}")
    return int(ddof)


def call_with_output(driver: Callable[..., np.ndarray], a: np.ndarray, *args: object) -> np.ndarray:
    """`driver(a, *args, out)` with `out = np.empty_like(a)` allocated here, by numpy, and
    prange handing out `COLUMNS_PER_TASK` columns at a time.

    numpy asks the kernel for transparent huge pages on large arrays (madvise); numba's own
    allocator does not. Kernels walk a (T, N) panel down its columns, touching a new 4 KB page
    at every row, so the output's TLB misses alone cost 1.3-1.8x in the measured throughput.
    Dynamic chunks keep a thread that the OS slows down (shared machines, Dask workers) from
    holding up the others, as a static half-and-half split would. (Set from Python: the
    in-kernel `parallel_chunksize` context breaks numba's on-disk cache.)
    """
    previous = numba.set_parallel_chunksize(COLUMNS_PER_TASK)
    try:
        return driver(a, *args, np.empty_like(a))
    finally:
        numba.set_parallel_chunksize(previous)


def call_blocked(driver: Callable[..., np.ndarray], a: np.ndarray, *args: object) -> np.ndarray:
    """`driver(a, *args, out)` for row-sweep drivers that `prange` over column *blocks*.

    Such a driver hands each block of `COLUMNS_PER_BLOCK` columns to one task, which walks
    the rows of the panel in order and updates one state per column: every row of the block is
    a contiguous read, where a column-at-a-time loop reads one cache line (and, on a wide
    panel, one 4 KB page) per cell. Blocks are handed out one at a time (a panel of 5000
    symbols has only 20). `out`, C-contiguous float64 of `a`'s shape (`a` may be a broadcast
    view), is allocated by numpy (huge pages, see `call_with_output`).
    """
    previous = numba.set_parallel_chunksize(1)
    try:
        return driver(a, *args, np.empty(a.shape, dtype=np.float64))
    finally:
        numba.set_parallel_chunksize(previous)
