"""The warm-up lock: exclusive while numba's cache may be built, shared once it is built."""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest

from engine.kernels import _jit


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    """Lock and ready files in a private directory (not the host's real ones)."""
    monkeypatch.setattr(_jit, "_lock_path", lambda suffix: tmp_path / f"numba.{suffix}")
    return tmp_path


def _holding(path, mode):
    fh = open(path, "a+")
    fcntl.flock(fh, mode)
    return fh


def _warm_in_thread():
    """Run locked_warmup in a thread; returns (thread, list the warm-up appends to)."""
    ran: list[float] = []
    t = threading.Thread(target=_jit.locked_warmup, args=(lambda: ran.append(time.time()),))
    t.start()
    return t, ran


def test_loads_share_the_lock_once_the_cache_is_recorded_as_built(lock_dir, monkeypatch):
    states = ["built"]
    monkeypatch.setattr(_jit, "cache_state", lambda: states[0])
    # no record yet: exclusive, so another loader's shared lock makes it wait
    reader = _holding(lock_dir / "numba.lock", fcntl.LOCK_SH)
    t, ran = _warm_in_thread()
    time.sleep(0.3)
    assert not ran, "must wait for the exclusive lock"
    fcntl.flock(reader, fcntl.LOCK_UN)
    t.join(5)
    assert ran and (lock_dir / "numba.ready").read_text() == "built"
    # recorded and unchanged: a shared lock, taken while another process loads
    fcntl.flock(reader, fcntl.LOCK_SH)
    t, ran = _warm_in_thread()
    t.join(5)
    assert ran, "a load should not wait for another load"
    # the cache changed since (rebuilt, extended, removed): exclusive again
    states[0] = "changed"
    t, ran = _warm_in_thread()
    time.sleep(0.3)
    assert not ran
    fcntl.flock(reader, fcntl.LOCK_UN)
    t.join(5)
    assert ran and (lock_dir / "numba.ready").read_text() == "changed"
    reader.close()


def test_no_cache_files_means_always_exclusive(lock_dir, monkeypatch):
    monkeypatch.setattr(_jit, "cache_state", lambda: None)
    reader = _holding(lock_dir / "numba.lock", fcntl.LOCK_SH)
    t, ran = _warm_in_thread()
    time.sleep(0.3)
    assert not ran
    fcntl.flock(reader, fcntl.LOCK_UN)
    t.join(5)
    assert ran and not (lock_dir / "numba.ready").exists()
    reader.close()


def test_cache_state_follows_the_cache_files(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert _jit.cache_state() is None  # nothing cached there yet
    sub = tmp_path / "mirror" / "engine" / "kernels"
    sub.mkdir(parents=True)
    index = sub / "rolling.ts_mean-10.py311.nbi"
    index.write_bytes(b"x" * 10)
    other = sub / "unrelated.f-1.py311.nbi"  # another package's cache
    other.write_bytes(b"y")
    first = _jit.cache_state()
    assert first is not None and _jit.cache_state() == first
    other.write_bytes(b"yy")
    assert _jit.cache_state() == first
    index.write_bytes(b"x" * 11)
    os.utime(index, ns=(1, 1))
    second = _jit.cache_state()
    assert second not in (None, first)
    (sub / "rolling.ts_mean-10.py311.1.nbc").write_bytes(b"z")
    assert _jit.cache_state() not in (None, first, second)
    monkeypatch.setattr(_jit, "CACHE", False)
    assert _jit.cache_state() is None
