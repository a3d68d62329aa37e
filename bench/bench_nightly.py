"""Nightly batch benchmark: one new day vs a full recompute, and the cache warm-up hit rate.

    python bench/bench_nightly.py                       # 5000 symbols x 2500 dates
    python bench/bench_nightly.py --symbols 500 --dates 1000 --small-libraries

Steps, all measured in this run on this machine:

1. Write a synthetic market (``engine.sources.synthetic``) as one Parquet file: the source.
2. ``nightly`` for the last date into a fresh store (PostgreSQL from ``DATABASE_URL`` or the
   local server, else SQLite): it loads only the history the factors' lookbacks need and
   writes from the workers.
3. A full recompute over every date of the same factors on the same cluster (values reduced on
   the workers by a counting sink, not gathered: 5000 x 2500 x 260 float64 is ~26 GB), so the
   ratio shows what incremental computation saves.
4. With Redis (``REDIS_URL`` or the local server): ``warm`` over the latest 120 dates, then a
   "next morning" run of the production factors over the latest 60 dates on a new cluster
   (empty worker memory): its cache hit rate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np


class CountFinite:
    """A sink that keeps nothing: counts finite values on the worker."""

    def __call__(self, b0: int, b1: int, values: dict) -> int:
        return int(sum(np.isfinite(v).sum() for v in values.values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=5000)
    ap.add_argument("--dates", type=int, default=2500)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--small-libraries", action="store_true", help="20 factors, not 258")
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    from cluster.config import load_settings
    from engine import compute
    from engine.kernels import warmup_locked
    from engine.sources import synthetic
    from engine.store import upgrade
    from pipelines.batch import nightly, warm
    from pipelines.pipeline import Pipeline
    from pipelines.spec import Spec

    warmup_locked()  # numba kernels compiled/loaded once, before anything is timed
    tmp = Path(tempfile.mkdtemp(prefix="alphaforge-bench-"))
    db_name = None
    try:
        t0 = time.perf_counter()
        panel = synthetic(n_symbols=args.symbols, n_dates=args.dates, seed=1)
        frame = panel.to_frame().reset_index().rename(columns={"asset": "symbol"})
        frame = frame.dropna(subset=["close"])
        frame.to_parquet(tmp / "bars.parquet", index=False)
        print(
            f"source: {args.dates} dates x {args.symbols} symbols, {len(frame):,} bars "
            f"(synthetic, written in {time.perf_counter() - t0:.1f}s)"
        )
        del frame

        url, db_name = _store_url(tmp)
        upgrade(url)
        libs = (
            '"alpha158"]\nexclude = []'
            if not args.small_libraries
            else '"technical"]\nexclude = ["OBV", "MFI14", "CCI20"]'
        )
        spec_text = (
            f'[pipeline]\nname = "bench"\n[source]\nkind = "parquet"\npath = "bars.parquet"\n'
            f'[factors]\nlibraries = ["alpha101", {libs}\n[cluster]\nblock_rows = 64\n'
        )
        (tmp / "spec.toml").write_text(spec_text)
        settings = load_settings(database_url=url, n_workers=args.workers, progress=False)
        spec = Spec.from_toml(tmp / "spec.toml", settings=settings)
        n_factors = len(spec.factors)

        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, dashboard_address=":0"
            ) as lc,
            Client(lc) as client,
        ):
            t0 = time.perf_counter()
            summary = nightly(spec, client=client)
            t_nightly = time.perf_counter() - t0
            print(f"\nnightly, 1 new day, {n_factors} factors: {t_nightly:.1f}s")
            print(f"  {summary}".replace("\n", "\n  "))

            pipe = Pipeline.from_spec(spec)
            full = pipe.source.load()
            t0 = time.perf_counter()
            total = 0
            for _, exprs in pipe._groups():
                res = compute(exprs, full, client, settings=settings, sink=CountFinite())
                total += res.rows_written
            t_full = time.perf_counter() - t0
            cells = n_factors * len(full.dates) * len(full.symbols)
            print(
                f"full recompute, {len(full.dates)} dates: {t_full:.1f}s "
                f"({cells / t_full / 1e6:,.1f} M factor-cells/s; {total:,} finite values)"
            )
            print(
                f"  nightly / full recompute: {t_nightly / t_full:.3f} ({t_full / t_nightly:.1f}x)"
            )

        redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        ns = f"bench-{uuid.uuid4().hex[:8]}"
        warm_settings = settings.replace(redis_url=redis_url, cache_namespace=ns)
        wspec = Spec.from_toml(tmp / "spec.toml", settings=warm_settings)
        try:
            with (
                LocalCluster(
                    n_workers=args.workers, threads_per_worker=1, dashboard_address=":0"
                ) as lc,
                Client(lc) as client,
            ):
                t0 = time.perf_counter()
                warm(wspec, 120, client=client)
                t_warm = time.perf_counter() - t0
            with (
                LocalCluster(
                    n_workers=args.workers, threads_per_worker=1, dashboard_address=":0"
                ) as lc,
                Client(lc) as client,
            ):
                morning = Pipeline.from_spec(wspec)
                cal = morning.calendar
                t0 = time.perf_counter()
                morning.run(cal[-60], cal[-1], client)
                t_morning = time.perf_counter() - t0
            st = morning.stats
            print(
                f"\nwarm-up of the latest 120 dates: {t_warm:.1f}s; next-morning run of the "
                f"latest 60 dates on a new cluster: {t_morning:.1f}s, cache hit rate "
                f"{st.hit_rate:.1%} ({st.l2_hits} L2 hits, {st.misses} misses)"
            )
        finally:
            import redis

            r = redis.Redis.from_url(redis_url)
            keys = list(r.scan_iter(f"{ns}:*", count=1000))
            for i in range(0, len(keys), 1000):
                r.delete(*keys[i : i + 1000])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if db_name:
            _drop(db_name)


def _store_url(tmp: Path) -> tuple[str, str | None]:
    """A fresh PostgreSQL database when a server answers, else a SQLite file."""
    import sqlalchemy as sa

    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    server = server.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"alphaforge_bench_{uuid.uuid4().hex[:8]}"
    try:
        eng = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        eng.dispose()
    except sa.exc.OperationalError:
        return f"sqlite:///{tmp / 'bench.db'}", None
    return sa.engine.make_url(server).set(database=name).render_as_string(False), name


def _drop(name: str) -> None:
    import sqlalchemy as sa

    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    server = server.replace("postgresql://", "postgresql+psycopg://", 1)
    eng = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


if __name__ == "__main__":
    main()
