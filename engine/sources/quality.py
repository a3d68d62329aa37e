"""The data-quality report of a Panel: what is missing, odd or quarantined in its input.

It describes input that passed validation (``panel.quality``); it never changes data.
Counted: NaN values per field in the rows the source delivered, halts (days without a row
inside a symbol's listed period, i.e. gaps between its first and last row), stale prices
(close unchanged for ``stale_days`` or more consecutive days), zero-volume rows, listings
after the calendar start and delistings before its end, and the quarantined rows (dropped
by ``on_bad_rows="drop"``) with the reason for each. A quarantined row counts as delivered
(it is listed in the quarantine, not as a halt) although its values are NaN in the panel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_STALE_DAYS", "QualityReport", "quality_report", "true_runs"]

DEFAULT_STALE_DAYS = 5


def true_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of True along axis 0 of a (T, N) mask: (column, first row, length) per run."""
    t, n = mask.shape
    padded = np.zeros((n, t + 2), dtype=np.int8)
    padded[:, 1:-1] = mask.T
    step = np.diff(padded.ravel())
    begin = np.flatnonzero(step == 1) + 1
    end = np.flatnonzero(step == -1) + 1
    return begin // (t + 2), begin % (t + 2) - 1, end - begin


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


@dataclass(frozen=True)
class QualityReport:
    """Counts and listings of data-quality issues; ``str(report)`` is a readable summary."""

    n_rows: int
    n_dates: int
    n_symbols: int
    nan_counts: dict[str, int]
    halts: pd.DataFrame  # symbol, date: a missing day inside the symbol's listed period
    stale: pd.DataFrame  # symbol, start, end, days: close unchanged for >= stale_days days
    zero_volume: pd.DataFrame  # symbol, date
    listings: pd.DataFrame  # symbol, first_date: first row after the calendar start
    delistings: pd.DataFrame  # symbol, last_date: last row before the calendar end
    quarantine: pd.DataFrame = field(default_factory=lambda: _empty(["date", "symbol", "reason"]))
    stale_days: int = DEFAULT_STALE_DAYS
    source: str = ""

    @property
    def n_halts(self) -> int:
        """Missing days within listed periods."""
        return len(self.halts)

    @property
    def n_quarantined(self) -> int:
        return len(self.quarantine)

    def counts(self) -> dict[str, int]:
        """Every count in one flat dict (nan_<field> per field)."""
        out = {
            "rows": self.n_rows,
            "dates": self.n_dates,
            "symbols": self.n_symbols,
            "halts": self.n_halts,
            "stale_runs": len(self.stale),
            "zero_volume": len(self.zero_volume),
            "listed_after_start": len(self.listings),
            "delisted_before_end": len(self.delistings),
            "quarantined": self.n_quarantined,
        }
        out.update({f"nan_{k}": v for k, v in self.nan_counts.items()})
        return out

    def summary(self, max_rows: int = 5) -> str:
        """A readable multi-line summary with the first few quarantined rows."""
        nans = ", ".join(f"{k}={v}" for k, v in self.nan_counts.items() if v) or "none"
        lines = [
            f"data quality{f' of {self.source}' if self.source else ''}: "
            f"{self.n_rows} rows, {self.n_dates} dates x {self.n_symbols} symbols",
            f"  NaN values: {nans}",
            f"  halts (missing days within listed periods): {self.n_halts}"
            f" in {self.halts['symbol'].nunique() if self.n_halts else 0} symbols",
            f"  stale prices (close unchanged >= {self.stale_days} days): {len(self.stale)} runs",
            f"  zero-volume rows: {len(self.zero_volume)}",
            f"  listed after start: {len(self.listings)}; "
            f"delisted before end: {len(self.delistings)}",
            f"  quarantined rows: {self.n_quarantined}",
        ]
        for row in self.quarantine.head(max_rows).itertuples(index=False):
            lines.append(
                f"    symbol={row.symbol} date={pd.Timestamp(row.date):%Y-%m-%d}: {row.reason}"
            )
        if self.n_quarantined > max_rows:
            lines.append(f"    ... and {self.n_quarantined - max_rows} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def quality_report(
    dates: pd.DatetimeIndex,
    symbols: Sequence[str],
    fields: Mapping[str, np.ndarray],
    present: np.ndarray,
    *,
    n_rows: int | None = None,
    quarantine: pd.DataFrame | None = None,
    stale_days: int = DEFAULT_STALE_DAYS,
    source: str = "",
) -> QualityReport:
    """Build the report from dense (T, N) fields and the mask of delivered rows.

    ``present`` marks the (date, symbol) cells the source delivered a row for, including
    quarantined rows; NaN values are counted in delivered cells only.
    """
    symbols = np.asarray(symbols, dtype=object)
    t, n = present.shape
    delivered = present.copy()
    quarantined = np.zeros_like(present)
    if quarantine is not None and len(quarantine):
        qi = dates.get_indexer(pd.DatetimeIndex(quarantine["date"]))
        qj = pd.Index(symbols).get_indexer(quarantine["symbol"])
        ok = (qi >= 0) & (qj >= 0)
        quarantined[qi[ok], qj[ok]] = True
    kept = delivered & ~quarantined
    nan_counts = {k: int((np.isnan(v) & kept).sum()) for k, v in fields.items()}

    listed = present.any(axis=0)
    if t == 0:
        first = last = np.zeros(n, dtype=np.int64)
    else:
        first = np.where(listed, present.argmax(axis=0), t)
        last = np.where(listed, t - 1 - present[::-1].argmax(axis=0), -1)
    rows = np.arange(t)[:, None]
    gaps = (rows >= first) & (rows <= last) & ~present
    gi, gj = np.nonzero(gaps)
    order = np.lexsort((gi, gj))
    halts = pd.DataFrame({"symbol": symbols[gj[order]], "date": dates[gi[order]]})

    stale = _empty(["symbol", "start", "end", "days"])
    if "close" in fields:
        close = fields["close"]
        same = np.zeros((t, n), dtype=bool)
        same[1:] = close[1:] == close[:-1]
        col, start, length = true_runs(same)
        long = length + 1 >= stale_days
        col, start, length = col[long], start[long], length[long]
        stale = pd.DataFrame(
            {
                "symbol": symbols[col],
                "start": dates[start - 1],
                "end": dates[start + length - 1],
                "days": length + 1,
            }
        )

    zero_volume = _empty(["symbol", "date"])
    if "volume" in fields:
        zi, zj = np.nonzero((fields["volume"] == 0) & kept)
        order = np.lexsort((zi, zj))
        zero_volume = pd.DataFrame({"symbol": symbols[zj[order]], "date": dates[zi[order]]})

    late = np.flatnonzero(listed & (first > 0))
    early = np.flatnonzero(listed & (last < t - 1))
    return QualityReport(
        n_rows=int(present.sum()) if n_rows is None else n_rows,
        n_dates=t,
        n_symbols=n,
        nan_counts=nan_counts,
        halts=halts,
        stale=stale.reset_index(drop=True),
        zero_volume=zero_volume,
        listings=pd.DataFrame({"symbol": symbols[late], "first_date": dates[first[late]]}),
        delistings=pd.DataFrame({"symbol": symbols[early], "last_date": dates[last[early]]}),
        quarantine=(
            quarantine.reset_index(drop=True)
            if quarantine is not None
            else _empty(["date", "symbol", "reason"])
        ),
        stale_days=stale_days,
        source=source,
    )
