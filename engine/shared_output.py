"""Block results handed to the client through one shared-memory file instead of the network.

On one host (the embedded LocalCluster, a workstation, a single big server), sending every
block's values back through Dask means pickling them, a TCP copy into the client process
(which also runs the scheduler of a LocalCluster), and one more copy into the result arrays:
Alpha158 over 2000 dates x 200 symbols is 505 MB of float64 that way. Instead the client
creates one file in ``/dev/shm`` holding the whole ``(factors, dates, symbols)`` result and
maps it; a worker that can open the file writes its block's rows straight into it and sends
back only its statistics. A worker on another host cannot see the file (its name carries a
random token) and sends its values as before, so the same run works on any cluster.

The file is unlinked as soon as the run ends (successfully or not); the client's read-only
mapping, and so the result arrays, live on until the arrays are garbage-collected. Should the
tmpfs fill up during a run, the blocks that cannot be written are sent over the network and
the client moves the result to private memory (``compute``).

A worker may also map the file (:meth:`SharedOutput.mapped`): its memory cache then holds
the outputs it wrote as views of those pages instead of a private second copy. That mapping
is made through libc's ``mmap`` and keeps no file descriptor open (Python's ``mmap`` module
keeps a duplicate of one per mapping until 3.13's ``trackfd=False``); it is unmapped when
the last view of it is garbage-collected.
"""

from __future__ import annotations

import ctypes
import dataclasses
import mmap
import os
import secrets
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["SharedOutput", "create"]

SHM_DIR = Path("/dev/shm")
_HEADROOM = 1.25  # leave a quarter of the requested size free in the tmpfs


@dataclasses.dataclass(frozen=True)
class SharedOutput:
    """Where and how a run's results are laid out (small: sent to every block task)."""

    path: str
    names: tuple[str, ...]
    n_dates: int
    n_symbols: int

    @property
    def nbytes(self) -> int:
        return len(self.names) * self.n_dates * self.n_symbols * 8

    def _map(self, fh) -> tuple[mmap.mmap, np.ndarray]:
        mm = mmap.mmap(fh.fileno(), self.nbytes, prot=mmap.PROT_READ)
        arr = np.frombuffer(mm, dtype=np.float64).reshape(
            len(self.names), self.n_dates, self.n_symbols
        )
        return mm, arr

    def write(self, b0: int, b1: int, values: Mapping[str, np.ndarray]) -> bool:
        """Write rows ``[b0, b1)`` of every output; False if the file is not visible from here
        (a worker on another host) or the tmpfs is full, and the caller sends the values
        instead. Writes are ``pwrite`` calls, never stores into a mapping: a full tmpfs is an
        error here (ENOSPC), not a SIGBUS."""
        try:
            fd = os.open(self.path, os.O_WRONLY)
        except OSError:
            return False
        try:
            if os.fstat(fd).st_size != self.nbytes:
                return False
            row_bytes = self.n_symbols * 8
            for i, name in enumerate(self.names):
                rows = np.ascontiguousarray(values[name], dtype=np.float64)
                offset = (i * self.n_dates + b0) * row_bytes
                view = memoryview(rows).cast("B")
                while view:  # pwrite may write less than asked
                    done = os.pwrite(fd, view, offset)
                    view, offset = view[done:], offset + done
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def mapped(self) -> np.ndarray | None:
        """A read-only ``(names, dates, symbols)`` view of the whole file in this process, or
        None if it cannot be opened or mapped (a worker on another host, a platform without
        libc's ``mmap``). Every caller in a process shares one mapping, which lives while any
        view of it does (the file may be unlinked meanwhile) and holds no file descriptor."""
        with _MAPPED_LOCK:
            buf = _MAPPED.get(self.path)
            if buf is None:
                try:
                    fd = os.open(self.path, os.O_RDONLY)
                except OSError:
                    return None
                try:
                    if os.fstat(fd).st_size != self.nbytes:
                        return None
                    buf = _map_readonly(fd, self.nbytes)
                except OSError:
                    return None
                finally:
                    os.close(fd)  # the mapping does not need it
                _MAPPED[self.path] = buf
        # through a read-only memoryview: numpy would let a view of the ctypes array be made
        # writable again, and a store into the read-only pages would crash the process
        arr = np.frombuffer(memoryview(buf).toreadonly(), dtype=np.float64)
        return arr.reshape(len(self.names), self.n_dates, self.n_symbols)

    def unlink(self) -> None:
        """Remove the file (the client's mapping stays valid)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# path -> this process's mapping of it, while any view of it lives
_MAPPED: weakref.WeakValueDictionary[str, ctypes.Array] = weakref.WeakValueDictionary()
_MAPPED_LOCK = threading.Lock()


def _map_readonly(fd: int, nbytes: int) -> ctypes.Array:
    """``nbytes`` of ``fd`` mapped shared and read-only through libc (the caller may close
    ``fd`` at once); unmapped when the returned buffer is garbage-collected."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int64,
        ]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    except (OSError, AttributeError) as exc:
        raise OSError(f"libc mmap unavailable: {exc}") from exc
    addr = libc.mmap(None, nbytes, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:  # MAP_FAILED
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    buf = (ctypes.c_char * nbytes).from_address(addr)
    # not at interpreter exit: a daemon thread (a Dask task) may still be reading a view
    weakref.finalize(buf, libc.munmap, addr, nbytes).atexit = False
    return buf


def create(
    names: Sequence[str], n_dates: int, n_symbols: int, directory: Path = SHM_DIR
) -> tuple[SharedOutput, dict[str, np.ndarray]] | None:
    """A shared result file and the client's ``{name: (dates, symbols) array}`` views of it.

    None when ``directory`` does not exist or has too little free space for the result (the
    run then sends values over the network). The file is sparse and reads as zeros until
    written: the caller writes the rows no block writes (through :meth:`SharedOutput.write`,
    which is safe if the tmpfs fills up meanwhile; the arrays are for reading)."""
    if not names or not directory.is_dir():
        return None
    spec = SharedOutput(
        path=str(directory / f"alphaforge-{os.getpid()}-{secrets.token_hex(8)}.f64"),
        names=tuple(names),
        n_dates=n_dates,
        n_symbols=n_symbols,
    )
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < spec.nbytes * _HEADROOM:
        return None
    try:
        with open(spec.path, "x+b") as fh:
            fh.truncate(spec.nbytes)
            mm, arr = spec._map(fh)
    except OSError:
        spec.unlink()
        return None
    del mm  # the arrays keep the mapping alive
    return spec, {name: arr[i] for i, name in enumerate(spec.names)}
