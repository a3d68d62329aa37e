"""Block results handed to the client through shared-memory files instead of the network.

On one host (the embedded LocalCluster, a workstation, a single big server), sending every
block's values back through Dask means pickling them, a TCP copy into the client process
(which also runs the scheduler of a LocalCluster), and one more copy into the result arrays:
Alpha158 over 2000 dates x 200 symbols is 505 MB of float64 that way. Instead the client
creates files in ``/dev/shm`` holding the whole ``(factors, dates, symbols)`` result and maps
them; a worker that can open them writes its block's rows straight into them and sends back
only its statistics. A worker on another host cannot see the files (their names carry a
random token) and sends its values as before, so the same run works on any cluster.

The outputs are cut into up to ``SHARDS`` consecutive groups, one file each, and each block
writes them starting from another file: a tmpfs write holds its file's inode lock while it
allocates and zeroes the pages, so with a single file the workers' writes ran one at a time
(two processes writing 252 MB each: 0.26-0.37 s into one file, 0.13-0.16 s into two).

The files are unlinked as soon as the run ends (successfully or not); the client's read-only
mappings, and so the result arrays, live on until the arrays are garbage-collected. Should the
tmpfs fill up during a run, the blocks that cannot be written are sent over the network and
the client moves the result to private memory (``compute``).

Every process maps a file once (:meth:`SharedOutput.mapped`): the client for its result
arrays, a worker so that its memory cache holds the outputs it wrote as views of those pages
instead of a private second copy. A mapping is made through libc's ``mmap`` and keeps no file
descriptor open (Python's ``mmap`` module keeps a duplicate of one per mapping until 3.13's
``trackfd=False``); it is unmapped when the last view of it is garbage-collected.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
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
SHARDS = 16  # files per result at most
_HEADROOM = 1.25  # leave a quarter of the requested size free in the tmpfs


@dataclasses.dataclass(frozen=True)
class SharedOutput:
    """Where and how a run's results are laid out (small: sent to every block task): the
    outputs in order, cut into ``len(paths)`` consecutive groups of (almost) equal size, file
    ``k`` holding group ``k`` as ``(names, dates, symbols)`` float64."""

    paths: tuple[str, ...]
    names: tuple[str, ...]
    n_dates: int
    n_symbols: int

    def _bounds(self, k: int) -> tuple[int, int]:
        """Indices of the first and past-the-last output in file ``k``."""
        per, extra = divmod(len(self.names), len(self.paths))
        first = k * per + min(k, extra)
        return first, first + per + (k < extra)

    def file_bytes(self, k: int) -> int:
        first, last = self._bounds(k)
        return (last - first) * self.n_dates * self.n_symbols * 8

    @property
    def nbytes(self) -> int:
        return len(self.names) * self.n_dates * self.n_symbols * 8

    def file_of(self, i: int) -> int:
        """The file holding output ``names[i]``."""
        per, extra = divmod(len(self.names), len(self.paths))
        big = extra * (per + 1)  # the first `extra` files hold one output more
        return i // (per + 1) if i < big else extra + (i - big) // per

    def order(self, b0: int, b1: int) -> list[int]:
        """Output indices in the order a block ``[b0, b1)`` writes them: from the first output
        of another file for each block, so that workers writing at the same time mostly hold
        different files' locks."""
        first, _ = self._bounds((b0 // max(1, b1 - b0)) % len(self.paths))
        return [(first + j) % len(self.names) for j in range(len(self.names))]

    def write(self, b0: int, b1: int, values: Mapping[str, np.ndarray]) -> bool:
        """Write rows ``[b0, b1)`` of the outputs in ``values`` (all or some); False if the
        files are not visible from here (a worker on another host) or the tmpfs is full, and
        the caller sends the values instead."""
        with self.writer(b0) as w:
            return all(
                w.put(i, values[self.names[i]])
                for i in self.order(b0, b1)
                if self.names[i] in values
            )

    def writer(self, b0: int) -> BlockWriter:
        """A writer of rows from ``b0`` on, one output at a time (use it as a context)."""
        return BlockWriter(self, b0)

    def mapped(self) -> dict[str, np.ndarray] | None:
        """Read-only ``(dates, symbols)`` views of every output in this process, or None if a
        file cannot be opened or mapped (a worker on another host, a platform without libc's
        ``mmap``). Every caller in a process shares one mapping per file, which lives while
        any view of it does (the file may be unlinked meanwhile) and holds no descriptor."""
        out: dict[str, np.ndarray] = {}
        for k, path in enumerate(self.paths):
            buf = map_file(path, self.file_bytes(k))
            if buf is None:
                return None
            # through a read-only memoryview: numpy would let a view of the ctypes array be
            # made writable again, and a store into the read-only pages would crash
            arr = np.frombuffer(memoryview(buf).toreadonly(), dtype=np.float64)
            first, last = self._bounds(k)
            arr = arr.reshape(last - first, self.n_dates, self.n_symbols)
            out.update(zip(self.names[first:last], arr))
        return out

    def unlink(self) -> None:
        """Remove the files (mappings of them stay valid)."""
        for path in self.paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


class BlockWriter:
    """Writes one block's outputs into the result files as each is computed, so a worker
    holds one output's rows at a time instead of the whole block's (Alpha158 over 512 dates
    x 200 symbols: 129 MB, newly touched pages on a worker's first run).

    Writes are ``pwrite`` calls, never stores into a mapping: a full tmpfs is an error here
    (ENOSPC), not a SIGBUS. A file is opened at its first write and checked to be the run's
    (its size); once a write fails, every later one returns False too."""

    def __init__(self, spec: SharedOutput, b0: int):
        self.spec = spec
        self.b0 = b0
        self._fds: dict[int, int] = {}
        self.failed = False

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fd(self, k: int) -> int | None:
        fd = self._fds.get(k)
        if fd is None:
            try:
                fd = os.open(self.spec.paths[k], os.O_WRONLY)
            except OSError:
                return None
            self._fds[k] = fd
            try:
                if os.fstat(fd).st_size != self.spec.file_bytes(k):
                    return None
            except OSError:
                return None
        return fd

    def put(self, i: int, rows: np.ndarray) -> bool:
        """Write ``rows`` (from ``b0`` on) of output ``names[i]``; False if it was not."""
        if self.failed:
            return False
        spec = self.spec
        k = spec.file_of(i)
        fd = self._fd(k)
        if fd is None:
            self.failed = True
            return False
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        first, _ = spec._bounds(k)
        offset = ((i - first) * spec.n_dates + self.b0) * spec.n_symbols * 8
        try:
            pwrite_all(fd, rows, offset)
        except OSError:
            self.failed = True
            return False
        return True

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def pwrite_all(fd: int, array: np.ndarray, offset: int) -> int:
    """Write C-contiguous ``array``'s bytes at ``offset`` of ``fd`` (``pwrite`` may write less
    than asked); the offset just past them."""
    view = memoryview(array).cast("B")
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done
    return offset


def map_file(path: str, nbytes: int, private: bool = False) -> ctypes.Array | None:
    """This process's mapping of the file ``path`` of ``nbytes``, made once: shared and
    read-only, or (``private``) copy-on-write, so that arrays of it are writable like any
    other (numba compiles another specialisation of a kernel for read-only arrays) while
    the file itself never changes."""
    with _MAPPED_LOCK:
        buf = _MAPPED.get((path, private))
        if buf is not None:
            return buf
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size != nbytes:
                return None
            buf = _map(fd, nbytes, private)
        except OSError:
            return None
        finally:
            os.close(fd)  # the mapping does not need it
        _MAPPED[path, private] = buf
        return buf


# (path, private) -> this process's mapping of it, while any view of it lives
_MAPPED: weakref.WeakValueDictionary[tuple[str, bool], ctypes.Array] = weakref.WeakValueDictionary()
_MAPPED_LOCK = threading.Lock()


@functools.cache
def _libc() -> ctypes.CDLL:
    """libc with ``mmap``/``munmap`` prototypes, loaded once per process."""
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
    return libc


def _map(fd: int, nbytes: int, private: bool = False) -> ctypes.Array:
    """``nbytes`` of ``fd`` mapped through libc, shared and read-only or private and
    writable (the caller may close ``fd`` at once); unmapped when the returned buffer is
    garbage-collected."""
    libc = _libc()
    if private:
        prot, flags = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE
    else:
        prot, flags = mmap.PROT_READ, mmap.MAP_SHARED
    addr = libc.mmap(None, nbytes, prot, flags, fd, 0)
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
    """Shared result files and the client's ``{name: (dates, symbols) array}`` views of them.

    None when ``directory`` does not exist or has too little free space for the result (the
    run then sends values over the network). The files are sparse and read as zeros until
    written: the caller writes the rows no block writes (through :meth:`SharedOutput.write`,
    which is safe if the tmpfs fills up meanwhile; the arrays are for reading)."""
    if not names or not directory.is_dir() or n_dates * n_symbols == 0:
        return None
    token = f"alphaforge-{os.getpid()}-{secrets.token_hex(8)}"
    spec = SharedOutput(
        paths=tuple(str(directory / f"{token}-{k}.f64") for k in range(min(SHARDS, len(names)))),
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
    arrays = None
    try:
        for k, path in enumerate(spec.paths):
            with open(path, "x+b") as fh:
                fh.truncate(spec.file_bytes(k))
        arrays = spec.mapped()
    except OSError:
        pass
    finally:
        if arrays is None:  # an error, or an interrupt (which goes on up): no file left
            spec.unlink()
    return None if arrays is None else (spec, arrays)
