"""End-to-end benchmark of the engine: alpha101 + alpha158 on a synthetic panel, and Qlib.

Prints (stdout only; temporary directories and Redis keys are removed at the end):

1. the plan of alpha101 + alpha158 (``factors.library.load``): nodes before/after sharing,
   blocks, max lookback, halo;
2. correctness on a small panel: ``engine.compute`` (2 workers) == ``engine.evaluate``, and
   the reducing sink sees the same number of finite cells;
3. cold / warm-L1 / warm-L2 runs: cold = a fresh ``LocalCluster`` (new worker processes,
   empty L1, a fresh Redis namespace); warm-L1 = the same cluster again; warm-L2 = a new
   cluster whose L1 is empty, reading the L2 (Redis ``--redis``) the cold run filled. Numba
   kernels are compiled (or loaded) once in a separate process before anything is timed, so
   no timing includes first-ever compilation; workers still *load* the kernels from numba's
   on-disk cache (~1 s; started in the background at worker start-up by the ``cluster.worker``
   preload, as on the embedded cluster; what is left of it when the run starts is in cold).
   Results are not gathered: a picklable sink on the worker counts finite values per block
   (the count is the checksum that must agree between runs);
4. scaling: 1 worker vs 2 workers (threads_per_worker=1, caches off);
5. peak memory: RSS of this (client) process and of each worker process, sampled every
   0.2 s with psutil, against the stated budget;
6. Qlib 0.9.7 (its own venv, ``--qlib-python``): Alpha158 via ``D.features`` on the same
   (float32-rounded) data in Qlib's binary format, cold, wall and CPU seconds and the CPU's
   system part (on this VM mostly the cost of newly used memory: ``bench_memory.py``);
   alphaforge's alpha158 library on the same panel, cold; the ratios (wall, CPU, user CPU)
   and the largest differences. Like
   Qlib's, this section runs in a fresh process of its own (``--qlib-only``): in the process
   that holds the 2500 x 5000 panel of sections 1-5, the same cluster runs took about twice as
   long (1.96 s against 1.05 s for "cold caches", measured 2026-11-22), as newly touched
   memory costs more on this VM once much of it is in use.

Throughput is factor-cells/s = factors x dates x symbols / wall seconds. The machine's cores
may be shared with other work: timings are noisy.

    python bench/bench_engine.py --small               # a couple of minutes
    python bench/bench_engine.py                       # 2500 dates x 5000 symbols
    python bench/bench_engine.py --dates 2500 --symbols 2000 --block-rows 64
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from cluster.config import load_settings  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.execute import compute, plan  # noqa: E402
from engine.plan import UNBOUNDED, Plan  # noqa: E402
from engine.sources import synthetic  # noqa: E402
from factors import library  # noqa: E402
from factors.expr import Field  # noqa: E402

GIB = 1 << 30


# ------------------------------------------------------------------ helpers
class FiniteCount:
    """The sink: runs on the worker per block, returns the number of finite values."""

    def __call__(self, b0: int, b1: int, values: dict[str, np.ndarray]) -> int:
        return int(sum(int(np.isfinite(v).sum()) for v in values.values()))


class MemorySampler:
    """Max RSS of the client process and of each worker process, sampled in a thread."""

    def __init__(self, worker_pids: list[int], every: float = 0.2):
        self.procs = [psutil.Process(p) for p in worker_pids]
        self.me = psutil.Process(os.getpid())
        self.every = every
        self.client_max = 0
        self.worker_max = 0
        self.workers_sum_max = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)

    def _sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.client_max = max(self.client_max, self.me.memory_info().rss)
        rss = []
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                rss.append(p.memory_info().rss)
        if rss:
            self.worker_max = max(self.worker_max, max(rss))
            self.workers_sum_max = max(self.workers_sum_max, sum(rss))

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class Cluster:
    """A fresh LocalCluster of worker processes and its client."""

    def __init__(
        self,
        n_workers: int,
        memory_limit: str,
        numba_threads: int | None = None,
        dask_malloc: bool = False,
    ):
        import dask
        from distributed import Client, LocalCluster

        from cluster.connect import WORKER_MALLOC_ENV, spawning_with, worker_environ

        env = {"NUMBA_NUM_THREADS": str(numba_threads)} if numba_threads else {}
        # alphaforge's worker environment (cluster.connect.WORKER_MALLOC_ENV), or Dask's own
        # default (MALLOC_TRIM_THRESHOLD_=65536 only) for comparison
        pre = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
        if not dask_malloc:
            pre = worker_environ()
        for k in WORKER_MALLOC_ENV:
            os.environ.pop(k, None)  # the Nanny also writes pre-spawn-environ into this process
        with spawning_with(pre):
            self.cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                memory_limit=memory_limit,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
                env=env,
                preload=["cluster.worker"],  # as cluster.connect: kernels load from start-up
            )
        self.client = Client(self.cluster, set_as_default=False)
        self.client.wait_for_workers(n_workers)
        self.pids = sorted(self.client.run(os.getpid).values())

    def cpu_split(self) -> tuple[float, float]:
        """(user + system, system) CPU seconds of the workers and this process. System time
        is mostly the kernel handing out memory pages (see bench_memory.py)."""
        total = system = 0.0
        for pid in [*self.pids, os.getpid()]:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
                system += t.system
        return total, system

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


def _preload_kernels() -> None:
    """Load the numba kernels in a worker (what the first block task would do)."""
    from engine.execute import _warm_once

    _warm_once()


def gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def rate(cells: float, seconds: float) -> str:
    return f"{cells / max(seconds, 1e-9) / 1e6:,.1f} M/s"


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(
        h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths))
    )
    out = [line, "  ".join("-" * w for w in widths)]
    for r in cells:
        out.append(
            "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
        )
    return "\n".join(out)


class Timed(NamedTuple):
    """One timed run: its result, wall and CPU seconds (workers + client), the part of that
    CPU time spent in the kernel (mostly handing out memory pages), and the RSS sampler."""

    result: Any
    wall: float
    cpu: float
    system: float
    memory: MemorySampler


def run(
    factors,
    panel,
    cl: Cluster,
    *,
    namespace: str,
    block_rows,
    redis_url,
    cache=True,
    sink=None,
    replicas=2,
    shared_memory=True,
):
    """One timed ``engine.compute`` on ``cl``."""
    settings = load_settings(cache_namespace=namespace, progress=False)
    cpu0, sys0 = cl.cpu_split()
    with MemorySampler(cl.pids) as mem, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t0 = time.perf_counter()
        res = compute(
            factors,
            panel,
            cl.client,
            block_rows=block_rows,
            redis_url=redis_url or "",
            cache=cache,
            settings=settings,
            progress=False,
            sink=sink,
            replicas=replicas,
            shared_memory=shared_memory,
        )
        wall = time.perf_counter() - t0
    cpu1, sys1 = cl.cpu_split()
    return Timed(res, wall, cpu1 - cpu0, sys1 - sys0, mem)


def delete_namespace(redis_url: str, namespace: str) -> int:
    import redis

    r = redis.Redis.from_url(redis_url)
    n = 0
    batch = []
    for key in r.scan_iter(match=f"{namespace}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            n += r.delete(*batch)
            batch = []
    if batch:
        n += r.delete(*batch)
    return n


def warm_numba() -> float:
    """Compile or load every kernel in a separate process (builds numba's on-disk cache)."""
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from engine.kernels import warmup_locked; warmup_locked()"],
        check=True,
        cwd=REPO,
    )
    return time.perf_counter() - t0


