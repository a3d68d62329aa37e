"""The notebook API: a named set of factors over a data source, run over a date range.

```python
from pipelines import Pipeline
from factors import close, volume, delay, rank, ts_corr, library
p = Pipeline({"mom_20": close / delay(close, 20) - 1,
              "pv_corr": -ts_corr(rank(close), rank(volume), 10),
              **library.load("alpha101")}, source="sample")
df = p.run("2016-01-01", "2017-12-31")   # MultiIndex (date, asset), one column per factor
p.explain(); p.write()                   # the plan; persist the last run
```

How a run works:

1. Read the source's trading calendar and find the requested rows ``[i0, i1)``.
2. Split the factors by the history they need (``engine.plan.lookbacks``): factors with a
   finite lookback ``L`` load only rows ``[i0 - L, i1)``; those that depend on all history
   (EMA-type filters, OBV) load from the first date. The computed range starts on the
   cache's block grid, so runs over overlapping windows share cached blocks.
3. Compute each group with ``engine.compute`` and ``origin`` set to the window's first row in
   the calendar: the values equal a computation over the whole history, bit for bit.
4. Keep the requested dates; ``screen`` (an expression) blanks rows where it is false or NaN,
   like zipline's screen, and ``top=(expr, n)`` keeps, per date, the ``n`` symbols with the
   largest ``expr`` among those passing the screen (e.g. the 500 most liquid by ``adv20``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from cluster.config import Settings, load_settings
from engine.cache import CacheStats
from engine.execute import ComputeResult, compute, plan
from engine.panel import Panel
from engine.plan import UNBOUNDED, Plan, default_block_rows, lookbacks
from factors import parse
from factors.expr import Expr
from pipelines.spec import Source

log = logging.getLogger(__name__)

SCREEN = "__screen__"
TOP = "__top__"


def as_source(source: Any) -> Source:
    """A :class:`Source` from a Source, a Panel, ``"sample"``, ``"synthetic"`` or a path."""
    if isinstance(source, Source):
        return source
    if isinstance(source, Panel):
        return Source("panel", panel=source)
    if source in (None, "sample"):
        return Source("sample")
    if source == "synthetic":
        return Source("synthetic")
    text = str(source)
    if text.endswith(".parquet"):
        return Source("parquet", path=text)
    if text.endswith(".csv"):
        return Source("csv", path=text)
    raise ValueError(f"unknown source {source!r}: use a Panel, 'sample', 'synthetic' or a path")


class Pipeline:
    """Named factors + a source (+ an optional screen), computed over a date range."""

    def __init__(
        self,
        factors: Mapping[str, Expr | str],
        *,
        source: Panel | Source | str | None = "sample",
        screen: Expr | str | None = None,
        top: tuple[Expr | str, int] | None = None,
        dialect: str = "alpha101",
        name: str = "pipeline",
        settings: Settings | None = None,
        libraries: Mapping[str, str] | None = None,
    ) -> None:
        if not factors:
            raise ValueError("a pipeline needs at least one factor")
        self.name = name
        self.dialect = dialect
        self.settings = settings or load_settings()
        self.source = as_source(source)
        self.factors: dict[str, Expr] = {
            k: parse(v, dialect) if isinstance(v, str) else v for k, v in factors.items()
        }
        self.libraries = dict(libraries or {})
        self.screen = parse(screen, dialect) if isinstance(screen, str) else screen
        self.top: tuple[Expr, int] | None = None
        if top is not None:
            by, n = top
            if int(n) < 1:
                raise ValueError(f"top needs n >= 1, got {n}")
            self.top = (parse(by, dialect) if isinstance(by, str) else by, int(n))
        self._calendar: pd.DatetimeIndex | None = None
        self.results: list[ComputeResult] = []
        self._values: dict[str, np.ndarray] | None = None
        self._dates: pd.DatetimeIndex | None = None
        self._symbols: pd.Index | None = None

    @classmethod
    def from_spec(cls, spec: Any) -> Pipeline:
        """The pipeline a :class:`pipelines.spec.Spec` describes."""
        return cls(
            spec.factors,
            source=spec.source,
            screen=spec.screen,
            top=spec.top,
            name=spec.name,
            settings=spec.settings,
            libraries=spec.libraries,
        )

    # -- calendar and history ----------------------------------------------------------
    @property
    def calendar(self) -> pd.DatetimeIndex:
        """The source's trading dates (read once)."""
        if self._calendar is None:
            self._calendar = self.source.calendar()
        return self._calendar

    @property
    def panel(self) -> Panel:
        """The whole source as a Panel (loads everything; runs load only what they need)."""
        return self.source.load()

    def _rows(self, start: Any, end: Any) -> tuple[int, int]:
        dates = self.calendar
        i0 = 0 if start is None else int(dates.searchsorted(pd.Timestamp(start), "left"))
        i1 = len(dates) if end is None else int(dates.searchsorted(pd.Timestamp(end), "right"))
        if i1 <= i0:
            raise ValueError(f"no trading dates in [{start}, {end}] in the source")
        return i0, i1

    def _exprs(self) -> dict[str, Expr]:
        out = dict(self.factors)
        out.update(self._filters())
        return out

    def _filters(self) -> dict[str, Expr]:
        out = {}
        if self.screen is not None:
            out[SCREEN] = self.screen
        if self.top is not None:
            out[TOP] = self.top[0]
        return out

    def _groups(self) -> list[tuple[int, dict[str, Expr]]]:
        """Factors grouped by the history they need: (lookback rows, factors)."""
        total = lookbacks(self._exprs())
        bounded = {k: e for k, e in self.factors.items() if total[e.key] < UNBOUNDED}
        unbounded = {k: e for k, e in self.factors.items() if total[e.key] >= UNBOUNDED}
        out = []
        for group in (bounded, unbounded):
            if not group:
                continue
            group.update(self._filters())  # every group applies the filters to its rows
            out.append((max(total[e.key] for e in group.values()), group))
        return out

    def _block_rows(self, i0: int, i1: int) -> int:
        threads = self.settings.n_workers * self.settings.threads_per_worker
        return self.settings.block_rows or default_block_rows(i1 - i0, threads)

    def _window(self, i0: int, lookback: int, rows: int) -> int:
        """First calendar row to load: ``lookback`` rows before the block-grid row <= ``i0``."""
        c0 = (i0 // rows) * rows
        return 0 if lookback >= UNBOUNDED else max(0, c0 - lookback)

    def history_needed(self, start: Any = None, end: Any = None) -> dict[str, int]:
        """Calendar rows each group of factors loads for ``[start, end]`` (for reports)."""
        i0, i1 = self._rows(start, end)
        rows = self._block_rows(i0, i1)
        return {
            ("all history" if lb >= UNBOUNDED else f"lookback {lb}"): i1
            - self._window(i0, lb, rows)
            for lb, _ in self._groups()
        }

    # -- API --------------------------------------------------------------------------
    def plans(self, start: Any = None, end: Any = None) -> list[Plan]:
        """The execution plan of each history group for ``[start, end]``."""
        i0, i1 = self._rows(start, end)
        rows = self._block_rows(i0, i1)
        out = []
        for lookback, exprs in self._groups():
            h0 = self._window(i0, lookback, rows)
            window = self.source.load(self.calendar[h0], self.calendar[i1 - 1])
            out.append(
                plan(
                    exprs,
                    window,
                    dialect=self.dialect,
                    n_threads=self.settings.n_workers * self.settings.threads_per_worker,
                    block_rows=rows,
                    cache_nodes=self.settings.cache_nodes,
                    origin=h0,
                    start_row=max(0, (i0 // rows) * rows - h0),
                )
            )
        return out

    def explain(self, start: Any = None, end: Any = None) -> str:
        """The plans as text (also printed)."""
        text = "\n\n".join(p.explain() for p in self.plans(start, end))
        print(text)
        return text

    def _computations(self, i0: int, i1: int):
        """Per history group: (window panel, origin row, first computed row, factors)."""
        cal = self.calendar
        rows = self._block_rows(i0, i1)
        for lookback, exprs in self._groups():
            h0 = self._window(i0, lookback, rows)
            window = self.source.load(cal[h0], cal[i1 - 1])
            if not window.dates.equals(cal[h0:i1]):
                raise ValueError(
                    f"source returned {len(window.dates)} dates for {cal[h0]:%Y-%m-%d}.."
                    f"{cal[i1 - 1]:%Y-%m-%d}, its calendar has {i1 - h0}"
                )
            if h0 > 0:
                spans = self.source.spans(cal[i1 - 1])
                window = _with_universe(window, spans.index)
                if any("listed" in e.fields for e in exprs.values()):
                    window.fields["listed"] = self._listed(window, spans)
            yield window, h0, max(0, (i0 // rows) * rows - h0), rows, exprs

    @staticmethod
    def _listed(window: Panel, spans: pd.DataFrame) -> np.ndarray:
        """The ``listed`` field of a window from the whole source's listing spans, so a
        window that starts during a halt sees the same span as the full history does."""
        spans = spans.reindex(window.symbols)
        dates = window.dates.values[:, None]
        first = spans["min"].to_numpy(dtype="datetime64[ns]")[None, :]
        last = spans["max"].to_numpy(dtype="datetime64[ns]")[None, :]
        return np.where((dates >= first) & (dates <= last), 1.0, np.nan)

    def _compute(
        self,
        exprs: dict[str, Expr],
        window: Panel,
        h0: int,
        first: int,
        rows: int,
        client: Any,
        **kw: Any,
    ) -> ComputeResult:
        """One history group on the cluster, anchored on the calendar; result kept."""
        result = compute(
            exprs,
            window,
            client,
            dialect=self.dialect,
            settings=self.settings,
            origin=h0,
            start_row=first,
            **{"block_rows": rows, **kw},
        )
        self.results.append(result)
        return result

    def run(
        self, start: Any = None, end: Any = None, client: Any = None, **kw: Any
    ) -> pd.DataFrame:
        """Compute the factors over ``[start, end]``; alphalens-layout frame."""
        i0, i1 = self._rows(start, end)
        self.results = []
        values: dict[str, np.ndarray] = {}
        symbols: pd.Index | None = None
        for window, h0, first, rows, exprs in self._computations(i0, i1):
            result = self._compute(exprs, window, h0, first, rows, client, **kw)
            part = {k: v[i0 - h0 :] for k, v in result.factors.items()}
            if symbols is None:
                symbols = window.symbols
            elif not window.symbols.equals(symbols):
                union = symbols.union(window.symbols)
                values = {k: _reindex(v, symbols, union) for k, v in values.items()}
                part = {k: _reindex(v, window.symbols, union) for k, v in part.items()}
                symbols = union
            values.update(part)
        assert symbols is not None
        self._dates, self._symbols = self.calendar[i0:i1], symbols
        keep = _keep(values, self.top[1] if self.top else 0)
        if keep is not None:
            values = {k: np.where(keep, v, np.nan) for k, v in values.items()}
        self._values = {k: values[k] for k in self.factors}
        for r in self.results:
            log.info("pipeline %r: %s", self.name, r.summary())
        return self.frame()

    def run_to_store(
        self, start: Any = None, end: Any = None, store: Any = None, client: Any = None, **kw: Any
    ) -> int:
        """Compute ``[start, end]`` and write it from the workers, block by block, in parallel.

        The values never travel back to the client: each block task writes its rows through
        the store's COPY path in its own transaction. One run record covers all blocks; it is
        closed ``succeeded`` only if every block was written (a failed block leaves no partial
        rows, and the run ``failed``). Returns the number of values written.
        """
        from engine.store import open_store

        url = store or self.settings.database_url
        i0, i1 = self._rows(start, end)
        dates = self.calendar[i0:i1]
        self.results = []
        with open_store(url) as st, self._recorded_run(st, dates) as run:
            for window, h0, first, rows, exprs in self._computations(i0, i1):
                top_n = self.top[1] if self.top else 0
                sink = StoreSink(url, run.id, window.dates, window.symbols, i0 - h0, top_n)
                result = self._compute(exprs, window, h0, first, rows, client, sink=sink, **kw)
                run.written += result.rows_written
        self._dates, self._values = dates, None
        return run.written

    @contextlib.contextmanager
    def _recorded_run(self, st: Any, dates: pd.DatetimeIndex) -> Iterator[_Run]:
        """A run record around a write: opened with the factor registry, closed
        ``succeeded`` or ``failed`` with the number of values written."""
        specs = {k: (repr(e), e.key, self.libraries.get(k)) for k, e in self.factors.items()}
        run = _Run(st.start_run(self.name, dates[0], dates[-1], specs))
        try:
            yield run
        except BaseException as exc:
            st.finish_run(run.id, "failed", run.written, error=f"{type(exc).__name__}: {exc}")
            raise
        st.finish_run(run.id, "succeeded", run.written)

    # -- results ------------------------------------------------------------------------
    @property
    def stats(self) -> CacheStats:
        """Cache statistics of the last run, summed over its groups."""
        total = CacheStats()
        for r in self.results:
            total = total + r.stats
        return total

    def values(self) -> dict[str, np.ndarray]:
        """The last run's (dates, symbols) arrays over the requested dates, screen applied."""
        if self._values is None:
            raise RuntimeError("run the pipeline first")
        return self._values

    @property
    def dates(self) -> pd.DatetimeIndex:
        if self._dates is None:
            raise RuntimeError("run the pipeline first")
        return self._dates

    @property
    def symbols(self) -> pd.Index:
        if self._symbols is None:
            raise RuntimeError("run the pipeline first")
        return self._symbols

    def frame(self, dropna: bool = True) -> pd.DataFrame:
        """The last run as a long frame (MultiIndex (date, asset)); all-NaN rows dropped."""
        values = self.values()
        t, n = len(self.dates), len(self.symbols)
        index = pd.MultiIndex.from_arrays(
            [np.repeat(self.dates.values, n), np.tile(self.symbols.values, t)],
            names=["date", "asset"],
        )
        frame = pd.DataFrame({k: v.reshape(-1) for k, v in values.items()}, index=index)
        return frame.dropna(how="all") if dropna else frame

    def write(self, store: Any = None, *, block_rows: int = 64) -> int:
        """Persist the last run's values to ``store`` (URL, Store or None: the settings' URL).

        Records a run (factors registered with formula and structural hash), writes one
        transaction per block of dates, and closes the run with its status and count.
        """
        from engine.store import open_store

        values = self.values()
        own = store is None or isinstance(store, str)
        st = open_store(store or self.settings.database_url) if own else store
        try:
            with self._recorded_run(st, self.dates) as run:
                for b0 in range(0, len(self.dates), block_rows):
                    b1 = min(len(self.dates), b0 + block_rows)
                    block = {k: np.ascontiguousarray(v[b0:b1]) for k, v in values.items()}
                    run.written += st.write_block(run.id, block, self.dates[b0:b1], self.symbols)
            return run.written
        finally:
            if own:
                st.close()


def top_mask(x: np.ndarray, n: int) -> np.ndarray:
    """Per row, True for the ``n`` largest finite values of ``x`` (ties: lowest column)."""
    filled = np.where(np.isfinite(x), x, -np.inf)
    order = np.argsort(-filled, axis=1, kind="stable")[:, :n]
    mask = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask & np.isfinite(x)


def _keep(values: dict[str, np.ndarray], top_n: int) -> np.ndarray | None:
    """Pop the filter outputs from ``values``; the rows x symbols to keep (None: all)."""
    screen = values.pop(SCREEN, None)
    rank_by = values.pop(TOP, None)
    keep = None if screen is None else np.nan_to_num(screen, nan=0.0) != 0
    if rank_by is not None:
        if keep is not None:
            rank_by = np.where(keep, rank_by, np.nan)
        keep = top_mask(rank_by, top_n)
    return keep


_WORKER_STORES: dict[str, Any] = {}


@dataclasses.dataclass
class StoreSink:
    """Runs on a worker for each block: writes the block's requested rows to the store."""

    url: str
    run_id: int
    dates: pd.DatetimeIndex
    symbols: pd.Index
    first_row: int
    top_n: int = 0

    def __call__(self, b0: int, b1: int, values: dict[str, np.ndarray]) -> int:
        from engine.store import open_store

        r0 = max(b0, self.first_row)
        if r0 >= b1:
            return 0
        values = {k: v[r0 - b0 :] for k, v in values.items()}
        keep = _keep(values, self.top_n)
        block = {
            k: np.ascontiguousarray(v if keep is None else np.where(keep, v, np.nan))
            for k, v in values.items()
        }
        store = _WORKER_STORES.get(self.url)
        if store is None:
            store = _WORKER_STORES[self.url] = open_store(self.url, migrate=False)
        return store.write_block(self.run_id, block, self.dates[r0:b1], self.symbols)


@dataclasses.dataclass
class _Run:
    """An open run record: its id and the values written so far."""

    id: int
    written: int = 0


def _with_universe(window: Panel, symbols: pd.Index) -> Panel:
    """``window`` over the source's universe up to its last date (symbols without a bar in the
    window as NaN columns): values are unchanged (every operator skips NaN), and runs over
    different windows ending on the same date share one universe, hence cache keys."""
    symbols = pd.Index(sorted(set(map(str, symbols)) | set(window.symbols)))
    if window.symbols.equals(symbols):
        return window
    cols = symbols.get_indexer(window.symbols)
    t, n = len(window.dates), len(symbols)
    fields = {}
    for name, arr in window.fields.items():
        out = np.full((t, n), np.nan)
        out[:, cols] = arr
        fields[name] = out
    groups = {}
    for name, arr in window.groups.items():
        out = np.full((t, n), -1, dtype=np.int64)
        out[:, cols] = arr
        groups[name] = out
    return Panel(window.dates, symbols, fields, groups, window.group_labels)


def _reindex(arr: np.ndarray, have: pd.Index, want: pd.Index) -> np.ndarray:
    out = np.full((arr.shape[0], len(want)), np.nan)
    out[:, want.get_indexer(have)] = arr
    return out
