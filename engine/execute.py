"""The executor: runs a :class:`~engine.plan.Plan` on a Dask cluster, one task per time block.

The algorithm:

1. Parse and plan the factors (``engine.plan``); choose blocks for the cluster's thread count.
2. Fingerprint every field over every block (the *data version*); a node's cache key combines
   its structural hash with the fingerprints of the rows and fields it reads, so changed data
   invalidates exactly the blocks it touches.
3. Cut the panel into per-block slices (the block plus its halo of past rows) and scatter each
   once; a task receives a reference, never an embedded copy.
4. Submit one task per block (``run_block``) with ``retries``; keys read
   ``alphaforge-block-<first date>..<last date>`` on the dashboard. Dask's work stealing
   balances the blocks across workers.
5. In the task, each output is materialised on demand: a cached node is taken from L1/L2;
   otherwise its children are materialised over the rows it needs, its kernel runs, and the
   block's own rows are stored in the caches. Intermediates are freed by reference count.
6. Gather block results in completion order (progress bar and hooks), assemble (T, N) arrays,
   and report cache hits, misses, bytes and time saved per level.

The result equals ``engine.evaluate`` on the whole panel: every node is computed over enough
past rows that each output row sees the same window, and unbounded-memory operators see all
history. Rolling kernels that keep running sums may differ in the last bits where a block's
running sum starts at a different row (summation order), so comparisons use 1e-12 relative.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import gc
import hashlib
import logging
import mmap
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from engine.cache import (
    CacheStats,
    MemoryLRU,
    TieredCache,
    cache_key,
    process_l1,
    process_l2,
)
from engine.errors import PlanError
from engine.evaluate import as_expressions, group_level
from engine.kernels import BLOCK_ALIGNED, MULTI
from engine.plan import UNBOUNDED, Plan
from engine.shared_input import SharedInput, can_read
from engine.shared_input import create as create_shared_input
from engine.shared_output import SharedOutput
from engine.shared_output import create as create_shared_output
from factors.expr import Call, Const, Expr, Field

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ data handed to tasks
@dataclasses.dataclass
class BlockData:
    """The rows ``[row0, row0 + len)`` of the fields and groups one block task reads."""

    row0: int
    fields: dict[str, np.ndarray]
    groups: dict[str, np.ndarray]
    n_symbols: int

    def field(self, name: str, r0: int, r1: int) -> np.ndarray:
        if name not in self.fields:
            raise PlanError(f"unknown field {name!r}; the panel has {', '.join(self.fields)}")
        return self.fields[name][r0 - self.row0 : r1 - self.row0]

    @property
    def n_rows(self) -> int:
        arrays = [*self.fields.values(), *self.groups.values()]
        return len(arrays[0]) if arrays else 0

    @classmethod
    def concat(cls, parts: Sequence[BlockData]) -> BlockData | ChunkedData:
        """Consecutive chunks read as one (see :class:`ChunkedData`)."""
        return parts[0] if len(parts) == 1 else ChunkedData(parts)

    def group(self, name: str, r0: int, r1: int) -> np.ndarray:
        name = group_level(self.groups, name)
        if name not in self.groups:
            known = ", ".join(self.groups) or "none"
            raise PlanError(f"unknown group field {name!r}; the panel's group fields: {known}")
        return self.groups[name][r0 - self.row0 : r1 - self.row0]


class ChunkedData:
    """Consecutive :class:`BlockData` chunks (a block's halo and its rows) read as one.

    A node reads a field over its own extra rows, often far fewer than the block's halo (in
    alpha101 + alpha158 over 2500 x 5000, the halo is 501 rows and ``high`` needs 70,
    ``cap`` none): only the rows and fields asked for are copied out of the chunks, when
    asked for, and rows inside one chunk are a view (no copy)."""

    def __init__(self, parts: Sequence[BlockData]):
        self.parts = sorted(parts, key=lambda p: p.row0)
        self.n_symbols = self.parts[0].n_symbols
        self.groups = self.parts[0].groups  # its names, for group_level; rows via group()

    def _rows(self, read: Callable[[BlockData, int, int], np.ndarray], r0: int, r1: int):
        pieces = []
        for p in self.parts:
            p0, p1 = p.row0, p.row0 + p.n_rows
            if p1 > r0 and p0 < r1:
                pieces.append(read(p, max(r0, p0), min(r1, p1)))
        if sum(len(x) for x in pieces) != r1 - r0:
            raise PlanError(f"rows {r0}..{r1} are not all in this task's input chunks")
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def field(self, name: str, r0: int, r1: int) -> np.ndarray:
        return self._rows(lambda p, a, b: p.field(name, a, b), r0, r1)

    def group(self, name: str, r0: int, r1: int) -> np.ndarray:
        return self._rows(lambda p, a, b: p.group(name, a, b), r0, r1)


@dataclasses.dataclass(frozen=True)
class CacheConfig:
    """What a block task needs to reach the caches."""

    namespace: str = "alphaforge"
    l1_bytes: int = 1 << 30
    redis_url: str | None = None
    redis_ttl: int = 7 * 24 * 3600
    redis_timeout: float = 2.0
    enabled: bool = True
    run: str = ""  # the run's token: L1 never evicts a run's own entries for it
    l2_block_bytes: int | None = None  # what one block task may write to Redis (None: no limit)


@dataclasses.dataclass
class BlockResult:
    """What one block task sends back."""

    b0: int
    b1: int
    values: dict[str, np.ndarray] | None
    stats: CacheStats
    computed: int
    seconds: float
    node_seconds: dict[str, float]
    warnings: list[str]
    sink_rows: int = 0
    worker: str = ""


# ------------------------------------------------------------------ the block task
def _range_version(
    digests: Mapping[str, np.ndarray], fields: Sequence[str], r0: int, r1: int
) -> str:
    """Data version of rows ``[r0, r1)`` of ``fields``: a hash of their per-row digests."""
    h = hashlib.blake2b(digest_size=16)  # row digests carry their dates: no row numbers here
    for f in fields:
        h.update(f.encode() + b"\0")
        h.update(digests[f][r0:r1].tobytes())
    return h.hexdigest()


#: The calendar and universe as a pseudo-field: every key depends on them, so a node that reads
#: no field (a constant expression) is never shared between panels of different shapes.
DATES = "__dates__"


def _node_fields(plan: Plan, groups: Mapping[str, Any]) -> Callable[[str], tuple[str, ...]]:
    """``fields(key)``: the fields (and the calendar) a node reads, each node's set built once
    from its children's. ``groups`` needs only the group names: the cached recursive closure
    is a reference cycle, and whatever it holds lives until a full collection."""

    @functools.cache
    def own(key: str) -> frozenset[str]:
        e = plan.nodes[key].expr
        if isinstance(e, Field):
            return frozenset((group_level(groups, e.name), DATES))
        return frozenset({DATES}).union(*(own(c) for c in plan.nodes[key].children))

    @functools.cache
    def fields(key: str) -> tuple[str, ...]:
        return tuple(sorted(own(key)))

    return fields


_WARM_LOCK = threading.Lock()
_WARMED = False


def _warm_once() -> None:
    """Compile (or load from numba's cache) every kernel once per process, under a host lock."""
    global _WARMED
    with _WARM_LOCK:
        if not _WARMED:
            from engine.kernels import warmup_locked

            warmup_locked()
            _WARMED = True


def warm_in_background() -> threading.Thread:
    """Start loading the kernels in a daemon thread (a worker calls this when it starts, see
    ``cluster.worker``): the worker takes tasks at once, and the first block task waits only
    for what is left of the load."""
    thread = threading.Thread(target=_warm_once, name="alphaforge-kernel-warmup", daemon=True)
    thread.start()
    return thread


#: Result files smaller than this are not mapped into the memory cache (see below).
MIN_SHARED_FILE = 4 << 20


def _mapped_input(spec: SharedInput) -> BlockData:
    """The whole panel as views of the run's shared input file (copy-on-write)."""
    arrays = spec.arrays()
    if arrays is None:
        raise PlanError(
            f"this worker cannot open the run's input file {spec.path} (a worker on another "
            "host joined during the run?)"
        )
    fields, groups = arrays
    return BlockData(row0=0, fields=fields, groups=groups, n_symbols=spec.n_symbols)


class _SharedL1:
    """Lets the memory cache hold a block's outputs as views of the rows just written to the
    shared result files, so their private copies are freed and reused at once. Without this a
    cold run keeps a second copy of every output: Alpha158 over 2000 x 200, ~260 MB per
    worker, every page newly touched (on a VM, 1-3 s of system time per worker). Each file is
    charged to the cache once, in whole pages (``MemoryLRU.share``, which refuses a file over
    half the cache). Files under ``MIN_SHARED_FILE`` are not mapped: little is saved, and each
    mapping counts against the process's map limit (``vm.max_map_count``, 65530 by default),
    which this bounds to ``l1 / MIN_SHARED_FILE``."""

    def __init__(
        self,
        shared: SharedOutput,
        views: dict[str, np.ndarray],
        charges: list[int],
        l1: MemoryLRU,
        run: str,
        b0: int,
        b1: int,
    ):
        self.shared, self.views, self.charges, self.l1, self.run = shared, views, charges, l1, run
        self.b0, self.b1 = b0, b1
        self.done: set[str] = set()

    @classmethod
    def make(
        cls, shared: SharedOutput, l1: MemoryLRU, run: str, b0: int, b1: int
    ) -> _SharedL1 | None:
        """None when the files are too small to map, too big for the cache, or not visible."""
        sizes = [shared.file_bytes(k) for k in range(len(shared.paths))]
        if min(sizes) < MIN_SHARED_FILE or 2 * min(sizes) > l1.max_bytes:
            return None
        views = shared.mapped()
        if views is None:
            return None
        charges = [-(-size // mmap.PAGESIZE) * mmap.PAGESIZE for size in sizes]
        return cls(shared, views, charges, l1, run, b0, b1)

    def share(self, i: int, cache_key: str) -> None:
        """Replace output ``names[i]``'s cache entry under ``cache_key`` by its view."""
        if cache_key in self.done:  # two outputs of one node
            return
        self.done.add(cache_key)
        k = self.shared.file_of(i)
        view = self.views[self.shared.names[i]][self.b0 : self.b1]
        self.l1.share(cache_key, view, f"file:{self.shared.paths[k]}", self.charges[k], self.run)


def run_block(
    plan: Plan,
    data: BlockData | ChunkedData | list[BlockData],
    b0: int,
    b1: int,
    digests: Mapping[str, np.ndarray],
    cache: CacheConfig,
    numba_threads: int = 0,
    sink: Callable[[int, int, dict[str, np.ndarray]], int] | None = None,
    shared: SharedOutput | None = None,
) -> BlockResult:
    """Compute every output of ``plan`` on rows ``[b0, b1)`` (runs on a worker).

    ``data`` holds the rows from the block's halo to ``b1``, or is the list of grid chunks
    that cover them. The values go to ``sink`` if given, else into the ``shared`` result files
    if this worker can see it, else back to the client in the result."""
    from engine.kernels import KERNELS

    if isinstance(data, SharedInput):
        data = _mapped_input(data)
    elif isinstance(data, list):
        data = BlockData.concat(data)

    _warm_once()
    if numba_threads:
        import numba

        numba.set_num_threads(max(1, min(numba_threads, numba.config.NUMBA_NUM_THREADS)))
    started = time.perf_counter()
    tiers = TieredCache(
        process_l1(cache.l1_bytes) if cache.enabled else None,
        process_l2(cache.redis_url, cache.redis_ttl, cache.redis_timeout)
        if cache.enabled and cache.redis_url
        else None,
        run=cache.run,
        l2_budget=cache.l2_block_bytes,
    )
    block_rows = plan.block_rows
    n_sym = data.n_symbols
    memo: dict[str, tuple[int, np.ndarray]] = {}
    # a node is freed once its parents and, for an output, its extraction have used it
    remaining = {k: n.consumers + len(n.outputs) for k, n in plan.nodes.items()}
    node_seconds: dict[str, float] = {}
    computed = 0
    fields_of = _node_fields(plan, dict.fromkeys(data.groups))  # names only: see there
    versions: dict[tuple[tuple[str, ...], int, int], str] = {}  # many nodes share a version
    made: set[str] = set()  # nodes computed or read from a cache (a sibling is made once)

    def start_of(key: str) -> int:
        need = plan.nodes[key].need
        return 0 if need >= UNBOUNDED else max(0, b0 - need)

    origin = plan.origin
    t_panel = plan.shape[0]

    def grid_rows(g: int) -> tuple[int, int]:
        """Panel rows of absolute grid block ``g``, cut to the panel."""
        return max(g * block_rows, origin) - origin, min(
            (g + 1) * block_rows, origin + t_panel
        ) - origin

    def key_for(key: str, g: int) -> str:
        node = plan.nodes[key]
        a0, a1 = grid_rows(g)
        r0 = 0 if node.lookback >= UNBOUNDED else max(0, a0 - node.lookback)
        span = (fields_of(key), r0, a1)
        if span not in versions:
            versions[span] = _range_version(digests, *span)
        return cache_key(cache.namespace, key, versions[span], origin + a0, origin + a1)

    own_block = (origin + b0) // block_rows
    # A block cut short by start_row holds only part of its grid block: it is neither stored
    # under the grid block's key nor looked up (its rows would not fill the entry).
    whole = cache.enabled and grid_rows(own_block) == (b0, b1)

    def grid_entry(key: str, g: int) -> np.ndarray | None:
        """Node ``key`` on grid block ``g`` from the caches, if it has the block's shape."""
        a0, a1 = grid_rows(g)
        return tiers.get(key_for(key, g), shape=(a1 - a0, n_sym))

    def from_cache(key: str, start: int) -> np.ndarray | None:
        hit = grid_entry(key, own_block)
        if hit is None:
            return None
        parts = [hit]
        first = (origin + start) // block_rows
        for g in range(own_block - 1, first - 1, -1):
            prev = grid_entry(key, g)
            if prev is None:
                return None
            parts.insert(0, prev)
        stacked = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return stacked[start - grid_rows(first)[0] :]

    def made_now(key: str, start: int, arr: np.ndarray) -> tuple[int, np.ndarray]:
        """Keep a node's value (computed or read from a cache): its inputs have one use less,
        and one no longer used is freed."""
        for c in set(plan.nodes[key].children):
            remaining[c] -= 1
            if remaining[c] <= 0:
                memo.pop(c, None)
        made.add(key)
        memo[key] = (start, arr)
        return memo[key]

    def finish(key: str, start: int, arr: np.ndarray, elapsed: float) -> tuple[int, np.ndarray]:
        """Book a computed node: its time, its cache entry, its value."""
        nonlocal computed
        computed += 1
        node_seconds[key] = elapsed
        if plan.nodes[key].cached and whole:
            tiers.put(key_for(key, own_block), arr[b0 - start :], elapsed)
        return made_now(key, start, arr)

    def cache_hit(key: str) -> tuple[int, np.ndarray] | None:
        """Node ``key`` read from a cache and kept, or None if it is not cached there."""
        if not (plan.nodes[key].cached and whole):
            return None
        start = start_of(key)
        hit = from_cache(key, start)
        return None if hit is None else made_now(key, start, hit)

    def cached_sibling(key: str) -> bool:
        """Whether sibling ``key`` is made already or is read from a cache now (looked up
        once, as its own materialize would)."""
        return key in made or cache_hit(key) is not None

    def materialize(key: str) -> tuple[int, np.ndarray]:
        if key in memo:
            return memo[key]
        hit = cache_hit(key)
        if hit is not None:
            return hit
        node = plan.nodes[key]
        e = node.expr
        start = start_of(key)
        if isinstance(e, Field):
            memo[key] = (start, data.field(e.name, start, b1))
            return memo[key]
        if isinstance(e, Const):
            memo[key] = (start, np.full((b1 - start, n_sym), e.value))
            return memo[key]
        assert isinstance(e, Call)
        grouped = e.spec.kind == "group"
        value_args = e.args[:-1] if grouped else e.args
        kids = [materialize(c.key) for c in value_args]
        group = [k for k in plan.siblings.get(key, ()) if k == key or not cached_sibling(k)]
        t0 = time.perf_counter()  # this node's own time, without its inputs' or cache reads
        s = max((k[0] for k in kids), default=start)

        def inputs(s0: int) -> list[np.ndarray]:
            arrays = [np.ascontiguousarray(carr[s0 - c0 :]) for c0, carr in kids]
            if grouped:
                arrays.append(data.group(e.args[-1].name, s0, b1))
            return arrays

        def run(s0: int) -> np.ndarray:
            try:
                return KERNELS[e.op](*inputs(s0), **e.param_dict)
            except KeyError:
                raise PlanError(f"no kernel registered for operator {e.op!r}") from None

        if len(group) > 1:
            # one pass for the node and its siblings (same inputs, same rows: Plan.siblings)
            param, keyword, multi = MULTI[e.op]
            values = [plan.nodes[k].expr.param_dict[param] for k in group]
            rest = {k: v for k, v in e.params if k != param}
            arrays = multi(*inputs(s), **rest, **{keyword: values})
            elapsed = (time.perf_counter() - t0) / len(group)
            for k, arr in zip(group, arrays):
                finish(k, start, arr[start - s :], elapsed)
            return memo[key]
        if e.op in BLOCK_ALIGNED:
            # start on an absolute multiple of w, a window early (see BLOCK_ALIGNED)
            w = int(e.param_dict[BLOCK_ALIGNED[e.op]])
            aligned = ((origin + start) // w - 1) * w - origin
            if aligned >= 0:
                assert aligned >= s, "planner gave too few extra rows"
                s = aligned
                arr = run(s)[start - s :]
            else:
                # The window's history is too short for the first rows: compute them from
                # where the data starts, and rows a window past the first aligned row
                # (exact again) from that row.
                arr = run(s)[start - s :]
                first = -origin % w
                if first + w < b1:
                    exact = run(first)
                    r0 = max(start, first + w)
                    arr[r0 - start :] = exact[r0 - first :]
        else:
            arr = run(s)[start - s :]
        return finish(key, start, arr, time.perf_counter() - t0)

    values: dict[str, np.ndarray] | None = {}
    outputs = list(enumerate(plan.outputs))
    writer, to_l1 = None, None
    if sink is None and shared is not None:
        # each output goes into the result files as soon as it is computed
        writer = shared.writer(b0)
        outputs = [(i, shared.names[i]) for i in shared.order(b0, b1)]
        if whole and tiers.l1 is not None:
            to_l1 = _SharedL1.make(shared, tiers.l1, cache.run, b0, b1)
    try:
        for i, name in outputs:
            key = plan.outputs[name]
            start, arr = materialize(key)
            # a view of the node's block rows (no copy: nothing writes to a computed node)
            rows = np.ascontiguousarray(arr[b0 - start :], dtype=np.float64)
            if writer is not None and writer.put(i, rows):
                if to_l1 is not None and plan.nodes[key].cached:
                    to_l1.share(i, key_for(key, own_block))
            else:
                values[name] = rows  # sent back: no shared files, or the tmpfs is full
            remaining[key] -= 1
            if remaining[key] <= 0:
                memo.pop(key, None)
    finally:
        if writer is not None:
            writer.close()
        # materialize refers to itself: the cycle would keep the block's input (a mapping
        # of the run's whole input file) and its last nodes alive until a full collection
        materialize = None  # noqa: F841
        data = None
        memo.clear()
    sink_rows = 0
    if sink is not None:
        sink_rows = int(sink(b0, b1, values))
    elif shared is not None and not values:
        values = None
    try:
        from distributed import get_worker

        worker = get_worker().address
    except ValueError:
        worker = "local"
    return BlockResult(
        b0=b0,
        b1=b1,
        values=None if sink is not None else values,
        stats=tiers.stats,
        computed=computed,
        seconds=time.perf_counter() - started,
        node_seconds=node_seconds,
        warnings=tiers.warnings,
        sink_rows=sink_rows,
        worker=worker,
    )


# ------------------------------------------------------------------ client side
class ComputeHooks(Protocol):
    """Observer of a run (progress bars, dashboards, tests subscribe to these)."""

    def on_plan(self, plan: Plan) -> None: ...

    def on_block(self, result: BlockResult, done: int, total: int) -> None: ...

    def on_finish(self, result: ComputeResult) -> None: ...


class DashboardEvents:
    """Publishes a run's progress as Dask scheduler events (topic ``alphaforge``), which the
    engine's dashboard page and Prometheus metrics (``cluster.dashboard``) read.

    Events are small dicts: ``plan`` (run id, factors, nodes before/after sharing, blocks,
    dates, symbols), ``block`` (dates, seconds, node computations, cache hits/misses per
    level, rows written, worker, done/total) and ``finish`` (seconds, hit rate, rows written,
    the slowest operator nodes).
    """

    TOPIC = "alphaforge"

    def __init__(self, client: Any, run: str, dates: pd.DatetimeIndex, n_symbols: int):
        self.client = client
        self.run = run
        self.dates = dates
        self.n_symbols = n_symbols

    def _log(self, msg: dict) -> None:
        try:
            self.client.log_event(self.TOPIC, {"run": self.run, **msg})
        except Exception as exc:  # monitoring must never fail a run
            log.debug("could not publish dashboard event: %s", exc)

    def on_plan(self, plan: Plan) -> None:
        self._log(
            {
                "event": "plan",
                "factors": len(plan.outputs),
                "nodes": len(plan.nodes),
                "nodes_before": plan.nodes_before_sharing,
                "blocks": len(plan.blocks),
                "first_date": f"{self.dates[0]:%Y-%m-%d}",
                "last_date": f"{self.dates[-1]:%Y-%m-%d}",
                "symbols": self.n_symbols,
            }
        )

    def on_block(self, result: BlockResult, done: int, total: int) -> None:
        st = result.stats
        self._log(
            {
                "event": "block",
                "first_date": f"{self.dates[result.b0]:%Y-%m-%d}",
                "last_date": f"{self.dates[result.b1 - 1]:%Y-%m-%d}",
                "seconds": round(result.seconds, 4),
                "computed": result.computed,
                "l1_hits": st.l1_hits,
                "l2_hits": st.l2_hits,
                "misses": st.misses,
                "rows_written": result.sink_rows,
                "worker": result.worker,
                "done": done,
                "total": total,
            }
        )

    def on_finish(self, result: ComputeResult) -> None:
        self._log(
            {
                "event": "finish",
                "seconds": round(result.seconds, 3),
                "hit_rate": round(result.stats.hit_rate, 4),
                "rows_written": result.rows_written,
                "slow": [[f, round(s, 4)] for f, s in result.slow_nodes(5)],
            }
        )


class ProgressBar:
    """A tqdm progress bar over blocks (notebook widget or terminal)."""

    def __init__(self, desc: str = "alphaforge"):
        self.desc = desc
        self._bar = None

    def on_plan(self, plan: Plan) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=len(plan.blocks), desc=self.desc, unit="block", leave=True)

    def on_block(self, result: BlockResult, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"hit {result.stats.hit_rate:.0%}", refresh=False)
            self._bar.update(1)

    def on_finish(self, result: ComputeResult) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclasses.dataclass
class ComputeResult:
    """Factor values as ``(dates, symbols)`` arrays plus what the run measured."""

    factors: dict[str, np.ndarray]
    dates: pd.DatetimeIndex
    symbols: pd.Index
    plan: Plan
    stats: CacheStats
    seconds: float
    computed_nodes: int
    block_seconds: list[float]
    node_seconds: dict[str, float]
    warnings: list[str]
    rows_written: int = 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.factors[name]

    def __iter__(self):
        return iter(self.factors)

    def __len__(self) -> int:
        return len(self.factors)

    def to_frame(self, dropna: bool = False) -> pd.DataFrame:
        """Long frame, MultiIndex ``(date, asset)``, one column per factor (alphalens)."""
        t, n = len(self.dates), len(self.symbols)
        index = pd.MultiIndex.from_arrays(
            [np.repeat(self.dates.values, n), np.tile(self.symbols.values, t)],
            names=["date", "asset"],
        )
        frame = pd.DataFrame({k: v.reshape(-1) for k, v in self.factors.items()}, index=index)
        return frame.dropna(how="all") if dropna else frame

    def slow_nodes(self, top: int = 10) -> list[tuple[str, float]]:
        """The operator nodes that took longest (seconds summed over blocks)."""
        items = sorted(self.node_seconds.items(), key=lambda kv: -kv[1])[:top]
        return [(repr(self.plan.nodes[k].expr), s) for k, s in items]

    def summary(self) -> str:
        t, n = len(self.dates), len(self.symbols)
        cells = t * n * len(self.factors)
        return (
            f"{len(self.factors)} factors x {t} dates x {n} symbols in {self.seconds:.2f}s "
            f"({cells / max(self.seconds, 1e-9) / 1e6:,.1f} M factor-cells/s); "
            f"{len(self.plan.blocks)} blocks, {self.computed_nodes} node computations; "
            + self.stats.summary()
        )


def row_digests(panel: Any, fields: Sequence[str]) -> dict[str, np.ndarray]:
    """A 16-byte fingerprint of every row of every field (or group), with its date and the
    universe (``engine.kernels.fingerprint``); a range of rows is versioned by hashing its row
    fingerprints (``_range_version``)."""
    row_fingerprints = _fingerprint_kernel()
    sym = hashlib.blake2b("\x1f".join(map(str, panel.symbols)).encode(), digest_size=16).digest()
    dates = np.ascontiguousarray(panel.dates.asi8, dtype="<i8")
    out: dict[str, np.ndarray] = {}
    groups = getattr(panel, "groups", {}) or {}
    for f in [*fields, DATES]:
        arr = dates[:, None] if f == DATES else np.asarray(panel[f])
        if f in groups:  # label text, not codes: panels number their labels differently
            names = list(panel.group_labels.get(f, []))
            ids = np.array(
                [0]
                + [
                    int.from_bytes(hashlib.blake2b(x.encode(), digest_size=8).digest())
                    for x in names
                ],
                dtype=np.uint64,
            )
            arr = ids[arr + 1]
        if arr.dtype.itemsize != 8 or arr.dtype.byteorder == ">":
            arr = arr.astype(np.float64 if arr.dtype.kind in "fb" else "<i8")
        seed = hashlib.blake2b(f.encode() + b"\0" + sym, digest_size=16).digest()
        out[f] = row_fingerprints(arr, dates, seed)
    return out


@functools.cache
def _fingerprint_kernel() -> Callable[..., np.ndarray]:
    """``row_fingerprints``, compiled or loaded once per process under the warm-up lock
    (numba's on-disk cache: one process builds it at a time)."""
    from engine.kernels import fingerprint
    from engine.kernels._jit import warmup_lock

    with warmup_lock():
        fingerprint.warmup()
    return fingerprint.row_fingerprints


def _workers(client: Any) -> dict[str, dict[str, Any]]:
    """The scheduler's view of the workers (one round trip; the helpers below read it)."""
    return client.scheduler_info(n_workers=-1)["workers"]


def _smallest_limit(workers: Mapping[str, Mapping[str, Any]], per_thread: bool) -> float | None:
    """The smallest worker memory limit (per thread if ``per_thread``); None if none is set."""
    limits = [
        w["memory_limit"] / (max(1, w.get("nthreads", 1)) if per_thread else 1)
        for w in workers.values()
        if w.get("memory_limit")
    ]
    return min(limits) if limits else None


def _task_budget(workers: Mapping[str, Mapping[str, Any]], share: float = 0.4) -> int:
    """Bytes one task may use: ``share`` of the smallest worker's memory limit per thread
    (the rest is for the input chunks, the memory cache and results in flight)."""
    limit = _smallest_limit(workers, per_thread=True)
    return int(share * limit) if limit else 1 << 30


def _l1_budget(workers: Mapping[str, Mapping[str, Any]], share: float = 0.2) -> int:
    """Bytes of each worker's memory cache: ``share`` of the smallest worker's memory limit
    (at least 256 MiB; 1 GiB when the workers have no limit)."""
    limit = _smallest_limit(workers, per_thread=False)
    return max(256 << 20, int(share * limit)) if limit else 1 << 30


def _cluster_threads(workers: Mapping[str, Mapping[str, Any]]) -> tuple[int, int, int]:
    """(workers, total worker threads, numba threads per task) from the scheduler's view."""
    total = sum(w.get("nthreads", 1) for w in workers.values()) or 1
    per_host: dict[str, int] = {}
    for w in workers.values():
        per_host[w.get("host", "")] = per_host.get(w.get("host", ""), 0) + w.get("nthreads", 1)
    busiest = max(per_host.values(), default=1)
    return len(workers), total, max(1, (os.cpu_count() or 1) // busiest)


def plan(
    factors: Mapping[str, Expr | str],
    panel: Any,
    *,
    dialect: str = "alpha101",
    n_threads: int = 2,
    block_rows: int | None = None,
    task_memory_bytes: int = 1 << 30,
    cache_nodes: str = "outputs",
    origin: int = 0,
    start_row: int = 0,
) -> Plan:
    """Compile ``factors`` for ``panel`` into a :class:`Plan` (see ``Plan.explain()``)."""
    exprs = as_expressions(factors, panel, dialect)
    return Plan(
        exprs,
        panel.shape,
        n_threads=n_threads,
        block_rows=block_rows,
        task_memory_bytes=task_memory_bytes,
        cache_nodes=cache_nodes,
        origin=origin,
        start_row=start_row,
    )


def compute(
    factors: Mapping[str, Expr | str],
    panel: Any,
    client: Any = None,
    *,
    dialect: str = "alpha101",
    block_rows: int | None = None,
    retries: int | None = None,
    redis_url: str | None = None,
    cache: bool = True,
    cache_nodes: str | None = None,
    settings: Any = None,
    hooks: Sequence[ComputeHooks] | None = None,
    progress: bool | None = None,
    sink: Callable[[int, int, dict[str, np.ndarray]], int] | None = None,
    replicas: int = 2,
    origin: int = 0,
    start_row: int = 0,
    shared_memory: bool = True,
) -> ComputeResult:
    """Compute ``factors`` over ``panel`` on a Dask cluster; equals ``engine.evaluate``.

    ``client`` defaults to the configured scheduler or an embedded LocalCluster
    (``cluster.connect``). ``redis_url`` (or the ``REDIS_URL`` setting) enables the shared L2
    cache. ``sink(b0, b1, values)``, if given, runs on the worker for each block (e.g. a
    store writer) and the values are not sent back. Input slices are kept on ``replicas``
    workers so a run survives losing a worker. ``origin`` is the row number of the panel's
    first date in its source's calendar (0: the panel is the whole history): blocks and the
    restart rows of running-sum kernels are anchored to that calendar, so a window computed
    with enough history gives the same bits as the whole history, and shares cache entries.
    Rows before ``start_row`` are history only: they are read as halo, not computed (NaN in
    the result). With ``shared_memory`` (and no sink), workers on this host write the results
    into shared-memory files the result arrays map (``engine.shared_output``) instead of
    sending them over the network.
    """
    from distributed import as_completed
    from distributed.client import FutureCancelledError

    from cluster.config import load_settings
    from cluster.connect import connect

    settings = settings or load_settings()
    client = client or connect(settings=settings)
    retries = settings.retries if retries is None else retries
    redis_url = redis_url if redis_url is not None else settings.redis_url
    progress = settings.progress if progress is None else progress
    hooks = list(hooks or [])
    if progress:
        hooks.append(ProgressBar())

    # The cyclic collector is off until the tasks are submitted: a full collection in this
    # process (a notebook's, with numba, pandas and Dask loaded; the LocalCluster's scheduler
    # too) took ~0.15 s of planning, while every worker waited for its first task. It runs
    # while the client waits for results instead.
    with _gc_paused() as resume_gc:
        started = time.perf_counter()
        workers = _workers(client)
        n_workers, n_threads, numba_threads = _cluster_threads(workers)
        the_plan = plan(
            factors,
            panel,
            dialect=dialect,
            n_threads=n_threads,
            block_rows=block_rows or settings.block_rows,
            task_memory_bytes=settings.task_memory_bytes or _task_budget(workers),
            cache_nodes=cache_nodes or settings.cache_nodes,
            origin=origin,
            start_row=start_row,
        )
        token = hashlib.blake2b(
            "".join(sorted(the_plan.outputs.values())).encode() + repr(time.time_ns()).encode(),
            digest_size=4,
        ).hexdigest()
        t, n = panel.shape
        groups = getattr(panel, "groups", {}) or {}
        _check_fields(the_plan, panel, groups)  # before the cluster sees anything of this run
        shared_in: SharedInput | None = None
        shared: SharedOutput | None = None
        out: dict[str, np.ndarray] = {}
        chunks: list[tuple[int, int, Any]] = []
        tasks = _BlockTasks(client, the_plan, panel.dates, token, retries, sorted(workers))
        totals = _Totals()
        unwritten: list[BlockResult] = []  # blocks the full tmpfs could not take
        # the plan goes to every worker (a round trip of 30-120 ms, measured) while this
        # thread hashes the rows and shares the input
        sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="alphaforge-plan")
        plan_sent = sender.submit(client.scatter, [the_plan], broadcast=True, hash=False)
        sender.shutdown(wait=False)
        try:
            hooks.append(DashboardEvents(client, token, panel.dates, panel.shape[1]))
            for h in hooks:
                h.on_plan(the_plan)
            used = sorted(
                {
                    group_level(groups, n.expr.name)
                    for n in the_plan.nodes.values()
                    if isinstance(n.expr, Field)
                }
            )
            digests = row_digests(panel, used) if cache else {}  # data versions key the caches only
            cache_cfg = _cache_config(settings, workers, redis_url, cache, token, the_plan)

            def piece(c0: int, c1: int) -> BlockData:
                return BlockData(
                    row0=c0,
                    fields={f: panel[f][c0:c1] for f in used if f not in groups},
                    groups={g: panel.groups[g][c0:c1] for g in groups},
                    n_symbols=n,
                )

            # On one host the workers map the panel from a shared-memory file; elsewhere it
            # is scattered in chunks on the block grid (see _scatter_chunks)
            shared_in = _share_input(client, panel, used, groups) if shared_memory else None
            if shared_in is None:
                copies = max(1, min(replicas, n_workers, len(workers)))
                chunks = _scatter_chunks(client, the_plan, tasks.addresses, copies, piece)
            if sink is None:
                shared, out = _result_arrays(the_plan, t, n, shared_memory)
            [plan_future] = plan_sent.result()
            args = (plan_future, digests, cache_cfg, numba_threads, sink, shared)
            for b0, b1 in the_plan.blocks:
                s0 = tasks.halo_start(b0)
                data = shared_in or [f for c0, c1, f in chunks if c1 > s0 and c0 < b1]
                tasks.submit(b0, b1, data, args)

            resume_gc()
            pending = as_completed(tasks.futures, loop=client.loop)
            for fut in pending:
                try:
                    res: BlockResult = fut.result()
                except FutureCancelledError as exc:
                    pending.add(tasks.resend(fut, exc, piece, args))
                    continue
                if res.values is not None:
                    if shared is None:
                        for name, arr in res.values.items():
                            out[name][res.b0 : res.b1] = arr
                    elif not shared.write(res.b0, res.b1, res.values):
                        unwritten.append(res)
                totals.add(res)
                fut.release()
                for h in hooks:
                    h.on_block(res, len(totals.block_seconds), len(the_plan.blocks))
        except BaseException:
            client.cancel(tasks.futures)
            _settle(plan_sent)
            raise
        finally:
            if shared is not None:
                shared.unlink()
            if shared_in is not None:
                shared_in.unlink()
        if unwritten:
            log.warning(
                "shared-memory result files full: %d block(s) kept in memory", len(unwritten)
            )
            out = _private_result(out, the_plan.blocks, unwritten)
        for w in totals.messages:
            warnings.warn(w, RuntimeWarning, stacklevel=2)
        result = ComputeResult(
            factors=out,
            dates=panel.dates,
            symbols=panel.symbols,
            plan=the_plan,
            stats=totals.stats,
            seconds=time.perf_counter() - started,
            computed_nodes=totals.computed,
            block_seconds=totals.block_seconds,
            node_seconds=totals.node_seconds,
            warnings=totals.messages,
            rows_written=totals.rows_written,
        )
        for h in hooks:
            h.on_finish(result)
        log.info("%s", result.summary())
        return result


def _settle(sent: concurrent.futures.Future) -> None:
    """Let the plan broadcast of a failed run end before the run's error is raised (so it
    does not outlive the call), logging its own error if it had one."""
    sent.cancel()
    done, _ = concurrent.futures.wait([sent], timeout=10)
    if done and not sent.cancelled() and sent.exception() is not None:
        log.debug("the plan broadcast of a failed run failed too: %r", sent.exception())


class _BlockTasks:
    """A run's block tasks on the cluster: keys that say which dates a task computes (the
    dashboard's task stream), a preferred home worker per grid block, Dask's retries, and a
    block sent again when Dask lost its input."""

    def __init__(
        self,
        client: Any,
        the_plan: Plan,
        dates: pd.DatetimeIndex,
        token: str,
        retries: int,
        addresses: Sequence[str],
    ):
        self.client, self.plan, self.dates, self.token = client, the_plan, dates, token
        self.retries = retries
        self.addresses = list(addresses)
        self.futures: list[Any] = []
        self.block_of: dict[str, tuple[int, int, int]] = {}  # future key -> (b0, b1, attempt)

    def home(self, row: int) -> str:
        """Grid block g prefers the same worker in every run, so its memory cache (L1) is
        found again (Dask may still move work elsewhere to balance load)."""
        g = (self.plan.origin + row) // self.plan.block_rows
        return self.addresses[g % len(self.addresses)]

    def halo_start(self, b0: int) -> int:
        """The first input row block ``b0`` reads."""
        return 0 if self.plan.halo >= UNBOUNDED else max(0, b0 - self.plan.halo)

    def submit(self, b0: int, b1: int, data: Any, args: tuple, attempt: int = 0) -> Any:
        """Submit ``run_block`` over rows ``[b0, b1)`` (``args``: its arguments after b1)."""
        d0, d1 = self.dates[b0], self.dates[b1 - 1]
        again = f"-again{attempt}" if attempt else ""
        plan_future, digests, cache_cfg, numba_threads, sink, shared = args
        fut = self.client.submit(
            run_block,
            plan_future,
            data,
            b0,
            b1,
            digests,
            cache_cfg,
            numba_threads,
            sink,
            shared,
            key=f"alphaforge-block-{d0:%Y-%m-%d}..{d1:%Y-%m-%d}-{self.token}{again}",
            retries=self.retries,
            pure=False,
            workers=[self.home(b0)],
            allow_other_workers=True,
        )
        self.futures.append(fut)
        self.block_of[fut.key] = (b0, b1, attempt)
        return fut

    def resend(
        self, fut: Any, exc: BaseException, piece: Callable[[int, int], BlockData], args: tuple
    ) -> Any:
        """The block of cancelled ``fut`` submitted again with its rows scattered anew: Dask's
        active memory manager keeps one replica of scattered data that no queued task waits
        on, so losing a worker can lose a block's input chunks, and the scheduler then forgets
        the block. Raises ``exc`` once the block has been sent ``retries`` times."""
        b0, b1, attempt = self.block_of[fut.key]
        if attempt >= max(1, self.retries):
            raise exc
        log.warning("block at row %d lost its input (%s); sending it again", b0, exc)
        [data] = self.client.scatter([piece(self.halo_start(b0), b1)], hash=False)
        return self.submit(b0, b1, [data], args, attempt + 1)


@dataclasses.dataclass
class _Totals:
    """What a run's blocks report, added up on the client as they arrive."""

    stats: CacheStats = dataclasses.field(default_factory=CacheStats)
    computed: int = 0
    rows_written: int = 0
    block_seconds: list[float] = dataclasses.field(default_factory=list)
    node_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    messages: list[str] = dataclasses.field(default_factory=list)  # each warning once

    def add(self, res: BlockResult) -> None:
        self.stats = self.stats + res.stats
        self.computed += res.computed
        self.rows_written += res.sink_rows
        self.block_seconds.append(res.seconds)
        for k, s in res.node_seconds.items():
            self.node_seconds[k] = self.node_seconds.get(k, 0.0) + s
        for w in res.warnings:
            if w not in self.messages:
                self.messages.append(w)


def _cache_config(
    settings: Any,
    workers: Mapping[str, Mapping[str, Any]],
    redis_url: str | None,
    enabled: bool,
    run: str,
    the_plan: Plan,
) -> CacheConfig:
    """The caches' settings for every block task of run ``run``."""
    per_run = settings.redis_max_bytes_per_run
    return CacheConfig(
        namespace=settings.cache_namespace,
        l1_bytes=settings.l1_cache_bytes or _l1_budget(workers),
        redis_url=redis_url,
        redis_ttl=settings.redis_ttl_seconds,
        redis_timeout=settings.redis_timeout_seconds,
        enabled=enabled,
        run=run,
        # the run's Redis budget, shared equally by its blocks
        l2_block_bytes=per_run // max(1, len(the_plan.blocks)) if per_run else None,
    )


def _scatter_chunks(
    client: Any,
    the_plan: Plan,
    addresses: Sequence[str],
    copies: int,
    piece: Callable[[int, int], BlockData],
) -> list[tuple[int, int, Any]]:
    """Scatter the panel once, in chunks on the block grid: ``(row0, row1, future)`` in row
    order. A block's task takes the chunks covering its halo and its rows (like
    ``map_overlap``), so the cluster holds each input row once per copy however large the
    halo. Grid block g's chunk goes to its home worker (``addresses[g % len]``) and the next
    ``copies - 1``, so losing one worker loses no data and Dask can rerun its tasks elsewhere
    (scattered data, unlike task results, cannot be recomputed; Dask's active memory manager
    may still drop the extra copies: ``compute`` sends a lost block's rows again). One
    scatter per set of holders sends each chunk straight to all of them."""
    holders_of: dict[tuple[str, ...], list[tuple[int, int, BlockData]]] = {}
    for c0, c1 in Plan._grid(the_plan.shape[0], the_plan.block_rows, the_plan.origin):
        g = (the_plan.origin + c0) // the_plan.block_rows
        holders = tuple(addresses[(g + k) % len(addresses)] for k in range(copies))
        holders_of.setdefault(holders, []).append((c0, c1, piece(c0, c1)))
    chunks: list[tuple[int, int, Any]] = []
    for holders, pieces in holders_of.items():
        futures = client.scatter(
            [p for _, _, p in pieces], hash=False, workers=list(holders), broadcast=True
        )
        chunks.extend((c0, c1, future) for (c0, c1, _), future in zip(pieces, futures))
    return sorted(chunks, key=lambda c: c[0])


def _result_arrays(
    the_plan: Plan, t: int, n: int, shared_memory: bool
) -> tuple[SharedOutput | None, dict[str, np.ndarray]]:
    """Where the blocks' values go: shared-memory result files and the client's views of
    them (history rows before ``start_row`` written as NaN), or, without them, private
    NaN-filled arrays the client copies the values into."""
    made = create_shared_output(list(the_plan.outputs), t, n) if shared_memory else None
    if made is not None:
        shared, out = made
        try:
            first = min((b0 for b0, _ in the_plan.blocks), default=t)
            if not first or shared.write(0, first, dict.fromkeys(out, np.full((first, n), np.nan))):
                return shared, out
        except BaseException:
            shared.unlink()
            raise
        shared.unlink()  # the tmpfs filled up already
    return None, {name: np.full((t, n), np.nan) for name in the_plan.outputs}


def _share_input(
    client: Any, panel: Any, used: Sequence[str], groups: Mapping[str, Any]
) -> SharedInput | None:
    """The panel's fields in ``used`` and its groups in a shared-memory file every worker of
    ``client`` can map, or None (a worker on another host, no room in the tmpfs): the panel
    is then scattered."""
    spec = create_shared_input(
        {f: panel[f] for f in used if f not in groups}, {g: panel.groups[g] for g in groups}
    )
    if spec is None:
        return None
    readable = False
    try:
        seen = client.run(can_read, spec)
        readable = bool(seen) and all(seen.values())
    except Exception as exc:  # a worker leaving meanwhile: scatter instead
        log.debug("shared input not used: %s", exc)
    finally:
        if not readable:  # not used, or an interrupt (which goes on up): no file left
            spec.unlink()
    return spec if readable else None


def _private_result(
    mapped: Mapping[str, np.ndarray],
    blocks: Sequence[tuple[int, int]],
    unwritten: Sequence[BlockResult],
) -> dict[str, np.ndarray]:
    """The result in private memory when the shared files filled up: the rows that are in
    the files (every block's outputs but those ``unwritten`` sent back, and the history rows
    before the first block) copied out of them, the rest from the blocks' values.

    A row never written is never read: in a full tmpfs, reading a hole of a shared mapping
    makes the kernel allocate a page, and failing that it kills the process (SIGBUS)."""
    returned = {(res.b0, name): arr for res in unwritten for name, arr in res.values.items()}
    first = min((b0 for b0, _ in blocks), default=0)
    out: dict[str, np.ndarray] = {}
    for name, arr in mapped.items():
        private = np.empty(arr.shape, dtype=np.float64)
        private[:first] = arr[:first]
        for b0, b1 in blocks:
            sent = returned.get((b0, name))
            private[b0:b1] = arr[b0:b1] if sent is None else sent
        out[name] = private
    return out


@contextlib.contextmanager
def _gc_paused() -> Iterator[Callable[[], None]]:
    """Turn off the cyclic garbage collector (if on) until the yielded function is called or
    the block ends."""
    enabled = gc.isenabled()
    gc.disable()

    def resume() -> None:
        if enabled:
            gc.enable()

    try:
        yield resume
    finally:
        resume()


def _check_fields(the_plan: Plan, panel: Any, groups: Mapping[str, Any]) -> None:
    """Fail before any work when a factor reads a field the panel does not have."""
    have = set(getattr(panel, "field_names", ())) | set(groups)
    missing: dict[str, list[str]] = {}
    for name, e in the_plan.exprs.items():
        for n in e.walk():
            if isinstance(n, Field) and group_level(groups, n.name) not in have:
                missing.setdefault(n.name, []).append(name)
    if missing:
        detail = "; ".join(
            f"{f!r} (needed by {', '.join(sorted(set(names))[:5])})" for f, names in missing.items()
        )
        raise PlanError(f"the panel lacks field(s) {detail}; it has {', '.join(sorted(have))}")