# ------------------------------------------------------------------ sections
def section_plan(factors, panel, block_rows) -> None:
    t, n = panel.shape
    print(f"\n== 1. plan: alpha101 + alpha158 = {len(factors)} factors on {t} dates x {n} symbols")
    default = plan(factors, panel, n_threads=2)
    used = plan(factors, panel, n_threads=2, block_rows=block_rows) if block_rows else default
    halo = lambda p: "all history" if p.halo >= UNBOUNDED else f"{p.halo} rows"  # noqa: E731
    rows = []
    plans = [("engine default", default), ("used here", used)]
    if (t, n) != (2500, 5000):
        plans.append(
            (
                "engine default, 2500 x 5000 (plan only)",
                Plan(default.exprs, (2500, 5000), n_threads=2),
            )
        )
    for label, p in plans:
        if label == "used here" and p is default:
            continue
        # rows of input a task reads: each field over the block and its own extra rows
        field_rows = {
            n.expr.name: n.need + n.own_lookback
            for n in p.nodes.values()
            if isinstance(n.expr, Field)
        }
        reads = sum(
            b1 - max(0, b0 - extra) for b0, b1 in p.blocks for extra in field_rows.values()
        ) / max(1, len(field_rows))
        rows.append(
            [
                label,
                p.nodes_before_sharing,
                len(p.nodes),
                len(p.blocks),
                p.block_rows,
                p.max_lookback,
                halo(p),
                f"{p.task_bytes(p.block_rows) / 2**20:,.0f}",
                f"{reads / p.shape[0]:.1f}x",
                f"{p.shape[0] * p.shape[1] * 8 * len(p.fields) / GIB:,.2f}",
            ]
        )
    print(
        table(
            [
                "plan",
                "nodes before sharing",
                "nodes after",
                "blocks",
                "rows/block",
                "max lookback (rows)",
                "halo",
                "est. MiB/task",
                "input rows read / panel rows",
                "panel GiB (shared file; or scattered x replicas)",
            ],
            rows,
        )
    )
    print(f"  cached nodes ({used.cache_nodes}): {sum(x.cached for x in used.nodes.values())}")


