"""The store's read side for the command line: ``alphaforge query <what> ...``.

:func:`query` opens the store, runs one query and returns a pandas object; the CLI prints it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from engine.errors import StoreError

KINDS = ("cross_section", "history", "panel", "runs", "factors")


def query(
    url: str | None,
    kind: str,
    *,
    factors: Sequence[str] = (),
    symbols: Sequence[str] = (),
    date: Any = None,
    start: Any = None,
    end: Any = None,
) -> pd.DataFrame | pd.Series:
    """Run one query (``kind`` in KINDS) against the store at ``url``."""
    from engine.store import open_store

    kind = kind.replace("-", "_")
    if kind not in KINDS:
        raise StoreError(f"unknown query {kind!r}: choose one of {', '.join(KINDS)}")
    with open_store(url) as store:
        if kind == "runs":
            return store.runs()
        if kind == "factors":
            return store.factors()
        if not factors:
            raise StoreError(f"query {kind}: give at least one factor")
        if kind == "cross_section":
            if date is None or len(factors) != 1:
                raise StoreError("query cross_section: give one factor and a date")
            return store.cross_section(factors[0], date)
        if start is None or end is None:
            raise StoreError(f"query {kind}: give start and end dates")
        if kind == "history":
            if not symbols:
                raise StoreError("query history: give at least one symbol")
            return store.history(list(symbols), list(factors), start, end)
        return store.panel(list(factors), start, end, list(symbols) or None)
