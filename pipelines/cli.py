"""The ``alphaforge`` command line.

Every command exits 0 on success and non-zero with a one-paragraph message on failure
(no traceback unless ``--debug``). Settings come from ``alphaforge.toml`` / environment
(``cluster.config``); flags override them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from engine.errors import AlphaforgeError

log = logging.getLogger("alphaforge")

DEMO_FACTORS = {
    "mom_20": "close / delay(close, 20) - 1",
    "sector_mom": "IndNeutralize(rank(close / delay(close, 60) - 1), IndClass.sector)",
    "reversal_5": "-1 * rank(delta(close, 5))",
    "pv_corr_10": "-1 * correlation(rank(open), rank(volume), 10)",
    "vol_20": "stddev(returns, 20)",
    "alpha101_12": "sign(delta(volume, 1)) * (-1 * delta(close, 1))",
    "alpha101_101": "((close - open) / ((high - low) + .001))",
    "rsi_14": "rsi(close, 14)",
}


def _settings(args: argparse.Namespace):
    from cluster.config import load_settings

    return load_settings(
        getattr(args, "config", None),
        database_url=getattr(args, "db", None),
        redis_url=getattr(args, "redis", None),
        scheduler_address=getattr(args, "scheduler", None),
        n_workers=getattr(args, "workers", None),
    )


def _rows(n: int) -> str:
    from engine.plan import UNBOUNDED

    return "all history" if n >= UNBOUNDED else f"{n} rows"


def cmd_demo(args: argparse.Namespace) -> int:
    """The bundled real S&P 500 sample through a LocalCluster into SQLite."""
    from cluster.connect import close_local
    from engine.store import mask_url, open_store
    from pipelines.pipeline import Pipeline

    settings = _settings(args)
    if args.db is None:
        settings = settings.replace(database_url="sqlite:///alphaforge-demo.db")
    t0 = time.perf_counter()
    pipe = Pipeline(
        DEMO_FACTORS,
        source="sample",
        name="demo",
        settings=settings,
        libraries=dict.fromkeys(DEMO_FACTORS, "demo"),
    )
    panel = pipe.panel
    print(f"data: {panel!r}")
    print(panel.quality.summary(max_rows=3))
    start = panel.dates[max(0, len(panel.dates) - args.days)]
    for plan in pipe.plans(start, None):
        print(
            f"plan: {len(plan.outputs)} factors, {plan.nodes_before_sharing} nodes -> "
            f"{len(plan.nodes)} after sharing, {len(plan.blocks)} blocks of "
            f"{plan.block_rows} rows, lookback {_rows(plan.max_lookback)}"
        )
    try:
        frame = pipe.run(start, None)
        for result in pipe.results:
            print(result.summary())
        with open_store(settings.database_url) as store:
            written = pipe.write(store)
            last = frame.index.get_level_values("date").max()
            back = store.cross_section("sector_mom", last)
        print(f"stored {written:,} values in {mask_url(settings.database_url)}")
    finally:
        close_local()
    day = frame.xs(last, level="date").dropna(subset=["sector_mom"])
    top = day.sort_values("sector_mom", ascending=False)
    cols = list(DEMO_FACTORS)
    show = pd.concat([top.head(args.top), top.tail(args.top)])[cols]
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(f"\nTop and bottom {args.top} of {len(day)} stocks by sector_mom on {last:%Y-%m-%d}:")
        print(show.round(4).to_string())
    stored = back.reindex(day.index).to_numpy()
    same = np.array_equal(stored, day["sector_mom"].to_numpy(), equal_nan=True)
    print(f"\nread back from the store: {'identical' if same else 'DIFFERENT'}")
    print(f"total {time.perf_counter() - t0:.1f}s")
    return 0 if same else 1


def _spec(args: argparse.Namespace):
    from pipelines.spec import Spec

    settings = _settings(args)
    spec = Spec.from_toml(args.spec, settings=settings)
    if getattr(args, "db", None):  # a flag beats the spec file
        spec.settings = spec.settings.replace(database_url=args.db)
    if getattr(args, "redis", None):
        spec.settings = spec.settings.replace(redis_url=args.redis)
    return spec


def cmd_run(args: argparse.Namespace) -> int:
    """Compute a spec over a date range and store it."""
    from cluster.connect import close_local
    from pipelines.batch import BatchSummary
    from pipelines.pipeline import Pipeline

    spec = _spec(args)
    t0 = time.perf_counter()
    pipe = Pipeline.from_spec(spec)
    try:
        if args.no_write:
            frame = pipe.run(args.start, args.end)
            print(f"{len(frame):,} (date, asset) rows x {frame.shape[1]} factors computed")
            written = 0
        else:
            written = pipe.run_to_store(args.start, args.end)
    finally:
        close_local()
    summary = BatchSummary("run", spec.name, list(pipe.dates), written)
    summary.seconds = time.perf_counter() - t0
    summary.hit_rate = pipe.stats.hit_rate
    print(summary)
    return 0


def cmd_nightly(args: argparse.Namespace) -> int:
    """Compute and store the new date(s) of a spec."""
    from cluster.connect import close_local
    from pipelines.batch import nightly
    from pipelines.locks import LockBusy

    spec = _spec(args)
    try:
        print(nightly(spec, args.date, wait=args.wait))
    except LockBusy as exc:
        print(f"alphaforge nightly: {exc}; exiting without running (use --wait to queue)")
        return 0
    finally:
        close_local()
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    """Compute and store a date range in resumable chunks."""
    from cluster.connect import close_local
    from pipelines.batch import backfill

    spec = _spec(args)
    try:
        print(backfill(spec, args.start, args.end, chunk=args.chunk, wait=args.wait))
    finally:
        close_local()
    return 0


def cmd_warm(args: argparse.Namespace) -> int:
    """Pre-fill the shared cache with a spec's latest dates."""
    from cluster.connect import close_local
    from pipelines.batch import warm

    spec = _spec(args)
    try:
        print(warm(spec, args.days))
    finally:
        close_local()
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """List recorded runs."""
    from engine.store import open_store

    with open_store(_settings(args).database_url) as store:
        runs = store.runs()
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(runs.tail(args.limit).to_string(index=False) if len(runs) else "no runs recorded")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """Read factor values back from the store."""
    from engine.store import open_store

    with open_store(_settings(args).database_url) as store:
        if args.factors_list:
            print(store.factors().to_string(index=False))
            return 0
        if not args.factor:
            raise AlphaforgeError("name at least one --factor (or use --list)")
        if args.date:
            out = store.cross_section(args.factor[0], args.date).to_frame(args.factor[0])
        elif args.symbol:
            out = store.history(args.symbol, args.factor, args.start, args.end)
        else:
            out = store.panel(args.factor, args.start, args.end)
    if args.csv:
        out.to_csv(sys.stdout)
    else:
        with pd.option_context("display.width", 200, "display.max_rows", args.limit):
            print(out.to_string() if len(out) <= args.limit else out)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Create or migrate the store's schema."""
    from engine.store import mask_url, upgrade

    url = _settings(args).database_url
    rev = upgrade(url)
    print(f"{mask_url(url)} is at schema revision {rev}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alphaforge",
        description="Parallel alpha-factor computation: formulas -> numba kernels on Dask -> SQL.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--config", help="TOML settings file (default ./alphaforge.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", help="store URL (default: settings / DATABASE_URL / SQLite)")

    p = sub.add_parser("demo", help="run the bundled real sample through a LocalCluster")
    common(p)
    p.add_argument("--days", type=int, default=250, help="trading days to compute (default 250)")
    p.add_argument("--top", type=int, default=5, help="rows to show at each end (default 5)")
    p.add_argument(
        "--workers", type=int, help="LocalCluster worker processes (default 1, using every core)"
    )
    p.set_defaults(func=cmd_demo)

    def with_spec(p: argparse.ArgumentParser) -> None:
        p.add_argument("spec", help="pipeline spec (TOML), e.g. pipelines/specs/production.toml")
        common(p)
        p.add_argument("--redis", help="shared cache URL (default: spec / REDIS_URL)")
        p.add_argument("--scheduler", help="Dask scheduler address (default: spec / local)")
        p.add_argument("--workers", type=int, help="LocalCluster worker processes")

    p = sub.add_parser("run", help="compute a spec over a date range and store it")
    with_spec(p)
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--no-write", action="store_true", help="compute only")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("nightly", help="compute and store the new date(s) of a spec")
    with_spec(p)
    p.add_argument("--date", help="last date to compute (default: the source's last date)")
    p.add_argument("--wait", action="store_true", help="wait for a running nightly to finish")
    p.set_defaults(func=cmd_nightly)

    p = sub.add_parser("backfill", help="compute and store a range in resumable chunks")
    with_spec(p)
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--chunk", type=int, default=250, help="dates per chunk (default 250)")
    p.add_argument("--wait", action="store_true", help="wait for a running batch to finish")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("warm", help="pre-fill the shared cache with a spec's latest dates")
    with_spec(p)
    p.add_argument("--days", type=int, help="dates to warm (default: the spec's warm_days)")
    p.set_defaults(func=cmd_warm)

    p = sub.add_parser("runs", help="list recorded runs")
    common(p)
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("query", help="read factor values from the store")
    common(p)
    p.add_argument("--factor", action="append", help="factor name (repeatable)")
    p.add_argument("--date", help="one date: the factor's cross-section")
    p.add_argument("--symbol", action="append", help="symbol(s): their history")
    p.add_argument("--start")
    p.add_argument("--end")
    p.add_argument("--list", dest="factors_list", action="store_true", help="list factors")
    p.add_argument("--csv", action="store_true", help="write CSV to stdout")
    p.add_argument("--limit", type=int, default=60)
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("db", help="database schema management")
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dbsub.add_parser("upgrade", help="create or migrate the schema to the newest revision")
    common(up)
    up.set_defaults(func=cmd_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (AlphaforgeError, ValueError, KeyError, OSError) as exc:
        if args.debug:
            raise
        print(f"alphaforge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
