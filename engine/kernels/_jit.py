"""How kernels are compiled: ``njit`` with numba's on-disk cache, built by one process at a time.

Compiling every kernel takes about a minute; loading them from numba's cache takes about half
a second. Numba's cache is not safe when several processes *build* it at once (numba issues
#4807, #10128: segfaults; numbagg disables it for that reason), so :func:`locked_warmup`
compiles or loads the kernels while holding a file lock per host: exclusively while the cache
may be built, shared (processes load at the same time, as a new cluster's workers do) once
this host has built it and nothing it depends on has changed since (:func:`cache_state`).
The executor's workers and the client call it before running kernels
(``engine.kernels.warmup_locked``).

Set ``ALPHAFORGE_NUMBA_CACHE=0`` to compile in memory only (every process compiles anew).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numba
from numba import prange

__all__ = ["CACHE", "cache_state", "locked_warmup", "njit", "prange", "warmup_lock"]

CACHE = os.environ.get("ALPHAFORGE_NUMBA_CACHE", "1") != "0"


def njit(*args: Any, **kwargs: Any) -> Callable:
    """``numba.njit`` with ``cache=True`` unless disabled (same call forms as numba's)."""
    kwargs.setdefault("cache", CACHE)
    return numba.njit(*args, **kwargs)


def _lock_path(suffix: str) -> Path:
    return Path(tempfile.gettempdir()) / f"alphaforge-numba-{os.getuid()}.{suffix}"


@contextlib.contextmanager
def warmup_lock(shared: bool = False) -> Iterator[None]:
    """A lock per host and user around compiling/loading the kernels (exclusive unless
    ``shared``)."""
    with open(_lock_path("lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cache_state() -> str | None:
    """A digest of what loading the kernels from numba's cache depends on: Python, numba and
    the CPU, the kernel sources, and the cache files themselves (so a cache that was removed,
    rebuilt or extended since reads as changed). None when the cache is off or has no files
    where numba keeps them by default (``__pycache__`` beside the sources, or
    ``NUMBA_CACHE_DIR``)."""
    if not CACHE:
        return None
    here = Path(__file__).resolve().parent
    sources = sorted(here.glob("*.py"))
    modules = tuple(f"{p.stem}." for p in sources)
    root = os.environ.get("NUMBA_CACHE_DIR")
    found = Path(root).rglob("*.nb[ic]") if root else (here / "__pycache__").glob("*.nb[ic]")
    files = sorted(p for p in found if p.name.startswith(modules))
    if not files:
        return None
    import llvmlite.binding

    h = hashlib.blake2b(digest_size=16)
    h.update(f"{sys.version}|{numba.__version__}|{llvmlite.binding.get_host_cpu_name()}".encode())
    for p in [*sources, *files]:
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        h.update(f"|{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def locked_warmup(warm: Callable[[], None]) -> None:
    """Run ``warm`` (compile or load kernels) under :func:`warmup_lock`: shared when this
    host built numba's cache and :func:`cache_state` still reads as it did then (loading
    only reads the cache), exclusive otherwise, after which the state is recorded."""
    ready = _lock_path("ready")
    state = cache_state()
    if state is not None and _read(ready) == state:
        with warmup_lock(shared=True):
            if cache_state() == state:  # not changed while waiting for the lock
                warm()
                return
    with warmup_lock():
        warm()
        state = cache_state()
        if state is not None:
            tmp = ready.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(state)
            tmp.replace(ready)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