def section_correctness(factors, mem_limit) -> None:
    small = synthetic(120, 700, seed=5)
    print(
        f"\n== 2. correctness on a small panel ({small.shape[0]} dates x {small.shape[1]} symbols)"
    )
    ref = evaluate(factors, small)
    cl = Cluster(2, mem_limit)
    try:
        ns = f"bench-check-{uuid.uuid4().hex[:8]}"
        res = run(factors, small, cl, namespace=ns, block_rows=32, redis_url=None).result
        res2 = run(
            factors,
            small,
            cl,
            namespace=ns + "s",
            block_rows=32,
            redis_url=None,
            sink=FiniteCount(),
        ).result
    finally:
        cl.close()
    nan_mism = 0
    max_rel = 0.0
    worst = ""
    for name, a in ref.items():
        b = res[name]
        fa, fb = np.isfinite(a), np.isfinite(b)
        nan_mism += int((fa != fb).sum())
        both = fa & fb
        if both.any():
            d = np.abs(a[both] - b[both]) / np.maximum(np.abs(a[both]), 1e-300)
            d = d[np.abs(a[both]) > 1e-12]
            if d.size and d.max() > max_rel:
                max_rel, worst = float(d.max()), name
    finite = int(sum(np.isfinite(a).sum() for a in ref.values()))
    ok = nan_mism == 0 and max_rel <= 1e-12 and res2.rows_written == finite
    print(
        f"  compute (2 workers, {len(res.plan.blocks)} blocks of 32 rows) vs evaluate: "
        f"{len(ref)} factors, NaN-pattern mismatches {nan_mism}, max rel diff {max_rel:.2e}"
        f"{f' ({worst})' if worst else ''}; sink finite count {res2.rows_written:,} vs "
        f"evaluate {finite:,} -> {'OK' if ok else 'MISMATCH'}"
    )


