"""Initial schema: securities, factor registry, runs, universes, factor values.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "securities",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("symbol", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "factors",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("formula", sa.Text, nullable=False),
        sa.Column("structural_hash", sa.String(128), nullable=False),
        sa.Column("library", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.UniqueConstraint("name", "version", name="uq_factors_name_version"),
    )
    op.create_table(
        "runs",
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
    op.create_table(
        "run_factors",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("factor_id", sa.Integer, sa.ForeignKey("factors.id"), primary_key=True),
    )
    op.create_table(
        "universes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("n_symbols", sa.Integer, nullable=False),
        sa.Column("security_ids", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "factor_values",
        sa.Column("factor_id", sa.Integer, primary_key=True),
        sa.Column("date", sa.Date, primary_key=True),
        sa.Column("chunk", sa.SmallInteger, primary_key=True),
        sa.Column("universe_id", sa.Integer, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("vals", sa.LargeBinary, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Never compress (random float64 bytes do not compress; pglz would only burn CPU).
        # Chunk rows (~1970 bytes) stay under the TOAST threshold, so they remain inline.
        op.execute('ALTER TABLE "factor_values" ALTER COLUMN "vals" SET STORAGE EXTERNAL')
        op.execute('ALTER TABLE "universes" ALTER COLUMN "security_ids" SET STORAGE EXTERNAL')


def downgrade() -> None:
    for table in ("factor_values", "universes", "run_factors", "runs", "factors", "securities"):
        op.drop_table(table)
