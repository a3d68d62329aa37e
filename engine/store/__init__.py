"""Result store: factor values, the factor registry and the run log in SQL.

Public API: :func:`open_store` (PostgreSQL for ``postgresql://`` / ``postgresql+psycopg://``
URLs, SQLite for ``sqlite://``, default ``sqlite:///alphaforge.db``), :class:`Store`
(``start_run``, ``write_block``, ``finish_run``, ``cross_section``, ``history``, ``panel``,
``runs``, ``factors``), :func:`upgrade` (``alphaforge db upgrade``) and :func:`query` (for
``alphaforge query``).

Storage layout, and why
-----------------------
A cross-section (one factor, one date, every symbol) is stored as packed little-endian
float64 bytes (``bytea`` / BLOB, 8 bytes per symbol) in the column order of a deduplicated
*universe* row (packed int32 security ids), cut into chunks of 240 symbols: one
``factor_values`` row per (factor_id, date, chunk), primary key (factor_id, date, chunk), no
other index (details in :mod:`engine.store.codec` and :mod:`engine.store.schema`).

Measured by bench/bench_store.py on this machine (2 shared cores, PostgreSQL 15 defaults),
100M values = 50 factors x 2520 dates x 793 symbols, everything in the same run (two runs:
numbers vary ~30% with the load of the shared machine):

* Size: 10.5 bytes/value for the store after the first write (11.3 after re-writing 10%:
  dead row versions), against 52.2 for long rows (factor_id, date, symbol_id, value) in a
  bare table and 83.7 with their (factor_id, date, symbol_id) B-tree. (Not 8: a heap page
  holds at most 4 chunk rows and the last chunk of a 793-symbol cross-section is partial.)
  At 5000 symbols x 2500 days x 300 factors: ~35-40 GB and a ~0.4 GB B-tree (15.75M chunk
  rows), against ~310 GB for long rows with one B-tree.
* Writes: 16.5M values/s through write_block (COPY into a temp staging table + one upsert
  per block), 0.70x a raw COPY of the same rows into a bare table, 3.9-5.1x a raw
  numpy-packed binary COPY of long rows into a bare table, ~230x pandas.to_sql.
* Queries (median over 100): one factor's cross-section 0.8 ms; one symbol x 10 factors x
  2520 dates 55-68 ms; 50 factors x all symbols x 1 date 4-5 ms. The long layout with its
  primary key answers the cross-section in 0.4 ms but the history in ~400 ms; it would need
  a second B-tree (another ~30 bytes/value) for that shape.
* Why chunks of 240 symbols: a chunk row (~1970 bytes) stays under PostgreSQL's TOAST
  threshold, so one symbol's history reads one inline heap row per (factor, date); with
  one row per whole cross-section (TOASTed, STORAGE EXTERNAL so ``substr`` fetches only one
  TOAST chunk) the same history query took 80-100 ms in SQL and 183 ms median through the
  API at 100M values. Chunk rows are still few: a cross-section of 5000 symbols is 21 rows.
* Why not arrays (float8[]): subscripting an array detoasts all of it; bytea + ``substr``
  reads 8 bytes. No partitioning and no BRIN: the table has few rows (one per 240 values),
  its B-tree is small and every query shape starts with factor_id, then date.
* Re-running a date range replaces whole cross-sections (the new run's universe; chunks left
  over from a wider universe are deleted in the same transaction): never duplicates.
* NaN is stored as NaN (its bits, payload included, round-trip exactly). A symbol that is
  not in a date's stored universe is absent from query results; a stored NaN is returned as
  NaN (``panel(...).dropna()`` gives alphalens' usual input).
"""

from __future__ import annotations

from engine.store.base import Store
from engine.store.migrate import upgrade
from engine.store.query import query
from engine.store.urls import DEFAULT_URL, backend_of, mask_url

__all__ = ["DEFAULT_URL", "Store", "mask_url", "open_store", "query", "upgrade"]


def open_store(url: str | None = None, *, migrate: bool | None = None, **options: object) -> Store:
    """Open the store at ``url`` (None: the embedded SQLite default).

    ``migrate`` runs the schema migrations first; by default only for SQLite (the embedded
    first run needs no setup). PostgreSQL schemas are migrated by ``alphaforge db upgrade``.
    """
    url = url or DEFAULT_URL
    backend = backend_of(url)
    if migrate is None:
        migrate = backend == "sqlite"
    if migrate:
        upgrade(url)
    if backend == "postgresql":
        from engine.store.postgres import PostgresStore

        return PostgresStore(url, **options)  # type: ignore[arg-type]
    from engine.store.sqlite import SqliteStore

    return SqliteStore(url, **options)  # type: ignore[arg-type]
