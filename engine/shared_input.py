"""A run's input panel handed to workers on the client's host through a shared-memory file.

Scattering the panel sends its rows through Dask to every worker that holds a replica: they
are pickled, copied over loopback TCP and unpickled into fresh memory on each worker, and a
block whose halo spans two chunks copies its rows again to join them. For Alpha158 over
2000 dates x 200 symbols (7 fields, 22 MB) the two scatters took 0.03-0.10 s each, before
any task could start. Instead the client writes the fields and group codes once into a file
in ``/dev/shm`` and every worker maps it copy-on-write: a block reads views of its rows, with
no copy, and a worker that loses its neighbour loses no input (the file is on the host, not in
a worker).

``compute`` uses it only after checking that every worker can open the file (a cluster on
one host); otherwise, or when the tmpfs lacks room, it scatters the panel as before. The
file is unlinked when the run ends; mappings live while views of them do (as for the results,
see ``engine.shared_output``, whose mapping helper this shares).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engine.shared_output import _HEADROOM, SHM_DIR, map_file, pwrite_all

__all__ = ["SharedInput", "can_read", "create"]


@dataclasses.dataclass(frozen=True)
class SharedInput:
    """Where a run's input lies (small: sent to every block task): the arrays named in
    ``fields`` (float64) then ``groups`` (int64 codes), each ``(n_dates, n_symbols)``, one
    after another in the file at ``path``."""

    path: str
    fields: tuple[str, ...]
    groups: tuple[str, ...]
    n_dates: int
    n_symbols: int

    @property
    def nbytes(self) -> int:
        return (len(self.fields) + len(self.groups)) * self.n_dates * self.n_symbols * 8

    def arrays(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
        """Views of every field and group in this process, or None if the file cannot be
        opened or mapped here (a worker on another host). The mapping is copy-on-write: the
        arrays are writable like the scattered ones (so kernels see the types they were
        compiled for) and a store into them changes neither the file nor another worker."""
        buf = map_file(self.path, self.nbytes, private=True)
        if buf is None:
            return None
        shape = (len(self.fields) + len(self.groups), self.n_dates, self.n_symbols)
        flat = np.frombuffer(buf, dtype=np.float64).reshape(shape)
        fields = dict(zip(self.fields, flat[: len(self.fields)]))
        codes = flat[len(self.fields) :].view(np.int64)
        return fields, dict(zip(self.groups, codes))

    def unlink(self) -> None:
        """Remove the file (mappings of it stay valid)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def create(
    fields: Mapping[str, np.ndarray],
    groups: Mapping[str, np.ndarray],
    directory: Path = SHM_DIR,
) -> SharedInput | None:
    """Write ``fields`` and ``groups`` (all ``(dates, symbols)``) into a new shared file; None
    when ``directory`` is missing, too full, or a write fails (nothing is left behind)."""
    arrays = [*fields.values(), *groups.values()]
    if not arrays or not directory.is_dir():
        return None
    t, n = arrays[0].shape
    spec = SharedInput(
        path=str(directory / f"alphaforge-in-{os.getpid()}-{secrets.token_hex(8)}.bin"),
        fields=tuple(fields),
        groups=tuple(groups),
        n_dates=t,
        n_symbols=n,
    )
    if spec.nbytes == 0 or any(a.shape != (t, n) for a in arrays):
        return None
    try:
        st = os.statvfs(directory)
        if st.f_bavail * st.f_frsize < spec.nbytes * _HEADROOM:
            return None
        fd = os.open(spec.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return None
    written = False
    try:
        offset = 0
        for a, dtype in [(a, np.float64) for a in fields.values()] + [
            (g, np.int64) for g in groups.values()
        ]:
            offset = pwrite_all(fd, np.ascontiguousarray(a, dtype=dtype), offset)
        written = True
    except OSError:
        pass
    finally:
        os.close(fd)
        if not written:  # a full tmpfs, or an interrupt: leave nothing behind
            spec.unlink()
    return spec if written else None


def can_read(spec: SharedInput) -> bool:
    """Whether this process (a worker) can map ``spec``'s file: run on every worker first."""
    return spec.arrays() is not None
