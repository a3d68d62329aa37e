"""The Panel: daily market data as dense (dates x symbols) arrays, the engine's input.

A Panel holds a trading calendar (``dates``: sorted, unique, tz-naive midnight timestamps),
a universe (``symbols``: sorted unique str), one float64 (T, N) C-contiguous array per field
(NaN = no value: not listed, halted, or missing) and, optionally, int64 (T, N) group codes per
label kind (e.g. ``industry``; -1 = no label) with their label texts.

It owns: building from / turning into the long alphalens layout (MultiIndex (date, asset)),
row and symbol slicing (row slices are views, never copies), a content fingerprint used as
the data version in cache keys, derived fields (see `engine.fields`) and the point-in-time
join of fundamentals. Treat the arrays as read-only: slices share memory with their parent.
Derived fields are computed within a panel, so ``returns`` on the first row of a slice is
NaN; block-wise execution reads a halo of earlier rows for that reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from engine import fields as derived_fields
from engine.errors import DataValidationError

if TYPE_CHECKING:
    from engine.sources.quality import QualityReport

__all__ = ["Panel"]

_FINGERPRINT_VERSION = b"alphaforge-panel-v1\0"


def _as_dates(dates: Iterable[Any]) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(dates)
    if idx.tz is not None:
        raise ValueError("Panel dates must be tz-naive")
    idx = idx.as_unit("ns")
    if not idx.equals(idx.normalize()):
        raise ValueError("Panel dates must be at midnight (daily calendar)")
    if not idx.is_monotonic_increasing or not idx.is_unique:
        raise ValueError("Panel dates must be sorted and unique")
    return idx


def _ffill_codes(codes: np.ndarray) -> np.ndarray:
    """Carry each symbol's last label forward over rows without one (-1); leading -1 stays."""
    rows = np.arange(codes.shape[0])[:, None]
    src = np.maximum.accumulate(np.where(codes >= 0, rows, -1), axis=0)
    out = np.take_along_axis(codes, np.maximum(src, 0), axis=0)
    out[src < 0] = -1
    return np.ascontiguousarray(out, dtype=np.int64)