def section_cache(factors, panel, args, redis_url, label) -> dict:
    t, n = panel.shape
    cells = len(factors) * t * n
    ns = f"bench-{uuid.uuid4().hex[:12]}"
    print(
        f"\n== 3. cold / warm runs, {label}: {t} dates x {n} symbols x {len(factors)} factors "
        f"= {cells / 1e9:.2f} G factor-cells; 2 workers x 1 thread, memory_limit "
        f"{args.worker_memory} each; L1 20% of that per worker (the default); "
        f"L2 {'Redis ' + redis_url + ' namespace ' + ns if redis_url else 'off'}"
    )
    rows = []
    mem = {}
    finite = set()

    def add(name: str, t: Timed) -> None:
        res, wall, cpu, m = t.result, t.wall, t.cpu, t.memory
        s = res.stats
        rows.append(
            [
                name,
                f"{wall:.1f}",
                f"{cpu:.1f}",
                rate(cells, wall),
                len(res.plan.blocks),
                res.computed_nodes,
                s.l1_hits,
                s.l2_hits,
                s.misses,
                s.stored,
                f"{s.hit_rate:.0%}",
                f"{res.rows_written:,}",
                gib(m.client_max),
                gib(m.worker_max),
            ]
        )
        mem[name] = m
        finite.add(res.rows_written)

    def timed(cl: Cluster):
        """One run of the factors on ``cl`` in this section's namespace, values to the sink."""
        return run(
            factors,
            panel,
            cl,
            namespace=ns,
            block_rows=args.block_rows,
            redis_url=redis_url,
            sink=FiniteCount(),
            replicas=args.replicas,
        )

    try:
        cl = Cluster(2, args.worker_memory)
        try:
            add("cold", timed(cl))
            add("warm-L1 (same cluster)", timed(cl))
        finally:
            cl.close()
        if redis_url:
            cl = Cluster(2, args.worker_memory)
            try:
                add("warm-L2 (new cluster)", timed(cl))
            finally:
                cl.close()
    finally:
        if redis_url:
            deleted = delete_namespace(redis_url, ns)
            print(f"  (deleted {deleted} Redis keys of namespace {ns})")
    print(
        table(
            [
                "run",
                "wall s",
                "CPU s",
                "factor-cells/s",
                "blocks",
                "node computations",
                "L1 hits",
                "L2 hits",
                "misses",
                "stored",
                "hit rate",
                "finite cells (sink)",
                "client peak RSS",
                "max worker peak RSS",
            ],
            rows,
        )
    )
    print(f"  finite-cell checksum identical across runs: {'yes' if len(finite) == 1 else 'NO'}")
    return mem


def section_scaling(factors, panel, args) -> None:
    t, n = panel.shape
    cells = len(factors) * t * n
    print(
        f"\n== 4. scaling, caches off: {t} dates x {n} symbols x {len(factors)} factors "
        f"({cells / 1e9:.2f} G factor-cells), threads_per_worker=1, fresh cluster per run"
    )
    rows = []
    base = None
    for workers, numba_threads, note in (
        (1, 1, "numba 1 thread"),
        (2, 1, "numba 1 thread each"),
        (1, None, "engine default: numba threads = cores/worker = 2"),
    ):
        cl = Cluster(workers, args.worker_memory, numba_threads)
        try:
            res, wall, cpu, _, m = run(
                factors,
                panel,
                cl,
                namespace=f"bench-s-{uuid.uuid4().hex[:8]}",
                block_rows=args.block_rows,
                redis_url=None,
                cache=False,
                sink=FiniteCount(),
                replicas=1,
            )
        finally:
            cl.close()
        base = base or wall
        rows.append(
            [
                f"{workers} worker(s), {note}",
                len(res.plan.blocks),
                f"{wall:.1f}",
                f"{cpu:.1f}",
                rate(cells, wall),
                f"{base / wall:.2f}x",
                gib(m.worker_max),
            ]
        )
    print(
        table(
            [
                "cluster",
                "blocks",
                "wall s",
                "CPU s",
                "factor-cells/s",
                "speed-up vs 1 worker",
                "max worker peak RSS",
            ],
            rows,
        )
    )


