"""The store's tables as SQLAlchemy Core metadata (the migrations create the same tables).

Tables
------
``securities``     one row per symbol ever written (id, symbol, created_at).
``factors``        the factor registry: (name, version) -> formula text, structural hash,
                   library. A name re-registered with a different structural hash gets the
                   next version (old values stay under the old version).
``runs``           one row per pipeline run: pipeline, date range, started/finished, status,
                   host, counts (factors, values written), error.
``run_factors``    which factor versions a run writes.
``universes``      an ordered list of security ids (packed int32), deduplicated by digest.
``factor_values``  the cross-section of one factor on one date as packed float64 in its
                   universe's order, cut in chunks of 240 symbols (see
                   :mod:`engine.store.codec`): one row per (factor_id, date, chunk), plus
                   the universe and the run that wrote it. Primary key (factor_id, date,
                   chunk). No foreign keys here: the
                   row-level RI checks (3 parent lookups + key-share locks per row) made
                   first inserts 2.5x slower for narrow universes (bench, 15 symbols), and
                   write_block is the only writer: it takes factor ids from run_factors and
                   creates the universe before the block.

All identifiers are plain lower-case names; SQLAlchemy quotes them where needed, and the
hand-written SQL of :mod:`engine.store.postgres` quotes every identifier.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

NOW = sa.text("CURRENT_TIMESTAMP")

securities = sa.Table(
    "securities",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
)

factors = sa.Table(
    "factors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("formula", sa.Text, nullable=False),
    sa.Column("structural_hash", sa.String(128), nullable=False),
    sa.Column("library", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.UniqueConstraint("name", "version", name="uq_factors_name_version"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pipeline", sa.Text, nullable=False),
    sa.Column("start_date", sa.Date, nullable=True),
    sa.Column("end_date", sa.Date, nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("host", sa.Text, nullable=True),
    sa.Column("n_factors", sa.Integer, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)

run_factors = sa.Table(
    "run_factors",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("factor_id", sa.Integer, sa.ForeignKey("factors.id"), primary_key=True),
)

universes = sa.Table(
    "universes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("n_symbols", sa.Integer, nullable=False),
    sa.Column("security_ids", sa.LargeBinary, nullable=False),
)

factor_values = sa.Table(
    "factor_values",
    metadata,
    sa.Column("factor_id", sa.Integer, primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("chunk", sa.SmallInteger, primary_key=True),
    sa.Column("universe_id", sa.Integer, nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("vals", sa.LargeBinary, nullable=False),
)
