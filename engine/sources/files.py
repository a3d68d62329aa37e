"""File sources: Parquet and CSV files of long-format daily bars -> validated Panel.

A file holds one row per (date, symbol) with columns such as ``date, symbol, open, high,
low, close, volume[, vwap, amount, industry, ...]``. Both readers take the same keyword
arguments as `Panel.from_frame` (column names, group columns, ``on_bad_rows``...) plus
``rename`` to map the file's column names onto the engine's.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from engine.errors import DataValidationError
from engine.panel import Panel

__all__ = ["read_csv", "read_parquet"]

# CSV cells read as NaN in numeric columns; the symbol column keeps them as text ("NA" is
# a ticker), so an empty symbol is still caught by validation.
_CSV_NA = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "#N/A", "<NA>"]


def _check_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such data file: {p}")
    return p


def _build(df: pd.DataFrame, rename: Mapping[str, str] | None, source: str, **kw: Any) -> Panel:
    if rename:
        df = df.rename(columns=dict(rename))
    return Panel.from_frame(df, source=source, **kw)


def read_parquet(
    path: str | os.PathLike[str],
    *,
    columns: Iterable[str] | None = None,
    rename: Mapping[str, str] | None = None,
    date: str = "date",
    symbol: str = "symbol",
    groups: Iterable[str] = ("industry",),
    fields: Iterable[str] | None = None,
    universe: Iterable[str] | None = None,
    on_bad_rows: str = "raise",
    stale_days: int | None = None,
    start: Any = None,
    end: Any = None,
) -> Panel:
    """Read a Parquet file (``columns`` = file columns to read, default all) into a Panel.

    ``start``/``end`` (inclusive) read only those dates' row groups and rows (predicate
    pushdown), so an incremental run reads just the history it needs.
    """
    p = _check_path(path)
    filters = []
    if start is not None:
        filters.append((date, ">=", pd.Timestamp(start)))
    if end is not None:
        filters.append((date, "<=", pd.Timestamp(end)))
    df = pd.read_parquet(
        p, columns=None if columns is None else list(columns), filters=filters or None
    )
    return _build(
        df,
        rename,
        p.name,
        date=date,
        symbol=symbol,
        groups=groups,
        fields=fields,
        universe=universe,
        on_bad_rows=on_bad_rows,
        stale_days=stale_days,
    )


def read_csv(
    path: str | os.PathLike[str],
    *,
    rename: Mapping[str, str] | None = None,
    date: str = "date",
    symbol: str = "symbol",
    groups: Iterable[str] = ("industry",),
    fields: Iterable[str] | None = None,
    universe: Iterable[str] | None = None,
    on_bad_rows: str = "raise",
    stale_days: int | None = None,
    sep: str = ",",
) -> Panel:
    """Read a CSV file with a header row into a Panel; dates are parsed by validation."""
    p = _check_path(path)
    header = pd.read_csv(p, sep=sep, nrows=0).columns
    sym_col = next((c for c, v in (rename or {}).items() if v == symbol), symbol)
    if sym_col not in header:
        raise DataValidationError(
            f"{p.name}: missing required column(s) [{sym_col!r}]; columns present: {list(header)}",
            [f"column {sym_col!r}"],
        )
    text_cols = {sym_col, *(g for g in groups if g in header)}
    df = pd.read_csv(
        p,
        sep=sep,
        dtype={c: str for c in text_cols},
        keep_default_na=False,
        na_values={c: _CSV_NA for c in header if c != sym_col},
    )
    return _build(
        df,
        rename,
        p.name,
        date=date,
        symbol=symbol,
        groups=groups,
        fields=fields,
        universe=universe,
        on_bad_rows=on_bad_rows,
        stale_days=stale_days,
    )
