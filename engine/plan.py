"""The planner: a set of named factors compiled into one DAG of distinct nodes and time blocks.

The algorithm, in order:

1. Collect every distinct node of every factor by structural key (``expr.key``): identical
   sub-expressions of different factors become one node (common-subexpression elimination).
   The count before sharing is the size of the factor trees with repetition.
2. Order the nodes children-first (a topological order) and count each node's consumers.
3. Give every node its own lookback (rows of its inputs it reads before each output row:
   ``ts_mean(x, 20)`` reads 19) and, walking parents before children, the *extra rows*
   (``need``) it must be computed over before a block's first row so that every consumer
   gets a full window — zipline's "extra rows", ``map_overlap``'s halo. Operators whose
   value depends on all history (recursive filters such as EMA, cumulative OBV) have an
   unbounded lookback: their inputs are computed from the first row of the panel, which is
   exact but costs time proportional to the history before the block.
4. Choose the time blocks. Every block holds the whole cross-section (cross-sectional and
   group operators need every symbol of a date). The block length comes from a cost/memory
   model: the longest power of two giving at least ``tasks_per_thread`` blocks per worker
   thread so Dask can balance load (``default_block_rows``), halved until no task's
   estimated working set is above ``task_memory_bytes``.
5. Mark which nodes are cached (``cache_nodes``: the outputs, the outputs plus shared
   sub-expressions, or every computed node). The default is the outputs: a run on the
   shared-memory path then keeps no private copy of anything (the cached outputs are views
   of the result files), while every shared node held costs a newly touched block of
   memory per block (Alpha158 over 2000 x 200: 94 shared nodes, ~150 MB per worker, and
   0.96-1.08 s instead of 1.12-1.38 s for a cold run, 6 alternated rounds on 2 workers).
   A changed factor then recomputes its own tree, not only its changed nodes; "shared" or
   "all" keep intermediate nodes too, for pipelines whose factors share costly parts.

``explain()`` prints all of it. The executor (``engine.execute``) runs a plan; the planner
never touches data beyond the panel's shape and field names.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from engine.kernels import BLOCK_ALIGNED, MULTI
from factors.expr import Call, Const, Expr, Field, field_lookback

#: Stands for "all history before the block" in lookbacks and extra rows.
UNBOUNDED = 1 << 40

# Rough relative cost per output cell, for the cost model and explain(); measured orders of
# magnitude of the kernels, not promises.
_KIND_COST = {"elementwise": 1.0, "ts": 4.0, "cs": 12.0, "group": 12.0, "technical": 6.0}
_WINDOWED_COST = {"ts_rank", "ts_median", "ts_quantile", "ts_mad"}  # O(w) per step


@dataclasses.dataclass(frozen=True)
class PlanNode:
    """One distinct node of the plan."""

    key: str
    expr: Expr
    children: tuple[str, ...]
    own_lookback: int
    lookback: int
    need: int
    consumers: int
    outputs: tuple[str, ...]
    cached: bool
    cost: float

    @property
    def label(self) -> str:
        """A short human-readable name: the operator or field."""
        e = self.expr
        if isinstance(e, Call):
            return e.op
        if isinstance(e, Field):
            return e.name
        return repr(e)

    @property
    def unbounded(self) -> bool:
        return self.lookback >= UNBOUNDED


def _own_lookback(e: Expr) -> int:
    if isinstance(e, Call):
        # Recursive filters and cumulative sums depend on all history; the technical
        # indicators' windows count valid bars (skipping halts), so in rows they are unbounded.
        if e.spec.memory != "window" or e.spec.kind == "technical":
            return UNBOUNDED
        if e.op in BLOCK_ALIGNED:
            # started on a multiple of w at least one window early: see BLOCK_ALIGNED
            return 2 * int(e.param_dict[BLOCK_ALIGNED[e.op]]) - 1
        return e.spec.lookback(e.param_dict)
    if isinstance(e, Field):
        return field_lookback(e.name)
    return 0


def _cost(e: Expr) -> float:
    if not isinstance(e, Call):
        return 0.0
    if e.op in _WINDOWED_COST:
        return 2.0 + e.param_dict.get("w", 1) / 2.0
    return _KIND_COST.get(e.spec.kind, 4.0)


def default_block_rows(t: int, n_threads: int, per_thread: int = 2) -> int:
    """The longest power of two giving at least ``per_thread`` blocks per worker thread (a
    power of two so that runs over windows of similar length share a block grid, and so their
    cache entries). As few blocks as that: each block recomputes its halo and pays a task's
    fixed cost (Alpha158 over 2000 x 200 on 2 threads: 4 blocks of 512 rows ran cold in
    0.92-1.01 s, 8 of 256 rows in 1.06-1.26 s), and two per thread still let Dask move work
    off a slow worker."""
    blocks = max(1, per_thread * max(1, n_threads))
    rows = 1 << max(0, (max(1, t) - 1).bit_length())  # the first power of two >= t
    while rows > 1 and math.ceil(t / rows) < blocks:
        rows //= 2
    return rows


def lookbacks(exprs: Mapping[str, Expr]) -> dict[str, int]:
    """Rows of history each node needs under the executor's rules (``UNBOUNDED``: all)."""
    total: dict[str, int] = {}
    for e in exprs.values():
        for n in e.walk():
            if n.key not in total:
                below = max((total[c.key] for c in n.children), default=0)
                total[n.key] = min(UNBOUNDED, _own_lookback(n) + below)
    return total


