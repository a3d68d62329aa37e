"""Prometheus metrics of the engine, served on the Dask scheduler's own ``/metrics`` endpoint.

The executor publishes a run's progress as scheduler events on the topic ``alphaforge``
(``engine.execute.DashboardEvents``). :class:`MetricsPlugin`, a scheduler plugin, sees every
event as it is logged (``SchedulerPlugin.log_event``) and keeps running totals; a collector
registered once on ``prometheus_client``'s default registry -- the registry distributed's
``/metrics`` handler serves with ``generate_latest()`` -- turns them into:

=====================================  ==========================================================
``alphaforge_runs_total``              runs started (``plan`` events)
``alphaforge_runs_finished_total``     runs finished (``finish`` events)
``alphaforge_blocks_total``            block tasks completed
``alphaforge_node_computations_total`` operator nodes computed (not taken from a cache)
``alphaforge_cache_hits_total``        cache hits, label ``level="l1"|"l2"``
``alphaforge_cache_misses_total``      cache misses
``alphaforge_rows_written_total``      rows written by block sinks (store writers)
``alphaforge_block_seconds``           histogram of a block task's wall time
=====================================  ==========================================================

Installed by ``cluster.dashboard`` (``dask scheduler --preload cluster.dashboard``, and the
embedded LocalCluster of ``cluster.connect``), or on a running scheduler with
``install(client)`` (the scheduler must be able to import ``cluster.metrics``).

One scheduler per process is the normal case; when several run in one process (tests), the
metrics are summed over the running ones, as the registry is per process.
"""

from __future__ import annotations

import bisect
import logging
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

log = logging.getLogger(__name__)

TOPIC = "alphaforge"
PLUGIN_NAME = "alphaforge-metrics"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

_COUNTERS = (
    "runs",
    "runs_finished",
    "blocks",
    "node_computations",
    "l1_hits",
    "l2_hits",
    "misses",
    "rows_written",
)


def _number(msg: Mapping[str, Any], key: str) -> float:
    value = msg.get(key, 0)
    return value if isinstance(value, (int, float)) and value >= 0 else 0


class MetricsPlugin(SchedulerPlugin):
    """Running totals of the ``alphaforge`` events this scheduler has seen."""

    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.counts: dict[str, float] = dict.fromkeys(_COUNTERS, 0)
        self.bucket_counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.seconds_sum = 0.0
        self.scheduler: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # sent to the scheduler by ``install(client)``
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state["scheduler"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -------------------------------------------------------------- plugin hooks
    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        # Events logged before the plugin was added (it may be installed late) count too.
        for _, msg in scheduler.get_events(TOPIC):
            self.observe(msg)
        _PLUGINS.add(self)
        _register_collector()

    async def close(self) -> None:
        _PLUGINS.discard(self)

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == TOPIC:
            self.observe(msg)

    # -------------------------------------------------------------- accounting
    def observe(self, msg: Any) -> None:
        """Fold one ``alphaforge`` event into the totals (unknown or malformed ones ignored)."""
        if not isinstance(msg, Mapping):
            return
        kind = msg.get("event")
        with self._lock:
            c = self.counts
            if kind == "plan":
                c["runs"] += 1
            elif kind == "finish":
                c["runs_finished"] += 1
            elif kind == "block":
                c["blocks"] += 1
                c["node_computations"] += _number(msg, "computed")
                c["l1_hits"] += _number(msg, "l1_hits")
                c["l2_hits"] += _number(msg, "l2_hits")
                c["misses"] += _number(msg, "misses")
                c["rows_written"] += _number(msg, "rows_written")
                seconds = float(_number(msg, "seconds"))
                self.bucket_counts[bisect.bisect_left(BUCKETS, seconds)] += 1
                self.seconds_sum += seconds

    def snapshot(self) -> tuple[dict[str, float], list[int], float]:
        with self._lock:
            return dict(self.counts), list(self.bucket_counts), self.seconds_sum

    @property
    def running(self) -> bool:
        status = getattr(self.scheduler, "status", None)
        return self.scheduler is not None and getattr(status, "name", "") not in {
            "closing",
            "closed",
            "failed",
        }


# ------------------------------------------------------------------ the collector
_PLUGINS: weakref.WeakSet[MetricsPlugin] = weakref.WeakSet()
_REGISTERED = False
_REGISTER_LOCK = threading.Lock()


class AlphaforgeCollector:
    """A ``prometheus_client`` custom collector summing the running schedulers' plugins."""

    def describe(self) -> list:
        return []  # no eager collect() on register: the metrics are produced per scrape

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        counts = dict.fromkeys(_COUNTERS, 0.0)
        buckets = [0] * (len(BUCKETS) + 1)
        seconds_sum = 0.0
        for plugin in list(_PLUGINS):
            if not plugin.running:
                continue
            c, b, s = plugin.snapshot()
            for k, v in c.items():
                counts[k] += v
            buckets = [x + y for x, y in zip(buckets, b, strict=True)]
            seconds_sum += s

        def counter(name: str, doc: str, key: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=counts[key])

        yield counter("alphaforge_runs", "Factor computation runs started.", "runs")
        yield counter(
            "alphaforge_runs_finished", "Factor computation runs finished.", "runs_finished"
        )
        yield counter("alphaforge_blocks", "Block tasks completed.", "blocks")
        yield counter(
            "alphaforge_node_computations",
            "Operator nodes computed (not taken from a cache).",
            "node_computations",
        )
        hits = CounterMetricFamily(
            "alphaforge_cache_hits", "Node results taken from a cache.", labels=["level"]
        )
        hits.add_metric(["l1"], counts["l1_hits"])
        hits.add_metric(["l2"], counts["l2_hits"])
        yield hits
        yield counter("alphaforge_cache_misses", "Node results found in no cache level.", "misses")
        yield counter("alphaforge_rows_written", "Rows written by block sinks.", "rows_written")
        cumulative, total = [], 0
        for le, n in zip([*map(str, BUCKETS), "+Inf"], buckets, strict=True):
            total += n
            cumulative.append((le, total))
        yield HistogramMetricFamily(
            "alphaforge_block_seconds",
            "Wall time of one block task, seconds.",
            buckets=cumulative,
            sum_value=seconds_sum,
        )


def _register_collector() -> bool:
    """Register :class:`AlphaforgeCollector` on the default registry, once per process."""
    global _REGISTERED
    with _REGISTER_LOCK:
        if _REGISTERED:
            return True
        try:
            from prometheus_client import REGISTRY
        except ImportError:
            log.warning("prometheus_client is not installed: no alphaforge metrics on /metrics")
            return False
        REGISTRY.register(AlphaforgeCollector())
        _REGISTERED = True
        return True


def add_to_scheduler(scheduler: Any) -> MetricsPlugin:
    """Add the metrics plugin to ``scheduler`` (in its process) unless it is already there."""
    plugin = scheduler.plugins.get(PLUGIN_NAME)
    if plugin is None:
        plugin = MetricsPlugin()
        scheduler.add_plugin(plugin, name=PLUGIN_NAME)
    return plugin


def install(client: Any) -> None:
    """Add the metrics plugin to a running scheduler from a client (no preload needed)."""
    client.register_plugin(MetricsPlugin(), name=PLUGIN_NAME)