class Panel:
    """Dense daily panel of market fields over a calendar and a universe."""

    def __init__(
        self,
        dates: Iterable[Any],
        symbols: Iterable[str],
        fields: Mapping[str, np.ndarray],
        groups: Mapping[str, np.ndarray] | None = None,
        group_labels: Mapping[str, Sequence[str]] | None = None,
        *,
        quality: QualityReport | None = None,
    ) -> None:
        self.dates = _as_dates(dates)
        self.symbols = pd.Index([str(s) for s in symbols], dtype=object)
        if not self.symbols.is_unique or not self.symbols.is_monotonic_increasing:
            raise ValueError("Panel symbols must be sorted and unique")
        shape = (len(self.dates), len(self.symbols))
        self.fields: dict[str, np.ndarray] = {}
        for name, arr in fields.items():
            a = np.asarray(arr)
            if a.shape != shape:
                raise ValueError(f"field {name!r} has shape {a.shape}, expected {shape}")
            self.fields[name] = np.ascontiguousarray(a, dtype=np.float64)
        self.groups: dict[str, np.ndarray] = {}
        self.group_labels: dict[str, list[str]] = {}
        for name, arr in (groups or {}).items():
            a = np.asarray(arr)
            if a.shape != shape:
                raise ValueError(f"group {name!r} has shape {a.shape}, expected {shape}")
            if name in self.fields:
                raise ValueError(f"{name!r} is both a field and a group")
            labels = list((group_labels or {}).get(name, []))
            if a.size and a.max(initial=-1) >= len(labels):
                labels += [str(i) for i in range(len(labels), int(a.max()) + 1)]
            self.groups[name] = np.ascontiguousarray(a, dtype=np.int64)
            self.group_labels[name] = labels
        self._quality = quality
        self._derived: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ basics
    @property
    def shape(self) -> tuple[int, int]:
        """(number of dates, number of symbols)."""
        return (len(self.dates), len(self.symbols))

    @property
    def field_names(self) -> list[str]:
        """Float fields ``__getitem__`` accepts: stored ones, then derivable ones."""
        return [*self.fields, *derived_fields.derivable(self.fields)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.groups or name in self.field_names)

    def __getitem__(self, name: str) -> np.ndarray:
        """A stored field, a group code array, or a derived field (computed once, cached)."""
        if name in self.fields:
            return self.fields[name]
        if name in self.groups:
            return self.groups[name]
        if name in self._derived:
            return self._derived[name]
        if name in derived_fields.derivable(self.fields):
            self._derived[name] = derived_fields.derive(name, self.__getitem__)
            return self._derived[name]
        raise KeyError(
            f"unknown field {name!r}; available: {', '.join(self.field_names + list(self.groups))}"
        )

    def __len__(self) -> int:
        return len(self.dates)

    def __repr__(self) -> str:
        t, n = self.shape
        span = f"{self.dates[0]:%Y-%m-%d}..{self.dates[-1]:%Y-%m-%d}" if t else "empty"
        return (
            f"Panel({t} dates x {n} symbols, {span}, fields={list(self.fields)}, "
            f"groups={list(self.groups)})"
        )

    @property
    def quality(self) -> QualityReport:
        """Data-quality report of the input (computed from the arrays if no source gave one)."""
        if self._quality is None:
            from engine.sources.quality import quality_report

            base = self.fields.get("close")
            if base is None:
                present = np.zeros(self.shape, bool)
                for arr in self.fields.values():
                    present |= ~np.isnan(arr)
            else:
                present = ~np.isnan(base)
            self._quality = quality_report(self.dates, self.symbols, self.fields, present)
        return self._quality

    # ------------------------------------------------------------------ frames
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        date: str = "date",
        symbol: str = "symbol",
        groups: Iterable[str] = ("industry",),
        fields: Iterable[str] | None = None,
        required: Iterable[str] = ("close",),
        universe: Iterable[str] | None = None,
        on_bad_rows: str = "raise",
        stale_days: int | None = None,
        source: str = "",
    ) -> Panel:
        """Validate a long frame (one row per date and symbol) and align it into a Panel.

        Accepts columns ``date``/``symbol`` or an index holding them (the (date, asset)
        layout of `to_frame`). Columns in ``groups`` become group codes (forward-filled per
        symbol over days without a row); all other columns (or just ``fields``) must be
        numeric. See `engine.sources.validate.validate_bars` for the rules and
        ``on_bad_rows``. The panel's calendar is every date the input mentions.
        """
        from engine.sources.quality import DEFAULT_STALE_DAYS, quality_report
        from engine.sources.validate import validate_bars

        if isinstance(df, pd.DataFrame) and date not in df.columns and date in df.index.names:
            df = df.reset_index()
        if isinstance(df, pd.DataFrame) and symbol not in df.columns and "asset" in df.columns:
            symbol = "asset"
        vb = validate_bars(
            df,
            date=date,
            symbol=symbol,
            required=required,
            groups=groups,
            fields=fields,
            universe=universe,
            on_bad_rows=on_bad_rows,
            source=source,
        )
        dates, symbols = vb.dates, vb.symbols
        shape = (len(dates), len(symbols))
        di, sj = vb.date_codes, vb.symbol_codes
        arrays: dict[str, np.ndarray] = {}
        for name, values in vb.values.items():
            a = np.full(shape, np.nan)
            a[di, sj] = values
            arrays[name] = a
        codes: dict[str, np.ndarray] = {}
        for g, row_codes in vb.group_codes.items():
            c = np.full(shape, -1, dtype=np.int64)
            c[di, sj] = row_codes
            codes[g] = _ffill_codes(c)
        present = np.zeros(shape, dtype=bool)
        present[di, sj] = True
        present[vb.quarantine_codes] = True
        report = quality_report(
            dates,
            symbols,
            arrays,
            present,
            n_rows=vb.n_input_rows,
            quarantine=vb.quarantine,
            stale_days=DEFAULT_STALE_DAYS if stale_days is None else stale_days,
            source=source,
        )
        return cls(dates, symbols, arrays, codes, vb.group_names, quality=report)

    def to_frame(self, fields: Iterable[str] | None = None) -> pd.DataFrame:
        """Long frame indexed by (date, asset), the alphalens layout.

        One row per (date, symbol) where at least one of the chosen float fields has a
        value; group columns hold label text (None for -1).
        """
        names = list(self.fields) if fields is None else list(fields)
        t, n = self.shape
        arrays = {k: self[k] for k in names}
        if arrays:
            has = np.zeros((t, n), dtype=bool)
            for a in arrays.values():
                has |= ~np.isnan(a)
        else:
            has = np.ones((t, n), dtype=bool)
        ti, sj = np.nonzero(has)
        index = pd.MultiIndex.from_arrays(
            [self.dates[ti], pd.Index(self.symbols.to_numpy()[sj], dtype=object)],
            names=["date", "asset"],
        )
        data: dict[str, Any] = {k: a[ti, sj] for k, a in arrays.items()}
        for g, codes in self.groups.items():
            lab = np.array([*self.group_labels[g], None], dtype=object)
            data[g] = pd.Series(lab[codes[ti, sj]], dtype=object).to_numpy()
        return pd.DataFrame(data, index=index)

    # ------------------------------------------------------------------ slicing
    def islice(self, i0: int | None = None, i1: int | None = None) -> Panel:
        """Rows ``i0:i1`` (Python slice semantics); arrays are views of this panel's."""
        start, stop, _ = slice(i0, i1).indices(len(self.dates))
        stop = max(stop, start)
        return Panel(
            self.dates[start:stop],
            self.symbols,
            {k: v[start:stop] for k, v in self.fields.items()},
            {k: v[start:stop] for k, v in self.groups.items()},
            self.group_labels,
        )

    def sel(
        self,
        start: Any = None,
        end: Any = None,
        symbols: Iterable[str] | None = None,
    ) -> Panel:
        """Dates in [start, end] (inclusive, either may be None) and optionally some symbols.

        The date slice is a view; selecting symbols copies (kept in sorted order). Unknown
        symbols raise KeyError naming them.
        """
        i0 = 0 if start is None else int(self.dates.searchsorted(pd.Timestamp(start), "left"))
        i1 = len(self.dates)
        if end is not None:
            i1 = int(self.dates.searchsorted(pd.Timestamp(end), "right"))
        out = self.islice(i0, i1)
        if symbols is None:
            return out
        wanted = sorted(set(map(str, [symbols] if isinstance(symbols, str) else symbols)))
        cols = self.symbols.get_indexer(wanted)
        if (cols < 0).any():
            unknown = [s for s, c in zip(wanted, cols) if c < 0]
            raise KeyError(f"unknown symbol(s): {unknown[:10]} ({len(unknown)} in all)")
        return Panel(
            out.dates,
            wanted,
            {k: np.ascontiguousarray(v[:, cols]) for k, v in out.fields.items()},
            {k: np.ascontiguousarray(v[:, cols]) for k, v in out.groups.items()},
            self.group_labels,
        )

    # ------------------------------------------------------------------ identity
    def fingerprint(self, i0: int = 0, i1: int | None = None) -> str:
        """SHA-256 hex digest of rows i0:i1: dates, symbols, field and group contents.

        Stable across processes and platforms (little-endian bytes, one NaN bit pattern),
        independent of field insertion order; use it as the data version in cache keys.
        """
        start, stop, _ = slice(i0, i1).indices(len(self.dates))
        stop = max(stop, start)
        h = hashlib.sha256(_FINGERPRINT_VERSION)
        h.update(f"{stop - start}x{len(self.symbols)}\0".encode())
        h.update(self.dates[start:stop].asi8.astype("<i8").tobytes())
        h.update("\x1f".join(self.symbols).encode() + b"\0")
        for name in sorted(self.fields):
            block = self.fields[name][start:stop]
            nan = np.isnan(block)
            if nan.any():
                block = np.where(nan, np.nan, block)
            h.update(b"f\0" + name.encode() + b"\0")
            h.update(np.ascontiguousarray(block, dtype="<f8").data)
        for name in sorted(self.groups):
            h.update(b"g\0" + name.encode() + b"\0")
            h.update("\x1f".join(self.group_labels[name]).encode() + b"\0")
            h.update(np.ascontiguousarray(self.groups[name][start:stop], dtype="<i8").data)
        return h.hexdigest()

    # ------------------------------------------------------------------ fundamentals
    def with_fundamentals(
        self,
        df: pd.DataFrame,
        announce: str = "announce_date",
        *,
        symbol: str = "symbol",
        fields: Iterable[str] | None = None,
        lag: int = 0,
    ) -> Panel:
        """A new Panel with fundamental columns joined point-in-time.

        Each value becomes visible on the first trading date on or after its announcement
        date (plus ``lag`` trading rows, e.g. 1 for after-close releases) and stays until the
        symbol's next announcement; before the first announcement it is NaN. Nothing is ever
        visible before it was announced. Symbols outside the universe are ignored. Two rows
        for the same symbol and announcement date are an error. Existing arrays are shared.
        """
        if lag < 0:
            raise ValueError(f"lag must be >= 0, got {lag}")
        missing = [c for c in (symbol, announce) if c not in df.columns]
        if missing:
            raise DataValidationError(
                f"fundamentals: missing required column(s) {missing}",
                [f"column {c!r}" for c in missing],
            )
        names = (
            [c for c in df.columns if c not in (symbol, announce)]
            if fields is None
            else list(fields)
        )
        clash = [c for c in names if c in self.fields or c in self.groups]
        if clash:
            raise ValueError(f"fundamental column(s) {clash} already exist in the panel")
        from engine.sources.validate import validate_bars

        vb = validate_bars(
            df,
            date=announce,
            symbol=symbol,
            required=(),
            groups=(),
            fields=names,
            source="fundamentals",
        )
        sj = self.symbols.get_indexer(vb.symbols)[vb.symbol_codes]
        ann = vb.dates[vb.date_codes]
        ti = self.dates.searchsorted(ann, "left") + lag
        ok = (sj >= 0) & (ti < len(self.dates))
        order = np.lexsort((ann.asi8, ti, sj))  # per symbol, by time
        order = order[ok[order]]
        ti, sj = ti[order], sj[order]
        values = {name: vb.values[name][order] for name in names}
        t, n = self.shape
        src = np.full((t, n), -1, dtype=np.int64)
        np.maximum.at(src, (ti, sj), np.arange(len(ti)))  # latest announcement wins
        src = np.maximum.accumulate(src, axis=0)
        new = dict(self.fields)
        for name in names:
            padded = np.append(values[name], np.nan)  # index -1 -> NaN
            new[name] = np.ascontiguousarray(padded[src])
        return Panel(
            self.dates, self.symbols, new, self.groups, self.group_labels, quality=self._quality
        )
