"""Benchmark of the result store against its peers, measured in the same run.

Writes F factors x T dates x N symbols of float64 (``--values`` in all; F=50 and T=2520
(10 years) by default, N derived) through ``PostgresStore.write_block`` in time blocks, and
beside it, on the same server and the same values:

* raw COPY into a bare unindexed long table (factor_id, date, symbol_id, value) from a
  numpy-packed binary COPY buffer (the fastest naive layout; DESIGN.md section 7),
* raw COPY of the store's own rows (packed cross-sections) into a bare unindexed table,
* ``pandas.DataFrame.to_sql`` of long rows on a subset (rate scaled to values/s),

then the latency (median, p95 over ``--queries`` random queries) of: one factor's
cross-section on one date; one symbol's 10 factors over the whole range; 50 factors for all
symbols on one date, and the on-disk size per value of the store and of the long layout
(with its primary-key B-tree). A throwaway database is created and dropped.

    python bench/bench_store.py --small          # ~2M values, a minute
    python bench/bench_store.py --values 20000000
    python bench/bench_store.py                  # 100M values
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import struct
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.store import codec, open_store, upgrade  # noqa: E402

PG_EPOCH = dt.date(2000, 1, 1)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
LONG_ROW = np.dtype(
    [
        ("nf", ">i2"),
        ("l1", ">i4"),
        ("factor_id", ">i4"),
        ("l2", ">i4"),
        ("date", ">i4"),
        ("l3", ">i4"),
        ("symbol_id", ">i4"),
        ("l4", ">i4"),
        ("value", ">f8"),
    ]
)


def conninfo(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def block_values(seed: int, n_factors: int, n_days: int, n_symbols: int) -> np.ndarray:
    """(F, days, N) float64 with ~5% NaN, reproducible per block."""
    rng = np.random.default_rng(seed)
    arr = rng.standard_normal((n_factors, n_days, n_symbols))
    arr[rng.random(arr.shape) < 0.05] = np.nan
    return arr


def long_copy_buffer(arr: np.ndarray, fids: np.ndarray, days: np.ndarray, sids: np.ndarray):
    """A binary COPY payload of long rows for one block (numpy-packed)."""
    f, t, n = arr.shape
    rows = np.empty(f * t * n, dtype=LONG_ROW)
    rows["nf"] = 4
    rows["l1"] = rows["l2"] = rows["l3"] = 4
    rows["l4"] = 8
    rows["factor_id"] = np.repeat(fids, t * n)
    rows["date"] = np.tile(np.repeat(days, n), f)
    rows["symbol_id"] = np.tile(sids, f * t)
    rows["value"] = arr.reshape(-1)
    return rows.tobytes()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def timed(fn, reps: int) -> tuple[float, float]:
    """(median, p95) in ms of ``fn(i)`` over reps calls, after 3 warm-ups."""
    for i in range(3):
        fn(i)
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), pct(times, 95)


def relation_bytes(conn: psycopg.Connection, table: str) -> int:
    return int(conn.execute("SELECT pg_total_relation_size(%s::regclass)", [table]).fetchone()[0])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--values", type=int, default=100_000_000)
    ap.add_argument("--small", action="store_true", help="~2M values")
    ap.add_argument("--factors", type=int, default=50)
    ap.add_argument("--days", type=int, default=2520)
    ap.add_argument("--block-days", type=int, default=126)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--to-sql-values", type=int, default=50_000)
    ap.add_argument("--no-long-index", action="store_true", help="skip the long-table B-tree")
    ap.add_argument(
        "--url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="server to create the throwaway database on",
    )
    ap.add_argument("--sqlite", action="store_true", help="also time the SQLite store")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still drop the database
    total = 2_000_000 if args.small else args.values
    F, T = args.factors, args.days
    N = max(10, total // (F * T))
    B = args.block_days
    n_values = F * T * N
    print(f"shape: {F} factors x {T} dates x {N} symbols = {n_values:,} values", flush=True)

    db = f"af_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(conninfo(args.url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{db}"')
    url = make_url(args.url).set(drivername="postgresql+psycopg", database=db)
    url = url.render_as_string(hide_password=False)
    res: dict = {"factors": F, "dates": T, "symbols": N, "values": n_values}
    try:
        upgrade(url)
        res.update(run(url, conninfo(args.url, db), args, F, T, N, B))
        if args.sqlite:
            res.update(run_sqlite(args, F, T, N, B))
    finally:
        with psycopg.connect(conninfo(args.url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


def run(url: str, cinfo: str, args, F: int, T: int, N: int, B: int) -> dict:
    res: dict = {}
    n_values = F * T * N
    dates = pd.bdate_range("2010-01-04", periods=T)
    symbols = pd.Index([f"SYM{k:05d}" for k in range(N)])
    names = [f"factor_{k:03d}" for k in range(F)]
    blocks = [(i, min(i + B, T)) for i in range(0, T, B)]

    # 1. the store
    store = open_store(url)
    specs = {
        n: (f"rank(ts_mean(close, {k + 2}))", f"hash{k}", "bench") for k, n in enumerate(names)
    }
    run_id = store.start_run("bench", dates[0], dates[-1], specs)
    t0 = time.perf_counter()
    for b, (i0, i1) in enumerate(blocks):
        arr = block_values(b, F, i1 - i0, N)
        store.write_block(run_id, dict(zip(names, arr)), dates[i0:i1], symbols)
    res["store_s"] = time.perf_counter() - t0
    store.finish_run(run_id, "succeeded", n_values)
    res["store_vps"] = n_values / res["store_s"]
    with psycopg.connect(cinfo, autocommit=True) as conn:
        res["store_bytes_first"] = relation_bytes(conn, '"factor_values"')
    print(f"store write_block: {res['store_s']:.1f} s", flush=True)

    # re-run of the first 10% of blocks (upsert over existing rows)
    redo = blocks[: max(1, len(blocks) // 10)]
    t0 = time.perf_counter()
    for b, (i0, i1) in enumerate(redo):
        arr = block_values(b, F, i1 - i0, N)
        store.write_block(run_id, dict(zip(names, arr)), dates[i0:i1], symbols)
    redo_values = F * N * sum(i1 - i0 for i0, i1 in redo)
    res["store_rewrite_vps"] = redo_values / (time.perf_counter() - t0)

    with psycopg.connect(cinfo, autocommit=True) as conn:
        fids = np.array(
            [r[0] for r in conn.execute('SELECT "id" FROM "factors" ORDER BY "name"')], np.int32
        )
        sids = np.array(
            [r[0] for r in conn.execute('SELECT "id" FROM "securities" ORDER BY "symbol"')],
            np.int32,
        )
        uid = conn.execute('SELECT "id" FROM "universes"').fetchone()[0]
        days = np.array([(d.date() - PG_EPOCH).days for d in dates], dtype=np.int32)

        # 2. raw COPY, long rows, bare table
        conn.execute(
            'CREATE TABLE "raw_long" ("factor_id" int4, "date" date, "symbol_id" int4, '
            '"value" float8)'
        )
        t0 = time.perf_counter()
        for b, (i0, i1) in enumerate(blocks):
            arr = block_values(b, F, i1 - i0, N)
            payload = long_copy_buffer(arr, fids, days[i0:i1], sids)
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy('COPY "raw_long" FROM STDIN (FORMAT BINARY)') as cp:
                    cp.write(COPY_HEADER)
                    cp.write(payload)
                    cp.write(COPY_TRAILER)
        res["raw_long_s"] = time.perf_counter() - t0
        res["raw_long_vps"] = n_values / res["raw_long_s"]
        print(f"raw COPY long rows: {res['raw_long_s']:.1f} s", flush=True)

        # 3. raw COPY of the store's rows into a bare table (same bytes, no staging/upsert)
        conn.execute(
            'CREATE TABLE "raw_blobs" ("factor_id" int4, "date" date, "chunk" int2, '
            '"universe_id" int4, "run_id" int4, "vals" bytea)'
        )
        conn.execute('ALTER TABLE "raw_blobs" ALTER COLUMN "vals" SET STORAGE EXTERNAL')
        width, cb = N * 8, codec.CHUNK_BYTES
        t0 = time.perf_counter()
        for b, (i0, i1) in enumerate(blocks):
            arr = block_values(b, F, i1 - i0, N)
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy('COPY "raw_blobs" FROM STDIN (FORMAT BINARY)') as cp:
                    cp.set_types(["int4", "date", "int2", "int4", "int4", "bytea"])
                    for f in range(F):
                        packed = codec.pack_values(arr[f])
                        fid = int(fids[f])
                        for t in range(i1 - i0):
                            day = dates[i0 + t].date()
                            for c in range(codec.n_chunks(N)):
                                lo = t * width + c * cb
                                hi = min((t + 1) * width, lo + cb)
                                cp.write_row((fid, day, c, uid, run_id, packed[lo:hi]))
        res["raw_blobs_s"] = time.perf_counter() - t0
        res["raw_blobs_vps"] = n_values / res["raw_blobs_s"]
        print(f"raw COPY store rows: {res['raw_blobs_s']:.1f} s", flush=True)

        conn.execute('VACUUM ANALYZE "factor_values"')
        conn.execute('VACUUM ANALYZE "raw_long"')
        res["store_bytes"] = relation_bytes(conn, '"factor_values"')
        res["long_bare_bytes"] = relation_bytes(conn, '"raw_long"')
        if not args.no_long_index:
            t0 = time.perf_counter()
            conn.execute(
                'ALTER TABLE "raw_long" ADD PRIMARY KEY ("factor_id", "date", "symbol_id")'
            )
            res["long_pk_build_s"] = time.perf_counter() - t0
            res["long_pk_bytes"] = relation_bytes(conn, '"raw_long"')
            print(f"long-table primary key built: {res['long_pk_build_s']:.1f} s", flush=True)

    # 4. pandas.to_sql on a subset
    sub_n = min(args.to_sql_values, N * T)
    k = max(1, sub_n // N)
    arr = block_values(0, 1, k, N)[0]
    frame = pd.DataFrame(
        {
            "factor_id": np.int32(fids[0]),
            "date": np.repeat(dates[:k].date, N),
            "symbol_id": np.tile(sids, k),
            "value": arr.reshape(-1),
        }
    )
    engine = sa.create_engine(url)
    t0 = time.perf_counter()
    frame.to_sql("tosql_long", engine, index=False, chunksize=10_000)
    res["to_sql_values"] = len(frame)
    res["to_sql_vps"] = len(frame) / (time.perf_counter() - t0)
    engine.dispose()
    print(f"to_sql: {len(frame):,} values", flush=True)

    # 5. queries through the store API
    res.update(time_queries(store, names, dates, symbols, args.queries, prefix="q"))
    store.close()

    # 6. the same shapes on the long table (primary key only), for comparison
    if not args.no_long_index:
        rng = np.random.default_rng(42)
        qd = rng.integers(0, T, 1000)
        qf = rng.integers(0, F, (1000, 50))
        qs = rng.integers(0, N, 1000)
        with psycopg.connect(cinfo, autocommit=True) as conn:
            q_reps = min(args.queries, 20)

            def long_cs(i: int) -> None:
                conn.execute(
                    'SELECT "symbol_id", "value" FROM "raw_long" '
                    'WHERE "factor_id" = %s AND "date" = %s',
                    [int(fids[qf[i, 0]]), dates[qd[i]].date()],
                ).fetchall()

            def long_hist(i: int) -> None:
                conn.execute(
                    'SELECT "factor_id", "date", "value" FROM "raw_long" '
                    'WHERE "symbol_id" = %s AND "factor_id" = ANY(%s)',
                    [int(sids[qs[i]]), [int(fids[j]) for j in np.unique(qf[i])[:10]]],
                ).fetchall()

            res["long_q_cross_section_ms"] = timed(long_cs, q_reps)
            res["long_q_history_ms"] = timed(long_hist, q_reps)
    return res


def time_queries(store, names, dates, symbols, reps: int, prefix: str) -> dict:
    """Median/p95 ms of the three query shapes through the store API."""
    F, T, N = len(names), len(dates), len(symbols)
    rng = np.random.default_rng(42)
    qd = rng.integers(0, T, 1000)
    qf = rng.integers(0, F, (1000, 50))
    qs = rng.integers(0, N, 1000)
    res = {}
    res[f"{prefix}_cross_section_ms"] = timed(
        lambda i: store.cross_section(names[qf[i, 0]], dates[qd[i]]), reps
    )
    res[f"{prefix}_history_ms"] = timed(
        lambda i: store.history(
            [symbols[qs[i]]], [names[j] for j in np.unique(qf[i])[:10]], dates[0], dates[-1]
        ),
        reps,
    )
    res[f"{prefix}_50_factors_ms"] = timed(
        lambda i: store.panel(
            [names[j] for j in rng.permutation(F)[:50]], dates[qd[i]], dates[qd[i]]
        ),
        reps,
    )
    check = store.history([symbols[3]], names[:10], dates[0], dates[-1])
    assert check.shape == (T, min(10, F)), check.shape
    return res


def run_sqlite(args, F: int, T: int, N: int, B: int) -> dict:
    """The same writes and queries on the embedded SQLite store (a temp file)."""
    import tempfile

    res: dict = {}
    dates = pd.bdate_range("2010-01-04", periods=T)
    symbols = pd.Index([f"SYM{k:05d}" for k in range(N)])
    names = [f"factor_{k:03d}" for k in range(F)]
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        specs = {n: (n, f"hash{k}", "bench") for k, n in enumerate(names)}
        run_id = store.start_run("bench", dates[0], dates[-1], specs)
        t0 = time.perf_counter()
        for b, (i0, i1) in enumerate([(i, min(i + B, T)) for i in range(0, T, B)]):
            arr = block_values(b, F, i1 - i0, N)
            store.write_block(run_id, dict(zip(names, arr)), dates[i0:i1], symbols)
        res["sqlite_vps"] = F * T * N / (time.perf_counter() - t0)
        print("sqlite written", flush=True)
        res.update(time_queries(store, names, dates, symbols, args.queries, prefix="sqlite"))
        store.close()
    return res


def report(res: dict) -> None:
    n = res["values"]
    print()
    print(f"values written: {n:,} ({res['factors']} factors x {res['dates']} dates x "
          f"{res['symbols']} symbols)")  # fmt: skip
    print("write throughput (values/s):")
    rows = [
        ("store.write_block (COPY->staging->upsert)", res["store_vps"]),
        ("store re-write of 10% (upsert over rows)", res["store_rewrite_vps"]),
        ("raw COPY, long rows, bare table", res["raw_long_vps"]),
        ("raw COPY, store's rows, bare table", res["raw_blobs_vps"]),
        (f"pandas.to_sql long rows ({res['to_sql_values']:,} values)", res["to_sql_vps"]),
    ]
    for label, vps in rows:
        print(f"  {label:<48} {vps:>14,.0f}")
    print(f"  store / raw COPY long rows  = {res['store_vps'] / res['raw_long_vps']:.2f}")
    print(f"  store / raw COPY store rows = {res['store_vps'] / res['raw_blobs_vps']:.2f}")
    print(f"  store / to_sql              = {res['store_vps'] / res['to_sql_vps']:.0f}")
    print("size on disk (bytes per value, table + TOAST + indexes):")
    print(f"  store (factor_values), first write {res['store_bytes_first'] / n:8.2f}")
    print(f"  store after a 10% re-write   {res['store_bytes'] / n:8.2f}")
    print(f"  long rows, bare              {res['long_bare_bytes'] / n:8.2f}")
    if "long_pk_bytes" in res:
        print(f"  long rows + PK B-tree        {res['long_pk_bytes'] / n:8.2f}")
    print("query latency through the store API, ms (median / p95):")
    for key, label, bar in [
        ("q_cross_section_ms", "1 factor x all symbols x 1 date", 20),
        ("q_history_ms", f"1 symbol x 10 factors x {res['dates']} dates", 100),
        ("q_50_factors_ms", "50 factors x all symbols x 1 date", 300),
    ]:
        med, p95 = res[key]
        ok = "ok" if med < bar else "OVER"
        print(f"  {label:<40} {med:8.2f} / {p95:8.2f}   bar {bar} ms: {ok}")
    if "sqlite_vps" in res:
        print(f"SQLite store: write {res['sqlite_vps']:,.0f} values/s; queries ms (median / p95):")
        for key, label in [
            ("sqlite_cross_section_ms", "1 factor x all symbols x 1 date"),
            ("sqlite_history_ms", f"1 symbol x 10 factors x {res['dates']} dates"),
            ("sqlite_50_factors_ms", "50 factors x all symbols x 1 date"),
        ]:
            med, p95 = res[key]
            print(f"  {label:<40} {med:8.2f} / {p95:8.2f}")
    if "long_q_cross_section_ms" in res:
        print("same shapes on the long table with its PK only (raw SQL), ms (median / p95):")
        med, p95 = res["long_q_cross_section_ms"]
        print(f"  {'1 factor x all symbols x 1 date':<40} {med:8.2f} / {p95:8.2f}")
        med, p95 = res["long_q_history_ms"]
        print(f"  {'1 symbol x 10 factors, all dates':<40} {med:8.2f} / {p95:8.2f}")


if __name__ == "__main__":
    main()
