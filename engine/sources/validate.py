"""Validation of daily bars before they become a `Panel`; every source goes through here.

Two kinds of defect:

- **structural** (always raise): a missing required column, a missing/unparseable date, an
  empty or unknown symbol, a duplicate (date, symbol) row, a non-numeric value in a numeric
  column. Nothing sensible can be built from such input.
- **row-level** (raise by default; ``on_bad_rows="drop"`` moves the rows into a quarantine
  table with a reason per row instead): ±inf, a non-positive price, negative volume/amount,
  high < low, open or close outside [low, high].

NaN is not a defect: a NaN price is a missing value (the quality report counts them).
Every error is an `engine.errors.DataValidationError` naming the defect, the field, and the
first few offending symbols and dates with the total count. Validation never returns part of
the data: it raises, or hands back all kept rows plus the quarantine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import DataValidationError

__all__ = [
    "BAD_ROW_POLICIES",
    "NONNEGATIVE_FIELDS",
    "PRICE_FIELDS",
    "Defect",
    "ValidatedBars",
    "check_arrays",
    "row_defects",
    "validate_bars",
]

PRICE_FIELDS = ("open", "high", "low", "close", "vwap")
NONNEGATIVE_FIELDS = ("volume", "amount")
BAD_ROW_POLICIES = ("raise", "drop")
MAX_SHOWN = 5
_NULL_TEXT = frozenset({"", "nan", "na", "n/a", "null", "none", "<na>"})


@dataclass(frozen=True)
class Defect:
    """One row-level rule broken by some rows: ``mask`` marks them, ``detail`` describes one."""

    name: str
    field: str
    mask: np.ndarray
    detail: Callable[[int], str]


@dataclass(frozen=True)
class ValidatedBars:
    """Validation output, as integer codes into a sorted calendar and universe.

    ``dates``/``symbols`` are the sorted unique dates and symbols of every input row (kept
    and quarantined). Per kept row: ``date_codes``, ``symbol_codes``, float64 ``values`` per
    numeric column and int64 ``group_codes`` per group column (-1 = no label) into the
    sorted ``group_names``. ``quarantine`` is a frame of the dropped rows (date, symbol,
    their values, labels and ``reason``); ``quarantine_codes`` their (date, symbol) codes.
    """

    dates: pd.DatetimeIndex
    symbols: pd.Index
    date_codes: np.ndarray
    symbol_codes: np.ndarray
    values: dict[str, np.ndarray]
    group_codes: dict[str, np.ndarray]
    group_names: dict[str, list[str]]
    quarantine: pd.DataFrame
    quarantine_codes: tuple[np.ndarray, np.ndarray]
    n_input_rows: int

    @property
    def numeric(self) -> list[str]:
        return list(self.values)

    @property
    def groups(self) -> list[str]:
        return list(self.group_codes)

    @property
    def frame(self) -> pd.DataFrame:
        """The kept rows as a long frame (date, symbol, numeric columns, group labels)."""
        out = pd.DataFrame(
            {
                "date": self.dates[self.date_codes],
                "symbol": self.symbols.to_numpy()[self.symbol_codes],
                **self.values,
            }
        )
        for g, codes in self.group_codes.items():
            out[g] = np.array([*self.group_names[g], None], dtype=object)[codes]
        return out


def _sorted_codes(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Codes of ``values`` into their sorted unique values (nulls -> -1), and those values."""
    codes, uniques = pd.factorize(values)
    uniques = np.asarray(uniques)
    order = np.argsort(uniques, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    if len(rank):
        codes = np.where(codes >= 0, rank[np.maximum(codes, 0)], -1)
    return codes.astype(np.int64), uniques[order]


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def row_defects(cols: Mapping[str, np.ndarray]) -> list[Defect]:
    """Evaluate the row-level rules on equally shaped float arrays (1-D rows or 2-D panels).

    Comparisons with NaN are false, so a NaN never breaks a rule.
    """
    out: list[Defect] = []

    def val(name: str, i: int) -> float:
        return float(cols[name].flat[i])

    for name, x in cols.items():
        inf = np.isinf(x)
        if inf.any():
            out.append(Defect("infinite value", name, inf, lambda i, n=name: f"{n}={val(n, i)}"))
    for name in PRICE_FIELDS:
        if name in cols:
            bad = cols[name] <= 0
            if bad.any():
                out.append(
                    Defect(
                        "non-positive price", name, bad, lambda i, n=name: f"{n}={_fmt(val(n, i))}"
                    )
                )
    for name in NONNEGATIVE_FIELDS:
        if name in cols:
            bad = cols[name] < 0
            if bad.any():
                out.append(
                    Defect(
                        f"negative {name}", name, bad, lambda i, n=name: f"{n}={_fmt(val(n, i))}"
                    )
                )
    if "high" in cols and "low" in cols:
        high, low = cols["high"], cols["low"]
        bad = high < low
        if bad.any():
            out.append(
                Defect(
                    "high < low",
                    "high",
                    bad,
                    lambda i: f"high={_fmt(val('high', i))} < low={_fmt(val('low', i))}",
                )
            )
        for name in ("close", "open"):
            if name in cols:
                x = cols[name]
                bad = (x < low) | (x > high)
                if bad.any():
                    out.append(
                        Defect(
                            f"{name} outside [low, high]",
                            name,
                            bad,
                            lambda i, n=name: (
                                f"{n}={_fmt(val(n, i))} outside "
                                f"[low={_fmt(val('low', i))}, high={_fmt(val('high', i))}]"
                            ),
                        )
                    )
    return out


def _raise_defects(defects: Sequence[Defect], where: Callable[[int], str], source: str) -> None:
    """Raise a DataValidationError for the first defect, mentioning the others."""
    first = defects[0]
    idx = np.flatnonzero(first.mask)
    problem = f"{source}{first.name} in field {first.field!r}"
    others = [f"{d.name} in {d.field!r} ({int(d.mask.sum())})" for d in defects[1:]]
    if others:
        problem += "; also: " + ", ".join(others)
    problem += " (pass on_bad_rows='drop' to quarantine such rows)"
    offenders = [f"{where(int(i))} {first.detail(int(i))}" for i in idx[:MAX_SHOWN]]
    raise DataValidationError(problem, offenders, int(idx.size))


def check_arrays(
    fields: Mapping[str, np.ndarray],
    dates: pd.DatetimeIndex,
    symbols: Sequence[str],
    source: str = "",
) -> None:
    """Apply the row-level rules to dense (T, N) field arrays; raise on the first defect."""
    defects = row_defects(fields)
    if defects:
        n = len(symbols)

        def where(i: int) -> str:
            t, j = divmod(i, n)
            return f"symbol={symbols[j]} date={dates[t]:%Y-%m-%d}"

        _raise_defects(defects, where, source)


def _parse_dates(raw: pd.Series) -> pd.Series:
    """Parse a date column to tz-naive datetime64[ns] at midnight; failures become NaT."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        parsed = raw
    else:
        text = raw.astype(str) if pd.api.types.is_numeric_dtype(raw.dtype) else raw
        parsed = pd.to_datetime(text, errors="coerce")
        retry = parsed.isna() & raw.notna()
        if retry.any():  # formats mixed within the column: parse those one by one
            parsed = parsed.copy()
            parsed[retry] = pd.to_datetime(text[retry], errors="coerce", format="mixed")
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):
            parsed = parsed.dt.tz_localize(None)
    return parsed.astype("datetime64[ns]").dt.normalize()


def _to_float(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Column as float64 plus a mask of values that are neither numbers nor null markers."""
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(col), bool)
    num = pd.to_numeric(col, errors="coerce")
    values = num.to_numpy(dtype=np.float64, na_value=np.nan)
    text = col.astype(str).str.strip().str.lower()
    bad = np.isnan(values) & col.notna().to_numpy() & ~text.isin(_NULL_TEXT).to_numpy()
    return values, bad


