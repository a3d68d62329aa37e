"""The engine's page on the Dask dashboard: ``<dashboard>/alphaforge``.

It shows the runs of ``engine.compute`` that used this scheduler: a table of recent runs (id,
dates, factors, plan nodes before -> after sharing, blocks done/total, seconds, cache hit
rate, rows written), the current run's progress (a bar and blocks done over time), its cache
hits per block (L1 / L2 / miss, stacked), its block seconds and rows written, and the slowest
operator nodes of the last finished run. The page reads the scheduler's event log for the topic
``alphaforge`` (published by ``engine.execute.DashboardEvents``) once a second; it needs no
other state, so it also shows runs that happened before it was opened (as many events as the
scheduler keeps: ``distributed.admin.low-level-log-length``, 1000 per topic by default).

How it gets onto the dashboard: distributed builds the dashboard's bokeh applications from the
mapping ``distributed.dashboard.scheduler.applications`` (route -> ``doc(scheduler, extra,
doc)``) when the scheduler starts, so the page must be registered before that:

* an external scheduler: ``dask scheduler --preload cluster.dashboard`` (the preload is
  imported before the dashboard starts, which registers the page; its ``dask_setup`` then adds
  the Prometheus metrics plugin, ``cluster.metrics``, and the navigation link);
* the embedded LocalCluster of ``cluster.connect`` passes the same preload to its scheduler.

The page is listed in the dashboard's "More..." menu (as "Alphaforge", from its
``/individual-alphaforge`` route) and, with ``dask_setup``, in the top navigation bar.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from cluster.metrics import TOPIC, add_to_scheduler

log = logging.getLogger(__name__)

ROUTE = "/alphaforge"
NAV_ROUTE = "/individual-alphaforge"  # distributed lists "/individual-*" pages under "More..."
MAX_RUNS = 50
STALE_SECONDS = 300.0


# ------------------------------------------------------------------ events -> runs
def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return out if out == out else 0.0  # NaN -> 0


@dataclasses.dataclass
class RunView:
    """What the events of one run say about it."""

    run: str
    started: float
    last_event: float = 0.0
    plan: dict = dataclasses.field(default_factory=dict)
    blocks: list[tuple[float, dict]] = dataclasses.field(default_factory=list)
    finish: dict | None = None

    @property
    def done(self) -> int:
        return max((_int(b.get("done", 0)) for _, b in self.blocks), default=0) or len(self.blocks)

    @property
    def total(self) -> int:
        total = self.plan.get("blocks")
        if total is None and self.blocks:
            total = self.blocks[-1][1].get("total")
        return _int(total)

    @property
    def status(self) -> str:
        if self.finish is not None:
            return "finished"
        if time.time() - self.last_event > STALE_SECONDS:
            return "no finish"
        return "running"

    @property
    def seconds(self) -> float:
        if self.finish is not None:
            return _float(self.finish.get("seconds"))
        end = time.time() if self.status == "running" else self.last_event
        return max(0.0, end - self.started)

    def _sum(self, key: str) -> int:
        return sum(_int(b.get(key)) for _, b in self.blocks)

    @property
    def hit_rate(self) -> float:
        if self.finish is not None and "hit_rate" in self.finish:
            return _float(self.finish["hit_rate"])
        hits = self._sum("l1_hits") + self._sum("l2_hits")
        lookups = hits + self._sum("misses")
        return hits / lookups if lookups else 0.0

    @property
    def rows_written(self) -> int:
        if self.finish is not None and "rows_written" in self.finish:
            return _int(self.finish["rows_written"])
        return self._sum("rows_written")

    @property
    def dates(self) -> str:
        first, last = self.plan.get("first_date"), self.plan.get("last_date")
        return f"{first} .. {last}" if first else ""

    @property
    def nodes(self) -> str:
        if "nodes" not in self.plan:
            return ""
        return f"{self.plan.get('nodes_before', '?')} -> {self.plan['nodes']}"


def summarize(events: Iterable[tuple[float, Any]]) -> list[RunView]:
    """Group ``alphaforge`` events ``(timestamp, msg)`` by run, newest run first."""
    runs: dict[str, RunView] = {}
    for stamp, msg in events:
        if not isinstance(msg, Mapping) or "run" not in msg:
            continue
        run_id, stamp = str(msg["run"]), _float(stamp)
        view = runs.get(run_id)
        if view is None:
            view = runs[run_id] = RunView(run=run_id, started=stamp)
        view.last_event = max(view.last_event, stamp)
        kind = msg.get("event")
        if kind == "plan":
            view.plan = dict(msg)
            view.started = stamp
        elif kind == "block":
            view.blocks.append((stamp, dict(msg)))
        elif kind == "finish":
            view.finish = dict(msg)
    return sorted(runs.values(), key=lambda r: r.started, reverse=True)


def read_runs(scheduler: Any) -> list[RunView]:
    """The runs in ``scheduler``'s event log (an empty list when there are none)."""
    try:
        events = scheduler.get_events(TOPIC)
    except Exception as exc:  # the page must render whatever the log holds
        log.debug("could not read alphaforge events: %s", exc)
        events = ()
    return summarize(events)


