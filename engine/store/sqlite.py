"""SQLite backend: the embedded default (``sqlite:///alphaforge.db``), no server needed.

Same tables and byte layout as PostgreSQL. Each block is one ``BEGIN IMMEDIATE``
transaction with an executemany ``INSERT ... ON CONFLICT (factor_id, date, chunk) DO
UPDATE`` (and the DELETE of chunks beyond the block's width when a wider universe exists);
concurrent writers queue on SQLite's database lock (WAL journal, 30 s busy timeout, and the
shared retry on "database is locked"). In-memory URLs (``sqlite://``) give each connection its
own database: use them from one thread only.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from engine.store import codec
from engine.store.base import Row, Store
from engine.store.schema import factor_values, universes

BUSY_TIMEOUT_S = 30.0


def sqlite_engine(url: str) -> sa.Engine:
    """An engine whose transactions start with BEGIN IMMEDIATE (the write lock) in WAL mode."""
    engine = sa.create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class SqliteStore(Store):
    """The embedded store (``sqlite://`` URLs)."""

    backend = "sqlite"

    def _make_engine(self) -> sa.Engine:
        return sqlite_engine(self.url)

    def _insert(self, table: sa.Table) -> Any:
        return sqlite_insert(table)

    def _write_rows(self, rows: list[Row], n_chunks: int) -> None:
        stmt = sqlite_insert(factor_values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[factor_values.c.factor_id, factor_values.c.date, factor_values.c.chunk],
            set_={
                "universe_id": stmt.excluded.universe_id,
                "run_id": stmt.excluded.run_id,
                "vals": stmt.excluded.vals,
            },
        )
        params = [
            {"factor_id": f, "date": d, "chunk": c, "universe_id": u, "run_id": r, "vals": v}
            for f, d, c, u, r, v in rows
        ]
        stale = sa.delete(factor_values).where(
            factor_values.c.factor_id == sa.bindparam("f"),
            factor_values.c.date == sa.bindparam("d"),
            factor_values.c.chunk >= n_chunks,
        )
        keys = sorted({(f, d) for f, d, *_ in rows})
        half = len(params) // 2
        with self.engine.begin() as conn:
            if half:
                conn.execute(stmt, params[:half])
            if self.mid_write_hook is not None:
                self.mid_write_hook(conn.connection.driver_connection)
            conn.execute(stmt, params[half:])
            widest = conn.execute(sa.select(sa.func.max(universes.c.n_symbols))).scalar()
            if codec.n_chunks(widest or 0) > n_chunks:
                conn.execute(stale, [{"f": f, "d": d} for f, d in keys])
