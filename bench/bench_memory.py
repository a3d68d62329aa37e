"""What newly used memory costs on this machine: the floor under any engine's result.

A run's result has to land in memory the caller keeps: Alpha158 over 2000 dates x 200 symbols
is 506 MB of float64. On bare metal, pages the kernel hands out cost ~0.1 ms/MB. Inside a VM
whose guest returns freed memory to the host (virtio-balloon free page reporting; this
project's CI machines boot with ``page_reporting.page_reporting_order=11``), a page the host
has taken back is faulted in again by the host on first touch, and that is far slower. What
the guest freed in the last few seconds is still backed and cheap, so the cost depends on
what ran just before.

This script writes float64 rows into new ``/dev/shm`` pages, as ``engine.compute``'s workers
write results (``pwrite`` of one output's block rows at a time), and prints per step:

1. one process writing 126 MB chunks into new pages it keeps, until the chunks get slower
   (the recently freed, still-backed memory is used up) or ``--hold`` GB are held;
2. then two processes writing a 506 MB result at the same time into new pages, the way two
   workers do: the wall time is the floor a run's result sets on that run.

Everything is removed at the end.

    python bench/bench_memory.py             # holds up to 3 GB of /dev/shm for a few seconds
"""

from __future__ import annotations

import argparse
import mmap
import multiprocessing as mp
import os
import resource
import secrets
import sys
import time
from pathlib import Path

import numpy as np

SHM = Path("/dev/shm")
WRITE = 800_000  # bytes per pwrite: 500 rows x 200 symbols of float64 is 0.8 MB
MB = 1_000_000


def _write(path: str, offset: int, nbytes: int) -> tuple[float, float, float]:
    """pwrite ``nbytes`` of float64 ones at ``offset`` of ``path``: (wall s, system CPU s,
    the end on the host's monotonic clock)."""
    row = memoryview(np.ones(WRITE // 8)).cast("B")
    fd = os.open(path, os.O_WRONLY)
    try:
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for o in range(offset, offset + nbytes, WRITE):
            os.pwrite(fd, row[: min(WRITE, offset + nbytes - o)], o)
        wall = time.perf_counter() - t0
        system = resource.getrusage(resource.RUSAGE_SELF).ru_stime - r0.ru_stime
        return wall, system, time.monotonic()
    finally:
        os.close(fd)


def _worker(path: str, offset: int, nbytes: int, ready, go, out) -> None:
    row = np.ones(WRITE // 8)  # numpy imported and its first buffer made before the start
    del row
    ready.set()
    go.wait()
    out.put((time.monotonic(), *_write(path, offset, nbytes)))


class Held:
    """New files in /dev/shm whose pages stay allocated (mapped, unlinked) until closed."""

    def __init__(self) -> None:
        self.maps: list[mmap.mmap] = []
        self.token = f"alphaforge-bench-memory-{os.getpid()}-{secrets.token_hex(4)}"

    def new_file(self, nbytes: int) -> str:
        path = str(SHM / f"{self.token}-{len(self.maps)}")
        with open(path, "x+b") as fh:
            fh.truncate(nbytes)
        return path

    def keep(self, path: str, nbytes: int) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            self.maps.append(mmap.mmap(fd, nbytes, prot=mmap.PROT_READ))
        finally:
            os.close(fd)
            os.unlink(path)

    def close(self) -> None:
        for m in self.maps:
            m.close()
        self.maps.clear()
        for p in SHM.glob(f"{self.token}-*"):
            p.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hold", type=float, default=3.0, help="GB of new pages to hold at most")
    ap.add_argument("--chunk", type=int, default=126, help="MB per step of part 1")
    ap.add_argument("--result", type=int, default=506, help="MB of the result in part 2")
    args = ap.parse_args(argv)
    st = os.statvfs(SHM)
    need = (args.hold * 1000 + args.result) * MB
    if st.f_bavail * st.f_frsize < 1.25 * need:
        print(
            f"/dev/shm has {st.f_bavail * st.f_frsize / 1e9:.1f} GB free; {need / 1e9:.1f} needed"
        )
        return 1
    cmdline = Path("/proc/cmdline").read_text() if Path("/proc/cmdline").exists() else ""
    flags = [f for f in cmdline.split() if f.startswith("page_reporting")]
    print(f"kernel command line: {' '.join(flags) or 'no page_reporting setting'}")
    chunk = args.chunk * MB
    held = Held()
    try:
        print(f"\n1. one process, {args.chunk} MB at a time into new pages it keeps")
        first = None
        while len(held.maps) * chunk < args.hold * 1000 * MB:
            path = held.new_file(chunk)
            wall, system, _ = _write(path, 0, chunk)
            held.keep(path, chunk)
            per_mb = wall * 1000 / args.chunk
            first = per_mb if first is None else first
            print(
                f"   {len(held.maps) * args.chunk:6,d} MB held: {wall:.3f} s "
                f"({per_mb:.2f} ms/MB, system {system:.3f} s)"
            )
            if len(held.maps) >= 3 and per_mb > 3 * first:
                break
        print(f"\n2. two processes writing a {args.result} MB result into new pages at once")
        total = args.result * MB // (2 * WRITE) * 2 * WRITE
        path = held.new_file(total)
        ctx = mp.get_context("spawn")
        go, out = ctx.Event(), ctx.Queue()
        ready = [ctx.Event() for _ in range(2)]
        procs = [
            ctx.Process(target=_worker, args=(path, k * total // 2, total // 2, r, go, out))
            for k, r in enumerate(ready)
        ]
        for p in procs:
            p.start()
        if not all(r.wait(timeout=60) for r in ready):
            raise RuntimeError("a writer process did not start within 60 s")
        go.set()
        # (start, wall, system, end) per process, on the host's monotonic clock
        parts = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            if p.exitcode != 0:
                raise RuntimeError(f"a writer process ended with exit code {p.exitcode}")
        wall = max(p[3] for p in parts) - min(p[0] for p in parts)
        held.keep(path, total)
        print(
            f"   wall {wall:.3f} s ({wall * 1000 * MB / total:.2f} ms/MB); per process "
            + ", ".join(f"{w:.3f} s (system {s:.3f} s)" for _, w, s, _ in parts)
        )
        print(
            f"\n   a run whose {total / MB:.0f} MB result lands in such pages spends at least "
            f"{wall:.2f} s on it, however fast it computes"
        )
    finally:
        held.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
