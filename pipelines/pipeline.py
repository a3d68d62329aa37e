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

A pipeline loads only the history its longest lookback needs before ``start``, computes on
the configured cluster (``engine.compute``), and returns the requested dates. ``screen`` is an
expression; rows where it is false or NaN are dropped from the frame, like zipline's screen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cluster.config import Settings, load_settings
from engine.execute import ComputeResult, compute, plan
from engine.panel import Panel
from engine.plan import UNBOUNDED, Plan, lookbacks
from factors import parse
from factors.expr import Expr

log = logging.getLogger(__name__)

SCREEN = "__screen__"


def load_source(source: Any) -> Panel:
    """A Panel from a Panel, ``"sample"``, ``"synthetic"``, or a .parquet/.csv path."""
    from engine import sources

    if isinstance(source, Panel):
        return source
    if callable(source):
        return source()
    if source in (None, "sample"):
        return sources.sample()
    if source == "synthetic":
        return sources.synthetic()
    path = Path(str(source))
    if path.suffix == ".parquet":
        return sources.read_parquet(path)
    if path.suffix == ".csv":
        return sources.read_csv(path)
    raise ValueError(f"unknown source {source!r}: use a Panel, 'sample', 'synthetic' or a path")


class Pipeline:
    """Named factors + a source (+ an optional screen), computed over a date range."""

    def __init__(
        self,
        factors: Mapping[str, Expr | str],
        *,
        source: Panel | str | Callable[[], Panel] | None = "sample",
        screen: Expr | str | None = None,
        dialect: str = "alpha101",
        name: str = "pipeline",
        settings: Settings | None = None,
    ) -> None:
        if not factors:
            raise ValueError("a pipeline needs at least one factor")
        self.name = name
        self.dialect = dialect
        self.settings = settings or load_settings()
        self.source = source
        self._panel: Panel | None = None
        self.factors: dict[str, Expr] = {
            k: parse(v, dialect) if isinstance(v, str) else v for k, v in factors.items()
        }
        self.screen = parse(screen, dialect) if isinstance(screen, str) else screen
        self.result: ComputeResult | None = None
        self._range: tuple[int, int] | None = None

    # -- data -------------------------------------------------------------------------
    @property
    def panel(self) -> Panel:
        """The whole source panel (loaded once)."""
        if self._panel is None:
            self._panel = load_source(self.source)
        return self._panel

    def _exprs(self) -> dict[str, Expr]:
        out = dict(self.factors)
        if self.screen is not None:
            out[SCREEN] = self.screen
        return out

    def _rows(self, start: Any, end: Any) -> tuple[int, int, int]:
        """(first history row, first requested row, end row) in the source panel."""
        dates = self.panel.dates
        i0 = 0 if start is None else int(dates.searchsorted(pd.Timestamp(start), "left"))
        i1 = len(dates) if end is None else int(dates.searchsorted(pd.Timestamp(end), "right"))
        if i1 <= i0:
            raise ValueError(f"no trading dates in [{start}, {end}] in the source")
        lookback = max(lookbacks(self._exprs()).values())
        h0 = 0 if lookback >= UNBOUNDED else max(0, i0 - lookback)
        return h0, i0, i1

    # -- API --------------------------------------------------------------------------
    def plan(self, start: Any = None, end: Any = None) -> Plan:
        """The execution plan for ``[start, end]``."""
        h0, _, i1 = self._rows(start, end)
        n_threads = self.settings.n_workers * self.settings.threads_per_worker
        return plan(
            self._exprs(),
            self.panel.islice(h0, i1),
            dialect=self.dialect,
            n_threads=n_threads,
            block_rows=self.settings.block_rows,
            cache_nodes=self.settings.cache_nodes,
            origin=h0,
        )

    def explain(self, start: Any = None, end: Any = None) -> str:
        """The plan as text (also printed)."""
        text = self.plan(start, end).explain()
        print(text)
        return text

    def run(
        self, start: Any = None, end: Any = None, client: Any = None, **kw: Any
    ) -> pd.DataFrame:
        """Compute the factors over ``[start, end]``; alphalens-layout frame."""
        h0, i0, i1 = self._rows(start, end)
        window = self.panel.islice(h0, i1)
        t0 = time.perf_counter()
        kw.setdefault("origin", h0)
        self.result = compute(
            self._exprs(), window, client, dialect=self.dialect, settings=self.settings, **kw
        )
        self._range = (i0 - h0, i1 - h0)
        log.info("pipeline %r: %s", self.name, self.result.summary())
        frame = self.frame()
        log.debug("pipeline %r done in %.2fs", self.name, time.perf_counter() - t0)
        return frame

    def values(self) -> dict[str, np.ndarray]:
        """The last run's (dates, symbols) arrays over the requested dates, screen applied."""
        if self.result is None or self._range is None:
            raise RuntimeError("run the pipeline first")
        r0, r1 = self._range
        out = {k: v[r0:r1] for k, v in self.result.factors.items() if k != SCREEN}
        if self.screen is not None:
            keep = self.result.factors[SCREEN][r0:r1]
            mask = ~(np.nan_to_num(keep, nan=0.0) != 0)
            out = {k: np.where(mask, np.nan, v) for k, v in out.items()}
        return out

    def dates(self) -> pd.DatetimeIndex:
        assert self.result is not None and self._range is not None
        r0, r1 = self._range
        return self.result.dates[r0:r1]

    def frame(self) -> pd.DataFrame:
        """The last run as a long frame (MultiIndex (date, asset)); screened rows dropped."""
        values = self.values()
        dates, symbols = self.dates(), self.result.symbols
        t, n = len(dates), len(symbols)
        index = pd.MultiIndex.from_arrays(
            [np.repeat(dates.values, n), np.tile(symbols.values, t)], names=["date", "asset"]
        )
        frame = pd.DataFrame({k: v.reshape(-1) for k, v in values.items()}, index=index)
        if self.screen is not None:
            keep = self.result.factors[SCREEN][self._range[0] : self._range[1]].reshape(-1)
            frame = frame[np.nan_to_num(keep, nan=0.0) != 0]
        return frame

    def write(self, store: Any = None, *, library: str | None = None) -> int:
        """Persist the last run's values (requested dates only) to ``store``; values written."""
        from engine.store import open_store

        if self.result is None:
            raise RuntimeError("run the pipeline first")
        own = store is None or isinstance(store, str)
        st = open_store(store or self.settings.database_url) if own else store
        values = self.values()
        dates, symbols = self.dates(), self.result.symbols
        specs = {k: (repr(e), e.key, library) for k, e in self.factors.items()}
        run_id = st.start_run(self.name, dates[0], dates[-1], specs)
        written = 0
        try:
            step = max(1, self.result.plan.block_rows)
            for b0 in range(0, len(dates), step):
                b1 = min(len(dates), b0 + step)
                block = {k: np.ascontiguousarray(v[b0:b1]) for k, v in values.items()}
                written += st.write_block(run_id, block, dates[b0:b1], symbols)
        except BaseException as exc:
            st.finish_run(run_id, "failed", written, error=f"{type(exc).__name__}: {exc}")
            raise
        st.finish_run(run_id, "succeeded", written)
        if own:
            st.close()
        return written
