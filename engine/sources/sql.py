"""SQL source: a table or a SELECT query over SQLAlchemy -> validated Panel.

``read_sql("bars", url)`` reads a table; the name (optionally ``schema.table``) must be a
plain identifier, is checked against the database by reflection and is quoted by SQLAlchemy
— never spliced into SQL text. Date range and symbol filters are bound parameters, pushed
down into the query so the nightly batch reads only the history it needs.
``read_sql("SELECT ...", url, params=...)`` runs a query with bound parameters.
Error messages show the URL without its password.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa

from engine.errors import DataValidationError
from engine.panel import Panel

__all__ = ["read_sql"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUERY = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)


def _split_table(name: str) -> tuple[str | None, str]:
    parts = name.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise ValueError(
            f"invalid table name {name!r}: expected 'table' or 'schema.table' made of letters, "
            "digits and underscores (or pass a SELECT query)"
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def _bound(column: sa.Column, day: pd.Timestamp) -> Any:
    """A date bound typed like the column: datetime, date, or ISO text (text columns)."""
    if isinstance(column.type, sa.DateTime):
        return day.to_pydatetime()
    if isinstance(column.type, sa.Date):
        return day.date()
    return day.strftime("%Y-%m-%d")


def read_sql(
    table_or_query: str,
    url: str | sa.engine.URL | sa.engine.Engine,
    *,
    params: Mapping[str, Any] | None = None,
    start: Any = None,
    end: Any = None,
    symbols: Iterable[str] | None = None,
    date: str = "date",
    symbol: str = "symbol",
    groups: Iterable[str] = ("industry",),
    fields: Iterable[str] | None = None,
    universe: Iterable[str] | None = None,
    on_bad_rows: str = "raise",
    stale_days: int | None = None,
) -> Panel:
    """Read bars from a table (with optional start/end/symbols filters) or a query."""
    engine = url if isinstance(url, sa.engine.Engine) else sa.create_engine(url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            if _QUERY.match(table_or_query):
                if start is not None or end is not None or symbols is not None:
                    raise ValueError("start/end/symbols filter tables; put them in the query")
                stmt: Any = sa.text(table_or_query)
                source = f"query on {where}"
                df = pd.read_sql(stmt, conn, params=dict(params or {}))
            else:
                schema, name = _split_table(table_or_query)
                try:
                    table = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)
                except sa.exc.NoSuchTableError:
                    raise DataValidationError(
                        f"table {table_or_query!r} not found in {where}"
                    ) from None
                if date not in table.c or symbol not in table.c:
                    missing = [c for c in (date, symbol) if c not in table.c]
                    raise DataValidationError(
                        f"table {table_or_query!r}: missing required column(s) {missing}; "
                        f"columns present: {list(table.c.keys())}",
                        [f"column {c!r}" for c in missing],
                    )
                stmt = sa.select(table)
                col = table.c[date]
                if start is not None:
                    stmt = stmt.where(col >= _bound(col, pd.Timestamp(start).normalize()))
                if end is not None:  # end day inclusive, whatever the time of day stored
                    day_after = pd.Timestamp(end).normalize() + pd.Timedelta(days=1)
                    stmt = stmt.where(col < _bound(col, day_after))
                if symbols is not None:
                    stmt = stmt.where(table.c[symbol].in_([str(s) for s in symbols]))
                source = f"table {table_or_query} on {where}"
                df = pd.read_sql(stmt, conn)
    finally:
        if not isinstance(url, sa.engine.Engine):
            engine.dispose()
    return Panel.from_frame(
        df,
        date=date,
        symbol=symbol,
        groups=groups,
        fields=fields,
        universe=universe,
        on_bad_rows=on_bad_rows,
        stale_days=stale_days,
        source=source,
    )