# ------------------------------------------------------------------ the bokeh page
def _esc(value: Any) -> str:
    """Event fields come from any client: escape them before they go into HTML."""
    return html.escape(str(value))


def _clock(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


class AlphaforgePage:
    """The bokeh models of the page and the periodic ``update`` that refills them."""

    def __init__(self, scheduler: Any, width: int = 900):
        from bokeh.layouts import column, row
        from bokeh.models import (
            ColumnDataSource,
            DataTable,
            Div,
            Legend,
            LegendItem,
            NumberFormatter,
            TableColumn,
        )
        from bokeh.plotting import figure

        def _hover_figure(title: str, height: int, fig_width: int, tooltips: list) -> Any:
            """A plot of this page: fixed size, no toolbar, hover tooltips."""
            return figure(
                title=title,
                height=height,
                width=fig_width,
                toolbar_location=None,
                tools="hover",
                tooltips=tooltips,
            )

        self.scheduler = scheduler
        self._seen: tuple | None = None
        self.header = Div(text="", sizing_mode="stretch_width", name="alphaforge-header")

        self.runs_source = ColumnDataSource(self._empty_runs(), name="alphaforge-runs")
        fmt = NumberFormatter(format="0,0")
        columns = [
            TableColumn(field="run", title="run", width=80),
            TableColumn(field="started", title="started", width=160),
            TableColumn(field="dates", title="dates", width=200),
            TableColumn(field="factors", title="factors", width=60),
            TableColumn(field="nodes", title="nodes (before -> shared)", width=150),
            TableColumn(field="blocks", title="blocks done/total", width=110),
            TableColumn(
                field="seconds", title="seconds", width=70, formatter=NumberFormatter(format="0.00")
            ),
            TableColumn(
                field="hit_rate", title="hit rate", width=70, formatter=NumberFormatter(format="0%")
            ),
            TableColumn(field="rows_written", title="rows written", width=100, formatter=fmt),
            TableColumn(field="status", title="status", width=80),
        ]
        self.runs_table = DataTable(
            source=self.runs_source,
            columns=columns,
            height=180,
            sizing_mode="stretch_width",
            index_position=None,
        )

        self.progress_source = ColumnDataSource(
            {"y": [0], "done": [0], "total": [1]}, name="alphaforge-progress"
        )
        self.progress = figure(
            title="Current run: blocks done",
            height=110,
            width=width,
            x_range=(0, 1),
            toolbar_location=None,
            tools="",
            sizing_mode="stretch_width",
        )
        self.progress.hbar(
            y="y", left=0, right="total", height=0.6, color="#dddddd", source=self.progress_source
        )
        self.progress.hbar(
            y="y", left=0, right="done", height=0.6, color="#2ca02c", source=self.progress_source
        )
        self.progress.yaxis.visible = False
        self.progress.ygrid.visible = False

        self.timeline_source = ColumnDataSource({"t": [], "done": []}, name="alphaforge-timeline")
        self.timeline = _hover_figure(
            "Blocks done over time (s since the plan)",
            200,
            width // 2,
            [("t", "@t{0.00} s"), ("done", "@done")],
        )
        self.timeline.step(x="t", y="done", source=self.timeline_source, mode="after", line_width=2)
        self.timeline.scatter(x="t", y="done", source=self.timeline_source, size=4)

        self.blocks_source = ColumnDataSource(self._empty_blocks(), name="alphaforge-blocks")
        self.cache = _hover_figure(
            "Cache per block: L1 hits / L2 hits / misses",
            240,
            width // 2,
            [
                ("block", "@block: @dates"),
                ("L1", "@l1"),
                ("L2", "@l2"),
                ("miss", "@miss"),
                ("worker", "@worker"),
            ],
        )
        stacked = self.cache.vbar_stack(
            ["l1", "l2", "miss"],
            x="block",
            width=0.8,
            color=["#2ca02c", "#1f77b4", "#d62728"],
            source=self.blocks_source,
        )
        labels = ("L1 hit", "L2 hit", "miss")
        legend = Legend(
            items=[
                LegendItem(label=t, renderers=[r]) for t, r in zip(labels, stacked, strict=True)
            ],
            location="top_left",
        )
        self.cache.add_layout(legend, "right")
        self.cache.xaxis.axis_label = "block (completion order)"

        self.seconds = _hover_figure(
            "Block seconds",
            240,
            width // 2,
            [
                ("block", "@block: @dates"),
                ("seconds", "@seconds{0.000}"),
                ("computed nodes", "@computed"),
                ("worker", "@worker"),
            ],
        )
        self.seconds.vbar(
            x="block", top="seconds", width=0.8, color="#9467bd", source=self.blocks_source
        )
        self.seconds.xaxis.axis_label = "block (completion order)"

        self.rows = _hover_figure(
            "Rows written (cumulative)",
            200,
            width // 2,
            [("block", "@block"), ("rows", "@rows_cum{0,0}")],
        )
        self.rows.step(
            x="block",
            y="rows_cum",
            source=self.blocks_source,
            mode="after",
            line_width=2,
            color="#ff7f0e",
        )
        self.rows.xaxis.axis_label = "block (completion order)"

        self.slow_title = Div(
            text="<b>Slowest operator nodes</b> (no finished run yet)", name="alphaforge-slow-title"
        )
        self.slow_source = ColumnDataSource({"node": [], "seconds": []}, name="alphaforge-slow")
        self.slow_table = DataTable(
            source=self.slow_source,
            columns=[
                TableColumn(field="node", title="node", width=700),
                TableColumn(
                    field="seconds",
                    title="seconds (summed over blocks)",
                    formatter=NumberFormatter(format="0.0000"),
                ),
            ],
            height=160,
            sizing_mode="stretch_width",
            index_position=None,
        )

        self.root = column(
            self.header,
            self.runs_table,
            self.progress,
            row(self.timeline, self.rows, sizing_mode="stretch_width"),
            row(self.cache, self.seconds, sizing_mode="stretch_width"),
            self.slow_title,
            self.slow_table,
            sizing_mode="stretch_width",
        )

    @staticmethod
    def _empty_runs() -> dict[str, list]:
        keys = ("run", "started", "dates", "factors", "nodes", "blocks", "seconds",
                "hit_rate", "rows_written", "status")  # fmt: skip
        return {k: [] for k in keys}

    @staticmethod
    def _empty_blocks() -> dict[str, list]:
        keys = ("block", "dates", "l1", "l2", "miss", "seconds", "computed", "rows_cum",
                "worker")  # fmt: skip
        return {k: [] for k in keys}

    def update(self) -> None:
        runs = read_runs(self.scheduler)
        current = runs[0] if runs else None
        latest = max((r.last_event for r in runs), default=0.0)
        seen = (len(runs), latest, current and current.status)
        if seen == self._seen and (current is None or current.status != "running"):
            return
        self._seen = seen
        self._update_header(current)
        self._update_runs(runs[:MAX_RUNS])
        self._update_current(current)
        self._update_slow(next((r for r in runs if r.finish is not None), None))

    def _update_header(self, current: RunView | None) -> None:
        if current is None:
            self.header.text = (
                "<h2>alphaforge</h2><p>No runs yet: call <code>engine.compute(...)</code> "
                "with a client of this scheduler and they appear here.</p>"
            )
            return
        self.header.text = (
            f"<h2>alphaforge</h2><p>Current run <b>{_esc(current.run)}</b> ({current.status}): "
            f"{current.done}/{current.total} blocks, {current.seconds:.2f} s, "
            f"{_esc(current.plan.get('factors', '?'))} factors over {_esc(current.dates or '?')} "
            f"x {_esc(current.plan.get('symbols', '?'))} symbols, cache hit rate "
            f"{current.hit_rate:.0%}, {current.rows_written:,} rows written.</p>"
        )

    def _update_runs(self, runs: list[RunView]) -> None:
        self.runs_source.data = {
            "run": [r.run for r in runs],
            "started": [_clock(r.started) for r in runs],
            "dates": [r.dates for r in runs],
            "factors": [r.plan.get("factors", "") for r in runs],
            "nodes": [r.nodes for r in runs],
            "blocks": [f"{r.done}/{r.total}" for r in runs],
            "seconds": [round(r.seconds, 3) for r in runs],
            "hit_rate": [r.hit_rate for r in runs],
            "rows_written": [r.rows_written for r in runs],
            "status": [r.status for r in runs],
        }

    def _update_current(self, current: RunView | None) -> None:
        if current is None:
            return
        total = max(current.total, current.done, 1)
        self.progress.title.text = (
            f"Run {current.run}: {current.done}/{current.total} blocks ({current.status})"
        )
        self.progress.x_range.end = total
        self.progress_source.data = {"y": [0], "done": [current.done], "total": [total]}
        blocks = sorted(current.blocks, key=lambda sb: _int(sb[1].get("done")))
        self.timeline_source.data = {
            "t": [0.0] + [max(0.0, s - current.started) for s, _ in blocks],
            "done": [0] + [_int(b.get("done", i + 1)) for i, (_, b) in enumerate(blocks)],
        }
        rows_cum, acc = [], 0
        for _, b in blocks:
            acc += _int(b.get("rows_written"))
            rows_cum.append(acc)
        self.blocks_source.data = {
            "block": list(range(1, len(blocks) + 1)),
            "dates": [f"{b.get('first_date', '')}..{b.get('last_date', '')}" for _, b in blocks],
            "l1": [_int(b.get("l1_hits", 0)) for _, b in blocks],
            "l2": [_int(b.get("l2_hits", 0)) for _, b in blocks],
            "miss": [_int(b.get("misses", 0)) for _, b in blocks],
            "seconds": [_float(b.get("seconds", 0.0)) for _, b in blocks],
            "computed": [_int(b.get("computed", 0)) for _, b in blocks],
            "rows_cum": rows_cum,
            "worker": [str(b.get("worker", "")) for _, b in blocks],
        }

    def _update_slow(self, finished: RunView | None) -> None:
        if finished is None or finished.finish is None:
            return
        raw = finished.finish.get("slow")
        slow = (
            [s for s in raw if isinstance(s, (list, tuple)) and len(s) == 2]
            if isinstance(raw, (list, tuple))
            else []
        )
        self.slow_title.text = (
            f"<b>Slowest operator nodes</b> of the last finished run, {_esc(finished.run)}"
            + ("" if slow else " (none computed: every node came from the cache)")
        )
        self.slow_source.data = {
            "node": [str(n) for n, _ in slow],
            "seconds": [_float(s) for _, s in slow],
        }


def alphaforge_doc(scheduler: Any, extra: Mapping[str, Any], doc: Any) -> None:
    """The bokeh document of ``/alphaforge`` (a distributed dashboard application)."""
    from distributed.dashboard.components.scheduler import BOKEH_THEME, env

    page = AlphaforgePage(scheduler)
    doc.title = "Dask: alphaforge"
    doc.add_root(page.root)
    doc.template = env.get_template("simple.html")
    doc.template_variables.update(extra)
    doc.theme = BOKEH_THEME

    def tick() -> None:
        try:
            page.update()
        except Exception:  # a broken tick must not kill the page or the scheduler
            log.exception("alphaforge dashboard update failed")

    tick()
    doc.add_periodic_callback(tick, 1000)


# ------------------------------------------------------------------ registration
def register() -> bool:
    """Add ``/alphaforge`` to distributed's dashboard applications (idempotent).

    Takes effect for schedulers whose dashboard starts afterwards; returns False when the
    dashboard is unavailable (bokeh missing or of a version distributed does not support).
    """
    try:
        from distributed.dashboard.scheduler import applications
    except ImportError as exc:
        log.info("no Dask dashboard, so no alphaforge page: %s", exc)
        return False
    applications.setdefault(ROUTE, alphaforge_doc)
    applications.setdefault(NAV_ROUTE, alphaforge_doc)
    return True


def _add_nav_link(scheduler: Any) -> None:
    """Put "Alphaforge" in the top navigation bar of this scheduler's dashboard pages.

    distributed has no public hook for this: its pages share the (memoized) list
    ``template_variables(scheduler)["pages"]``, so appending to it adds the link.
    The page is in the "More..." menu in any case.
    """
    if getattr(scheduler, "http_application", None) is None:
        return
    try:
        from distributed.dashboard.scheduler import template_variables

        pages = template_variables(scheduler)["pages"]
        if ROUTE.strip("/") not in pages:
            pages.insert(max(0, len(pages) - 1), ROUTE.strip("/"))  # before "info"
    except Exception as exc:
        log.debug("could not add the alphaforge navigation link: %s", exc)


def dask_setup(scheduler: Any) -> None:
    """Preload hook (``dask scheduler --preload cluster.dashboard``): metrics and nav link."""
    add_to_scheduler(scheduler)
    _add_nav_link(scheduler)


# Importing this module (as a preload does before the scheduler's dashboard starts) registers
# the page.
register()