def validate_bars(
    df: pd.DataFrame,
    *,
    date: str = "date",
    symbol: str = "symbol",
    required: Iterable[str] = ("close",),
    groups: Iterable[str] = ("industry",),
    fields: Iterable[str] | None = None,
    universe: Iterable[str] | None = None,
    on_bad_rows: str = "raise",
    source: str = "",
) -> ValidatedBars:
    """Check long-format bars (one row per date and symbol) and normalise them.

    ``required`` names numeric columns that must exist besides ``date`` and ``symbol``;
    ``groups`` the label columns (kept as text); ``fields`` restricts the numeric columns
    (default: every other column); ``universe``, when given, is the set of allowed symbols.
    ``source`` prefixes messages (e.g. the file name).
    """
    if on_bad_rows not in BAD_ROW_POLICIES:
        raise ValueError(f"on_bad_rows must be one of {BAD_ROW_POLICIES}, got {on_bad_rows!r}")
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    prefix = f"{source}: " if source else ""
    required = list(required)
    group_cols = [g for g in groups if g in df.columns]
    if fields is None:
        numeric = [c for c in df.columns if c not in (date, symbol, *group_cols)]
    else:
        numeric = list(dict.fromkeys([*required, *fields]))
    missing = [c for c in dict.fromkeys([date, symbol, *required, *numeric]) if c not in df.columns]
    if missing:
        raise DataValidationError(
            f"{prefix}missing required column(s) {missing}; columns present: {list(df.columns)}",
            [f"column {c!r}" for c in missing],
        )
    if len(df) == 0:
        raise DataValidationError(f"{prefix}no rows")
    n = len(df)

    # symbols: present, non-empty, known
    raw_sym = df[symbol]
    sym_text = raw_sym.astype(str).str.strip()
    empty = (raw_sym.isna() | (sym_text == "")).to_numpy()
    raw_date = df[date]
    if empty.any():
        idx = np.flatnonzero(empty)
        raise DataValidationError(
            f"{prefix}empty or missing symbol in column {symbol!r}",
            [f"row {i} date={raw_date.iloc[i]}" for i in idx[:MAX_SHOWN]],
            int(idx.size),
        )
    sym_codes, sym_uniques = _sorted_codes(sym_text)
    symbols = pd.Index(sym_uniques.astype(object), dtype=object)
    sym_of = symbols.to_numpy()

    # dates: parseable
    parsed = _parse_dates(raw_date)
    bad_date = parsed.isna().to_numpy()
    if bad_date.any():
        idx = np.flatnonzero(bad_date)
        raise DataValidationError(
            f"{prefix}unparseable or missing date in column {date!r}",
            [
                f"row {i} symbol={sym_of[sym_codes[i]]} date={raw_date.iloc[i]!r}"
                for i in idx[:MAX_SHOWN]
            ],
            int(idx.size),
        )
    date_codes, date_uniques = _sorted_codes(parsed.to_numpy())
    dates = pd.DatetimeIndex(date_uniques)

    def where(i: int) -> str:
        return f"symbol={sym_of[sym_codes[i]]} date={dates[date_codes[i]]:%Y-%m-%d}"

    if universe is not None:
        allowed = set(map(str, universe))
        unknown_sym = np.array([s not in allowed for s in sym_of])
        if unknown_sym.any():
            idx = np.flatnonzero(unknown_sym[sym_codes])
            raise DataValidationError(
                f"{prefix}unknown symbol(s) not in the universe: "
                f"{list(sym_of[unknown_sym][:MAX_SHOWN])}",
                [where(i) for i in idx[:MAX_SHOWN]],
                int(idx.size),
            )

    # duplicates
    key = date_codes * len(symbols) + sym_codes
    dup = pd.Series(key).duplicated(keep=False).to_numpy()
    if dup.any():
        dup_keys, counts = np.unique(key[dup], return_counts=True)
        shown = [
            f"symbol={sym_of[k % len(symbols)]} date={dates[k // len(symbols)]:%Y-%m-%d} ({c} rows)"
            for k, c in zip(dup_keys[:MAX_SHOWN], counts[:MAX_SHOWN])
        ]
        raise DataValidationError(
            f"{prefix}duplicate (date, symbol) rows", shown, int(dup_keys.size)
        )

    # numeric columns
    cols: dict[str, np.ndarray] = {}
    for name in numeric:
        values, bad = _to_float(df[name])
        if bad.any():
            idx = np.flatnonzero(bad)
            raise DataValidationError(
                f"{prefix}non-numeric value in numeric column {name!r}",
                [f"{where(i)} {name}={df[name].iloc[i]!r}" for i in idx[:MAX_SHOWN]],
                int(idx.size),
            )
        cols[name] = values

    # row-level rules
    defects = row_defects(cols)
    if defects and on_bad_rows == "raise":
        _raise_defects(defects, where, prefix)
    bad_rows = np.zeros(n, bool)
    for d in defects:
        bad_rows |= d.mask
    bad_idx = np.flatnonzero(bad_rows)
    keep = np.flatnonzero(~bad_rows) if bad_idx.size else slice(None)

    group_codes: dict[str, np.ndarray] = {}
    group_names: dict[str, list[str]] = {}
    for g in group_cols:
        codes, names = _sorted_codes(df[g].astype(str).where(df[g].notna()))
        group_codes[g] = codes
        group_names[g] = [str(v) for v in names]

    quarantine = pd.DataFrame(
        {
            "date": dates[date_codes[bad_idx]],
            "symbol": sym_of[sym_codes[bad_idx]],
            **{name: cols[name][bad_idx] for name in numeric},
            **{
                g: np.array([*group_names[g], None], dtype=object)[group_codes[g][bad_idx]]
                for g in group_cols
            },
            "reason": [
                "; ".join(
                    f"{d.name} ({d.field})" if d.field not in d.name else d.name
                    for d in defects
                    if d.mask[i]
                )
                for i in bad_idx
            ],
        }
    )
    return ValidatedBars(
        dates=dates,
        symbols=symbols,
        date_codes=date_codes[keep],
        symbol_codes=sym_codes[keep],
        values={name: cols[name][keep] for name in numeric},
        group_codes={g: c[keep] for g, c in group_codes.items()},
        group_names=group_names,
        quarantine=quarantine,
        quarantine_codes=(date_codes[bad_idx], sym_codes[bad_idx]),
        n_input_rows=n,
    )
