"""The production batch: ``nightly`` (new dates only), ``backfill`` (resumable chunks) and
``warm`` (pre-fill the shared cache for the next morning's notebooks).

Each writes through the same path as the notebook API (``Pipeline.run`` then
``Pipeline.write``): a run record, one transaction per block of dates, the run closed with
its status and count. ``nightly`` and ``backfill`` hold the spec's lock (``pipelines.locks``)
so two runs of one spec never compute or write the same dates at once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from engine.store import open_store
from pipelines.locks import spec_lock
from pipelines.pipeline import Pipeline
from pipelines.spec import Spec

log = logging.getLogger(__name__)


@dataclasses.dataclass
class BatchSummary:
    """What a batch command did, printed at its end."""

    command: str
    pipeline: str
    dates: list[pd.Timestamp]
    values_written: int = 0
    seconds: float = 0.0
    hit_rate: float = 0.0
    history_rows: dict[str, int] = dataclasses.field(default_factory=dict)
    skipped: list[str] = dataclasses.field(default_factory=list)
    quality: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        span = (
            f"{self.dates[0]:%Y-%m-%d}..{self.dates[-1]:%Y-%m-%d} ({len(self.dates)} dates)"
            if self.dates
            else "no new dates"
        )
        lines = [
            f"{self.command} {self.pipeline}: {span}; {self.values_written:,} values written "
            f"in {self.seconds:.1f}s; cache hit rate {self.hit_rate:.0%}"
        ]
        if self.history_rows:
            hist = ", ".join(f"{k}: {v} rows" for k, v in self.history_rows.items())
            lines.append(f"  history loaded: {hist}")
        lines += [f"  skipped: {s}" for s in self.skipped]
        lines += [f"  quality: {q}" for q in self.quality]
        return "\n".join(lines)


def _succeeded(store: Any, name: str) -> pd.DataFrame:
    runs = store.runs()
    if runs.empty:
        return runs
    return runs[(runs["pipeline"] == name) & (runs["status"] == "succeeded")]


def _input_quality(pipe: Pipeline, dates: pd.DatetimeIndex) -> list[str]:
    """Data-quality findings of the source on the computed dates (quarantine, halts)."""
    panel = pipe.source.load(dates[0], dates[-1])
    report = panel.quality
    notes = []
    if report.n_quarantined:
        first = report.quarantine.iloc[0]
        notes.append(
            f"{report.n_quarantined} bad bars quarantined (first: {first['symbol']} "
            f"{pd.Timestamp(first['date']):%Y-%m-%d}: {first['reason']})"
        )
    traded = np.isfinite(panel["close"]).sum(axis=1)
    thin = [f"{d:%Y-%m-%d}" for d, n in zip(panel.dates, traded) if n < 0.5 * len(panel.symbols)]
    if thin:
        notes.append(f"fewer than half the symbols traded on {', '.join(thin[:3])}")
    if not notes:
        notes.append(f"inputs clean: {int(traded.sum())} bars on {len(panel.dates)} dates")
    return notes


def nightly(
    spec: Spec, date: Any = None, *, client: Any = None, wait: bool = False
) -> BatchSummary:
    """Compute and store the dates after the last stored one, up to ``date`` (default: the
    source's last date), loading only the history the factors' lookbacks need."""
    started = time.perf_counter()
    pipe = Pipeline.from_spec(spec)
    url = spec.settings.database_url
    with spec_lock(url, spec.name, wait=wait), open_store(url) as store:
        cal = pipe.calendar
        target = cal[-1] if date is None else pd.Timestamp(date)
        if target not in cal:
            raise ValueError(f"{target:%Y-%m-%d} is not a trading date of the source")
        done = _succeeded(store, spec.name)
        last = pd.Timestamp(done["end_date"].max()) if len(done) else None
        new = cal[(cal <= target) & (cal > last)] if last is not None else cal[cal == target]
        summary = BatchSummary("nightly", spec.name, list(new))
        if len(new) == 0:
            summary.skipped.append(f"already stored up to {last:%Y-%m-%d}")
            return summary
        summary.history_rows = pipe.history_needed(new[0], new[-1])
        summary.values_written = pipe.run_to_store(new[0], new[-1], url, client)
        summary.hit_rate = pipe.stats.hit_rate
        summary.quality = _input_quality(pipe, new)
    summary.seconds = time.perf_counter() - started
    return summary


def backfill(
    spec: Spec,
    start: Any,
    end: Any,
    *,
    chunk: int = 250,
    client: Any = None,
    wait: bool = False,
) -> BatchSummary:
    """Compute and store ``[start, end]`` in chunks of ``chunk`` dates; a chunk recorded as
    succeeded in the runs table is skipped, so an interrupted backfill resumes."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    started = time.perf_counter()
    pipe = Pipeline.from_spec(spec)
    url = spec.settings.database_url
    cal = pipe.calendar
    dates = cal[(cal >= pd.Timestamp(start)) & (cal <= pd.Timestamp(end))]
    if len(dates) == 0:
        raise ValueError(f"no trading dates in [{start}, {end}] in the source")
    summary = BatchSummary("backfill", spec.name, list(dates))
    hits = lookups = 0
    with spec_lock(url, spec.name, wait=wait), open_store(url) as store:
        done = _succeeded(store, spec.name)
        finished = {
            (pd.Timestamp(a), pd.Timestamp(b)) for a, b in zip(done["start_date"], done["end_date"])
        }
        for c0 in range(0, len(dates), chunk):
            part = dates[c0 : c0 + chunk]
            if (part[0], part[-1]) in finished:
                summary.skipped.append(f"{part[0]:%Y-%m-%d}..{part[-1]:%Y-%m-%d} (done earlier)")
                continue
            summary.values_written += pipe.run_to_store(part[0], part[-1], url, client)
            stats = pipe.stats
            hits += stats.l1_hits + stats.l2_hits
            lookups += stats.lookups
            summary.quality += _input_quality(pipe, part)
            log.info("backfill %s: %s..%s stored", spec.name, part[0], part[-1])
    summary.hit_rate = hits / lookups if lookups else 0.0
    summary.seconds = time.perf_counter() - started
    return summary


def warm(spec: Spec, days: int | None = None, *, client: Any = None) -> BatchSummary:
    """Compute the spec's factors over its latest ``days`` dates so their blocks (and shared
    sub-expressions) sit in the shared cache for the next morning's notebook runs."""
    if not spec.settings.redis_url:
        raise ValueError("warm needs a shared cache: set [cache] redis_url or REDIS_URL")
    started = time.perf_counter()
    pipe = Pipeline.from_spec(spec)
    days = days or spec.warm_days
    cal = pipe.calendar
    recent = cal[max(0, len(cal) - days) :]
    pipe.run(recent[0], recent[-1], client)
    summary = BatchSummary("warm", spec.name, list(recent))
    summary.hit_rate = pipe.stats.hit_rate
    stored = sum(r.stats.stored for r in pipe.results)
    summary.quality.append(f"{stored} block values stored in the shared cache")
    summary.seconds = time.perf_counter() - started
    return summary
