"""How kernels are compiled: ``njit`` with numba's on-disk cache, built by one process at a time.

Compiling every kernel takes about a minute; loading them from numba's cache takes about a
second. Numba's cache is not safe when several processes *build* it at once (numba issues
#4807, #10128: segfaults; numbagg disables it for that reason), so :func:`warmup_locked`
compiles or loads every kernel while holding an exclusive file lock: the first process on a
host builds the cache, the others wait and then load it. The executor's workers and the
client call it before running kernels (``engine.kernels.warmup_locked``).

Set ``ALPHAFORGE_NUMBA_CACHE=0`` to compile in memory only (every process compiles anew).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numba
from numba import prange

__all__ = ["CACHE", "njit", "prange", "warmup_lock"]

CACHE = os.environ.get("ALPHAFORGE_NUMBA_CACHE", "1") != "0"


def njit(*args: Any, **kwargs: Any) -> Callable:
    """``numba.njit`` with ``cache=True`` unless disabled (same call forms as numba's)."""
    kwargs.setdefault("cache", CACHE)
    return numba.njit(*args, **kwargs)


@contextlib.contextmanager
def warmup_lock() -> Iterator[None]:
    """An exclusive lock per host and user around compiling/loading the kernels."""
    path = Path(tempfile.gettempdir()) / f"alphaforge-numba-{os.getuid()}.lock"
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