def section_qlib(args) -> None:
    from compare_qlib import differences, float32_panel, long_bars

    t, n = args.qlib_dates, args.qlib_symbols
    print(
        f"\n== 6. Qlib comparison: Alpha158, {t} dates x {n} symbols (synthetic, float32-rounded)"
    )
    panel = float32_panel(synthetic(n, t, seed=11))
    alpha158 = library.load("alpha158")
    # removed below, or by its finaliser if a run fails
    tmpdir = tempfile.TemporaryDirectory(prefix="bench_engine_qlib_")
    tmp = Path(tmpdir.name)
    long_bars(panel).to_parquet(tmp / "bars.parquet", index=False)
    cmd = [
        args.qlib_python,
        str(REPO / "bench" / "_qlib_job.py"),
        "--bars",
        str(tmp / "bars.parquet"),
        "--out",
        str(tmp / "qlib.parquet"),
        "--store",
        str(tmp / "store"),
        "--kernels",
        str(args.qlib_kernels),
    ]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    proc_s = time.perf_counter() - t0
    if done.returncode != 0:
        print(f"  Qlib failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        tmpdir.cleanup()
        return
    import json

    info = json.loads(done.stdout.strip().splitlines()[-1])
    # Qlib's values are read after alphaforge's runs (below), not held in memory meanwhile
    qlib_out = tmp / "qlib.parquet"

    def cold(cl: Cluster, **kw) -> Timed:
        """One run on ``cl`` with a fresh cache namespace."""
        namespace = f"bench-q-{uuid.uuid4().hex[:8]}"
        return run(alpha158, panel, cl, namespace=namespace, block_rows=None, redis_url=None, **kw)

    cl = Cluster(2, args.worker_memory)
    try:
        first = cold(cl)
    finally:
        cl.close()
    cl = Cluster(2, args.worker_memory)
    try:
        cl.client.run(_preload_kernels)
        pre = cold(cl)
        off = cold(cl, cache=False)
        # the same work with nothing gathered: no result file, but each block's values are
        # held on its worker for the sink (129 MB a block, new heap pages the first time)
        reduced = cold(cl, cache=False, sink=FiniteCount())
        net = cold(cl, shared_memory=False)
    finally:
        cl.close()
    cl = Cluster(2, args.worker_memory, dask_malloc=True)
    try:
        trim = cl.client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        trim = ",".join(sorted({str(v) for v in trim.values()}))
        cl.client.run(_preload_kernels)
        dmalloc = cold(cl)
    finally:
        cl.close()
    try:
        frame = pd.read_parquet(qlib_out).set_index(["date", "symbol"])
    finally:
        tmpdir.cleanup()
    full = pd.MultiIndex.from_product([panel.dates, panel.symbols], names=["date", "symbol"])
    frame = frame.reindex(full)
    theirs = {c: frame[c].to_numpy(dtype=np.float64).reshape(t, n) for c in frame.columns}
    evaluate(alpha158, panel)  # kernels loaded in this process; first call excluded
    c0, w0 = psutil.Process().cpu_times(), time.perf_counter()
    ref = evaluate(alpha158, panel)
    c1 = psutil.Process().cpu_times()
    wall_e = time.perf_counter() - w0
    cpu_e, sys_e = c1.user + c1.system - c0.user - c0.system, c1.system - c0.system
    cells = len(alpha158) * t * n
    res = first.result

    def timing_row(label: str, wall_s: float, cpu_s: float, sys_s: float, note: str, digits=2):
        return [
            label,
            f"{wall_s:.{digits}f}",
            f"{cpu_s:.1f}",
            f"{sys_s:.2f}",
            rate(cells, wall_s),
            f"{cpu_s / (cells / 1e6):.3f}",
            note,
        ]

    def row(label: str, r: Timed, note: str):
        return timing_row(label, r.wall, r.cpu, r.system, note)

    print(
        table(
            [
                "engine",
                "wall s",
                "CPU s",
                "of which system",
                "factor-cells/s",
                "CPU-s/M cells",
                "note",
            ],
            [
                timing_row(
                    f"Qlib {info['qlib']} D.features",
                    info["wall_s"],
                    info["cpu_s"],
                    info.get("sys_s", float("nan")),
                    f"kernels={info['kernels']}, fresh process, expression/dataset cache off; "
                    f"excl. qlib.init {info['init_s']:.1f}s, bin dump {info['dump_s']:.1f}s",
                    digits=1,
                ),
                row(
                    "alphaforge compute, cold",
                    first,
                    f"fresh 2-worker LocalCluster (start-up excluded), empty L1, no L2, "
                    f"{len(res.plan.blocks)} blocks, values gathered; kernels loading since "
                    "worker start-up",
                ),
                row(
                    "alphaforge, cold caches",
                    pre,
                    "another fresh cluster, kernels pre-loaded in the workers (client.run) "
                    "before timing; caches empty",
                ),
                row(
                    "alphaforge, caches off",
                    off,
                    "same cluster, cache=False (nothing stored: Qlib's caches are off too)",
                ),
                row(
                    "alphaforge, caches off, reduced",
                    reduced,
                    "same cluster, cache=False, values reduced on the workers (a sink counting "
                    "finite cells) instead of gathered: no result file, a block's values held "
                    "for the sink; not the bar's setting",
                ),
                row(
                    "alphaforge, cold caches, network",
                    net,
                    "same cluster, results sent back through Dask (shared_memory=False)",
                ),
                row(
                    "alphaforge, cold caches, Dask malloc",
                    dmalloc,
                    f"workers with Dask's default environment (MALLOC_TRIM_THRESHOLD_={trim} "
                    "only), not cluster.connect.WORKER_MALLOC_ENV",
                ),
                timing_row(
                    "alphaforge engine.evaluate",
                    wall_e,
                    cpu_e,
                    sys_e,
                    "single process (this one), no Dask, 2nd call (kernels loaded), no caches",
                ),
            ],
        )
    )
    qw, qc = info["wall_s"], info["cpu_s"]
    qu = qc - info.get("sys_s", float("nan"))  # Qlib's user CPU

    def ratios(r: Timed) -> str:
        user = qu / max(r.cpu - r.system, 1e-9)
        return f"wall {qw / r.wall:.1f}x, CPU {qc / max(r.cpu, 1e-9):.1f}x (user CPU {user:.1f}x)"

    print(
        f"  speed-up alphaforge vs Qlib, cold: {ratios(first)}; with kernels pre-loaded: "
        f"{ratios(pre)} (bar: >= 20x, i.e. <= {qw / 20:.2f} s wall)"
    )
    finite = sum(int(np.isfinite(res[k]).sum()) for k in alpha158)
    print(
        f"  caches off: {ratios(off)}; values reduced, not gathered: {ratios(reduced)} (finite "
        f"cells counted on the workers {reduced.result.rows_written:,}, in the gathered result "
        f"{finite:,}); results over the network: {ratios(net)}; Dask's malloc "
        f"settings: {ratios(dmalloc)}; single-process evaluate: wall {qw / wall_e:.1f}x, CPU "
        f"{qc / max(cpu_e, 1e-9):.1f}x (user CPU {qu / max(cpu_e - sys_e, 1e-9):.1f}x)"
    )
    print(
        "  'of which system': CPU time in the kernel, on this VM mostly handing out memory pages "
        "the host has taken back (bench/bench_memory.py measures the cost); user CPU is the "
        "engines' own work. The result alone "
        f"is {len(alpha158) * t * n * 8 / 1e6:.0f} MB of float64"
    )
    same = all(
        np.array_equal(res[k], r.result[k], equal_nan=True)
        for r in (pre, off, net, dmalloc)
        for k in alpha158
    ) and all(np.allclose(res[k], ref[k], rtol=1e-12, atol=0, equal_nan=True) for k in alpha158)
    print(
        f"  the five compute runs agree bit for bit, and equal evaluate (rtol 1e-12): "
        f"{'yes' if same else 'NO'}"
    )
    # cells whose 61-row window (the longest Alpha158 window + 1) has every bar of the stock
    ok = np.ones(panel.shape, dtype=bool)
    for f in ("open", "high", "low", "close", "volume", "vwap"):
        ok &= np.isfinite(panel[f])
    run_len = pd.DataFrame(ok.astype(np.int64)).rolling(61, min_periods=61).sum().to_numpy()
    clean = run_len == 61
    for label, mask in (
        ("all cells", None),
        (f"clean windows ({clean.mean():.0%} of cells)", clean),
    ):
        worst_abs = worst_rel = 0.0
        wa = wr = ""
        nan_ours = nan_theirs = 0
        mism = []
        for name in library.formulas("alpha158"):
            ours, ref = res[name], theirs[name]
            if mask is not None:
                ours, ref = np.where(mask, ours, np.nan), np.where(mask, ref, np.nan)
            diff = differences(ours, ref)
            if len(diff) == 5:  # newer compare_qlib: (NaN ours, NaN Qlib, inf, abs, rel)
                a, b, inf, d, r = diff
                b += inf
            else:
                a, b, d, r = diff
            nan_ours += a
            nan_theirs += b
            if a or b:
                mism.append(name)
            if d > worst_abs:
                worst_abs, wa = d, name
            if r > worst_rel:
                worst_rel, wr = r, name
        print(
            f"  values on {label} (Qlib float32 vs alphaforge float64; rel where |Qlib| > 1e-3): "
            f"max abs diff {worst_abs:.3e} ({wa}), max rel diff {worst_rel:.3e} ({wr}); "
            f"NaN/inf-pattern mismatches: {nan_ours:,} cells NaN in alphaforge only, "
            f"{nan_theirs:,} NaN (or a different inf) in Qlib only, "
            f"in {len(mism)}/{len(alpha158)} features"
            + (f" ({', '.join(mism[:10])}{' ...' if len(mism) > 10 else ''})" if mism else "")
        )
    try:
        from compare_qlib import within_float32
    except ImportError:
        within_float32 = None
    if within_float32 is not None:
        bad = [k for k in library.formulas("alpha158") if not within_float32(res[k], theirs[k])]
        print(
            f"  equal at float32 precision (compare_qlib.within_float32: same NaN/inf cells, "
            f"rtol 1e-4 + atol 1e-5 x max|value|): {len(alpha158) - len(bad)}/{len(alpha158)}"
            + (f"; not: {', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}" if bad else "")
        )
    print(f"  (Qlib subprocess total {proc_s:.1f}s incl. interpreter start, bin dump, init)")


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dates", type=int, default=2500)
    ap.add_argument("--symbols", type=int, default=5000)
    ap.add_argument("--small", action="store_true", help="quick run: 500 dates x 200 symbols")
    ap.add_argument(
        "--block-rows",
        type=int,
        default=None,
        help="rows per block (default: the engine's cost/memory model)",
    )
    ap.add_argument("--replicas", type=int, default=2, help="copies of each input slice")
    ap.add_argument("--worker-memory", default="8GiB", help="LocalCluster memory_limit/worker")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379")
    ap.add_argument(
        "--l2-max-gib",
        type=float,
        default=1.5,
        help="largest cached volume; beyond it the cache runs use fewer symbols "
        "(default 1.5 GiB: fits the two workers' L1 of 1 GiB each)",
    )
    ap.add_argument(
        "--scale-symbols",
        type=int,
        default=None,
        help="symbols for the 1-vs-2-worker runs (default: symbols / 5)",
    )
    ap.add_argument("--qlib-python", default="/work/qlibvenv/bin/python")
    ap.add_argument("--qlib-dates", type=int, default=2000)
    ap.add_argument("--qlib-symbols", type=int, default=200)
    ap.add_argument("--qlib-kernels", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma list of: check,cache,l2,scaling,qlib")
    ap.add_argument("--qlib-only", action="store_true", help="section 6 only, in this process")
    args = ap.parse_args(argv)
    if args.qlib_only:
        logging.getLogger("distributed").setLevel(logging.ERROR)
        section_qlib(args)
        return 0
    if args.small:
        args.dates, args.symbols = 500, 200
        args.qlib_dates, args.qlib_symbols = 500, 50
    skip = set(filter(None, args.skip.split(",")))
    logging.getLogger("distributed").setLevel(logging.ERROR)

    print(
        f"bench_engine: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} cores, "
        f"{gib(psutil.virtual_memory().total)} RAM ({gib(psutil.virtual_memory().available)} "
        f"available), load avg {os.getloadavg()[0]:.2f}; timings are wall-clock on a shared "
        f"machine (noisy)"
    )
    print(
        f"numba kernels compiled/loaded once in a separate process first: "
        f"{warm_numba():.1f}s (not in any timing below)"
    )

    factors = {**library.load("alpha101"), **library.load("alpha158")}
    t0 = time.perf_counter()
    panel = synthetic(args.symbols, args.dates, seed=0)
    print(
        f"synthetic panel {args.dates} dates x {args.symbols} symbols: "
        f"{len(panel.field_names)} fields + industry, "
        f"{gib(sum(np.asarray(panel[f]).nbytes for f in panel.field_names))} float64, "
        f"built in {time.perf_counter() - t0:.1f}s"
    )
    budget = psutil.virtual_memory().total
    print(
        f"memory budget: client + workers <= {gib(budget * 0.8)} (80% of RAM); "
        f"each worker's memory_limit {args.worker_memory} (Dask spills at 60%, pauses at 80%)"
    )

    section_plan(factors, panel, args.block_rows)
    if "check" not in skip:
        section_correctness(factors, args.worker_memory)

    mems = {}
    if "cache" not in skip:
        p = plan(factors, panel, n_threads=2, block_rows=args.block_rows)
        cached = sum(x.cached for x in p.nodes.values())
        l2_bytes = cached * panel.shape[0] * panel.shape[1] * 8
        use_l2 = "l2" not in skip
        if use_l2 and l2_bytes > args.l2_max_gib * GIB:
            mems.update(section_cache(factors, panel, args, None, "full panel, L1 only"))
            n_l2 = max(20, int(panel.shape[1] * args.l2_max_gib * GIB / l2_bytes))
            print(
                f"  (L2 would hold {cached} cached nodes x cells = {gib(l2_bytes)} > "
                f"--l2-max-gib {args.l2_max_gib}: the Redis runs use {n_l2} symbols)"
            )
            sub = synthetic(n_l2, args.dates, seed=0)
            mems.update(
                {
                    f"{k} [L2 panel]": v
                    for k, v in section_cache(
                        factors, sub, args, args.redis, "Redis L2 panel"
                    ).items()
                }
            )
        else:
            mems.update(
                section_cache(factors, panel, args, args.redis if use_l2 else None, "full panel")
            )

    if "scaling" not in skip:
        n_scale = args.scale_symbols or max(50, args.symbols // 5)
        section_scaling(factors, synthetic(n_scale, args.dates, seed=0), args)

    if mems:
        print(f"\n== 5. peak memory (RSS sampled every 0.2 s), budget {gib(budget * 0.8)} total")
        print(
            table(
                [
                    "run",
                    "client peak RSS",
                    "max worker peak RSS",
                    "peak sum of workers",
                    "client + workers",
                ],
                [
                    [
                        k,
                        gib(m.client_max),
                        gib(m.worker_max),
                        gib(m.workers_sum_max),
                        gib(m.client_max + m.workers_sum_max),
                    ]
                    for k, m in mems.items()
                ],
            )
        )

    if "qlib" not in skip:
        del panel, factors
        sys.stdout.flush()
        subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--qlib-only",
                *("--qlib-python", args.qlib_python, "--worker-memory", args.worker_memory),
                *("--qlib-dates", str(args.qlib_dates), "--qlib-symbols", str(args.qlib_symbols)),
                *("--qlib-kernels", str(args.qlib_kernels)),
            ],
            check=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