def tree_size(exprs: Mapping[str, Expr]) -> int:
    """Nodes of all factor trees counted with repetition (the size before any sharing)."""
    memo: dict[str, int] = {}

    def size(e: Expr) -> int:
        if e.key not in memo:
            memo[e.key] = 1 + sum(size(c) for c in e.children)
        return memo[e.key]

    return sum(size(e) for e in exprs.values())


class Plan:
    """A compiled set of factors: distinct nodes in dependency order, and time blocks."""

    def __init__(
        self,
        exprs: Mapping[str, Expr],
        shape: tuple[int, int],
        *,
        n_threads: int = 2,
        block_rows: int | None = None,
        tasks_per_thread: int = 2,
        task_memory_bytes: int = 1 << 30,
        cache_nodes: str = "outputs",
        origin: int = 0,
        start_row: int = 0,
    ) -> None:
        if not exprs:
            raise ValueError("a plan needs at least one factor")
        if cache_nodes not in {"outputs", "shared", "all"}:
            raise ValueError("cache_nodes must be 'outputs', 'shared' or 'all'")
        self.exprs = dict(exprs)
        self.shape = (int(shape[0]), int(shape[1]))
        self.n_threads = max(1, int(n_threads))
        self.cache_nodes = cache_nodes
        self.outputs = {name: e.key for name, e in self.exprs.items()}

        order: list[Expr] = []
        seen: set[str] = set()
        for e in self.exprs.values():
            for node in e.walk():
                if node.key not in seen:
                    seen.add(node.key)
                    order.append(node)
        consumers = {n.key: 0 for n in order}
        for n in order:
            for c in {c.key for c in n.children}:
                consumers[c] += 1
        out_names: dict[str, list[str]] = {}
        for name, key in self.outputs.items():
            out_names.setdefault(key, []).append(name)

        own = {n.key: _own_lookback(n) for n in order}
        total = lookbacks(self.exprs)
        need = {n.key: 0 for n in order}
        for n in reversed(order):
            for c in n.children:
                need[c.key] = min(UNBOUNDED, max(need[c.key], need[n.key] + own[n.key]))

        def cached(n: Expr) -> bool:
            if not isinstance(n, Call) or not n.fields:  # constants are cheaper than a lookup
                return False
            if n.key in out_names or cache_nodes == "all":
                return True
            return cache_nodes == "shared" and consumers[n.key] >= 2

        self.nodes: dict[str, PlanNode] = {}
        for n in order:
            self.nodes[n.key] = PlanNode(
                key=n.key,
                expr=n,
                children=tuple(c.key for c in n.children),
                own_lookback=own[n.key],
                lookback=total[n.key],
                need=need[n.key],
                consumers=consumers[n.key],
                outputs=tuple(out_names.get(n.key, ())),
                cached=cached(n),
                cost=_cost(n),
            )
        self.siblings = self._siblings()
        self.nodes_before_sharing = tree_size(self.exprs)
        self.fields = sorted(
            {n.expr.name for n in self.nodes.values() if isinstance(n.expr, Field)}
        )
        # Rows of raw data a block reads before its first row.
        self.halo = max(
            (n.need + n.own_lookback for n in self.nodes.values() if isinstance(n.expr, Field)),
            default=0,
        )
        self.halo = min(self.halo, UNBOUNDED)
        self._start_row = int(start_row)
        self.block_rows = self._choose_block_rows(block_rows, tasks_per_thread, task_memory_bytes)
        if origin < 0:
            raise ValueError(f"origin must be >= 0, got {origin}")
        if not 0 <= start_row <= self.shape[0]:
            raise ValueError(f"start_row must be in [0, {self.shape[0]}], got {start_row}")
        self.origin = int(origin)
        self.start_row = int(start_row)
        self.blocks = self._grid(self.shape[0], self.block_rows, self.origin, self.start_row)

    def _siblings(self) -> dict[str, tuple[str, ...]]:
        """Node key -> the group of nodes one pass computes with it (``engine.kernels.MULTI``):
        one operator over the same inputs with the same parameters but one, over the same
        extra rows (so over the same rows of every block). Alpha158: QTLU5 and QTLD5 are
        ``ts_quantile(close, 5, q)`` for q = 0.8 and 0.2."""
        groups: dict[tuple, list[str]] = {}
        for key, node in self.nodes.items():
            e = node.expr
            if isinstance(e, Call) and e.op in MULTI and e.op not in BLOCK_ALIGNED:
                varying = MULTI[e.op][0]
                rest = tuple(p for p in e.params if p[0] != varying)
                groups.setdefault((e.op, node.children, rest, node.need), []).append(key)
        return {k: tuple(g) for g in groups.values() if len(g) > 1 for k in g}

    @staticmethod
    def _grid(t: int, rows: int, origin: int, start_row: int = 0) -> list[tuple[int, int]]:
        """Blocks on a calendar-anchored grid: absolute rows [k*rows, (k+1)*rows), cut to the
        rows ``[start_row, t)`` to compute, in the panel's own row numbers (so runs over
        different windows of one source share block boundaries, and so cache entries)."""
        out = []
        a = origin + start_row
        while a < origin + t:
            b = min(origin + t, (a // rows + 1) * rows)
            out.append((a - origin, b - origin))
            a = b
        return out

    # -- cost / memory model ----------------------------------------------------------
    def peak_live_rows(self, block_rows: int) -> int:
        """Peak of the rows held at once by a block task's live intermediates, replaying the
        executor's order (depth-first from each output, a node freed when its parents and its
        output extraction are done; a node's siblings are made with it and live from then)."""
        t = self.shape[0]
        rows = {k: min(t, block_rows + min(n.need, t)) for k, n in self.nodes.items()}
        remaining = {k: n.consumers + len(n.outputs) for k, n in self.nodes.items()}
        live: dict[str, int] = {}
        made: set[str] = set()
        peak = 0

        def visit(key: str) -> None:
            nonlocal peak
            if key in live:
                return
            for c in self.nodes[key].children:
                visit(c)
            group = [k for k in self.siblings.get(key, (key,)) if k == key or k not in made]
            for k in group:
                live[k] = rows[k]
                made.add(k)
            peak = max(peak, sum(live.values()))
            for k in group:
                for c in set(self.nodes[k].children):
                    remaining[c] -= 1
                    if remaining[c] <= 0:
                        live.pop(c, None)

        for key in self.outputs.values():
            visit(key)
            remaining[key] -= 1
            if remaining[key] <= 0:
                live.pop(key, None)
        return peak

    def task_bytes(self, block_rows: int) -> int:
        """Estimated peak bytes of one block task: its input rows (halo included), the peak
        of live intermediates, and the outputs' block rows it returns."""
        t, n = self.shape
        inputs = min(t, block_rows + min(self.halo, t)) * len(self.fields)
        outputs = block_rows * len(self.outputs)
        return 8 * n * (inputs + self.peak_live_rows(block_rows) + outputs)

    def _choose_block_rows(self, block_rows: int | None, per_thread: int, budget: int) -> int:
        t = self.shape[0] - self._start_row
        if t <= 0:
            return 1
        if block_rows is not None:
            if int(block_rows) < 1:
                raise ValueError(f"block_rows must be >= 1, got {block_rows}")
            return min(int(block_rows), t)
        rows = default_block_rows(t, self.n_threads, per_thread)
        while rows > 1 and self.task_bytes(rows) > budget:
            rows = max(1, rows // 2)
        return rows

    # -- reporting ----------------------------------------------------------------------
    @property
    def cost(self) -> float:
        """Estimated relative cost (cell-operations) of computing every node once."""
        t, n = self.shape
        return sum(node.cost for node in self.nodes.values()) * t * n

    @property
    def max_lookback(self) -> int:
        return max(n.lookback for n in self.nodes.values())

    def explain(self, max_nodes: int = 40) -> str:
        """The plan as text: sharing, lookbacks, blocks, estimated cost and memory."""
        t, n = self.shape
        calls = [x for x in self.nodes.values() if isinstance(x.expr, Call)]
        n_const = sum(isinstance(x.expr, Const) for x in self.nodes.values())

        def rows(v: int) -> str:
            return "all history" if v >= UNBOUNDED else str(v)

        lines = [
            f"Plan: {len(self.outputs)} factors over {t} dates x {n} symbols",
            f"  nodes: {self.nodes_before_sharing} before sharing -> {len(self.nodes)} distinct "
            f"({len(calls)} operators, {len(self.fields)} fields, {n_const} constants; "
            f"{self.nodes_before_sharing - len(self.nodes)} shared away)",
            f"  max lookback: {rows(self.max_lookback)} rows; block halo: {rows(self.halo)} rows",
            f"  blocks: {len(self.blocks)} x {self.block_rows} rows "
            f"(for {self.n_threads} worker threads)",
            f"  estimated cost: {self.cost / 1e6:,.0f} M cell-ops; "
            f"memory per task: {self.task_bytes(self.block_rows) / 2**20:,.0f} MiB",
            f"  cached nodes ({self.cache_nodes}): {sum(x.cached for x in self.nodes.values())}",
            f"  computed together: {len(self.siblings)} nodes in "
            f"{len(set(self.siblings.values()))} groups (one pass each)",
            "",
            f"  {'node':<14} {'lookback':>9} {'extra rows':>10} {'uses':>5}  {'cached':<6} formula",
        ]
        shown = sorted(calls, key=lambda x: (-x.cost * (x.consumers + 1), x.key))[:max_nodes]
        for x in sorted(shown, key=lambda x: list(self.nodes).index(x.key)):
            text = repr(x.expr)
            text = text if len(text) <= 60 else text[:57] + "..."
            lines.append(
                f"  {x.label:<14} {rows(x.lookback):>9} {rows(x.need):>10} {x.consumers:>5}  "
                f"{'yes' if x.cached else '':<6} {text}"
                + (f"  -> {', '.join(x.outputs)}" if x.outputs else "")
            )
        if len(calls) > len(shown):
            lines.append(f"  ... {len(calls) - len(shown)} more operator nodes")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Plan({len(self.outputs)} factors, {len(self.nodes)} nodes, "
            f"{len(self.blocks)} blocks of {self.block_rows} rows)"
        )
