"""Derived fields: the market fields a formula may name that a source need not provide.

A `Panel` stores what its source delivered (open, high, low, close, volume, ...). Formulas
may also name:

- ``returns`` = close / close[t-1] - 1 (first row NaN; NaN when either close is NaN);
- ``vwap`` when the source has none: the typical price (high + low + close) / 3, a stand-in
  logged once per panel at INFO level (the real S&P 500 data has no vwap);
- ``amount`` (traded value) when the source has none: vwap * volume;
- ``listed``: 1.0 from a symbol's first to its last valid ``close`` in the panel (both
  included, halts inside included), NaN before and after. This is Qlib's instrument span as
  ``scripts/qlib_reference.py`` (and Qlib's ``dump_bin``) writes it: ``instruments/all.txt``
  holds each symbol's first..last date with data, and Qlib computes a symbol only over that
  span. The qlib dialect masks every formula with it (``factors.parser``). It is data of the
  loaded panel: computed once over the whole panel, the block executor slices it like any
  field; an incremental run that loads a shorter history sees the same span as long as the
  loaded history starts on a row where the symbol has a close or before its first one.

Rolling quantities such as ``adv20`` are not here: the factor language builds them from
``volume`` and ``close`` with ordinary operators.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["DERIVED", "amount", "derivable", "listed", "returns", "typical_price"]

log = logging.getLogger(__name__)


def returns(close: np.ndarray) -> np.ndarray:
    """Simple daily return close[t] / close[t-1] - 1 along axis 0; row 0 is NaN."""
    close = np.asarray(close, dtype=np.float64)
    out = np.full(close.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[1:] = close[1:] / close[:-1] - 1.0
    out[~np.isfinite(out)] = np.nan
    return out


def typical_price(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """(high + low + close) / 3: the vwap stand-in when a source has no vwap."""
    return (np.asarray(high) + np.asarray(low) + np.asarray(close)) / 3.0


def amount(vwap: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Traded value vwap * volume: the amount stand-in when a source has none."""
    return np.asarray(vwap) * np.asarray(volume)


def listed(close: np.ndarray) -> np.ndarray:
    """1.0 on the rows from each column's first to its last valid close, NaN elsewhere."""
    valid = ~np.isnan(np.asarray(close, dtype=np.float64))
    seen = np.logical_or.accumulate(valid, axis=0)
    to_come = np.logical_or.accumulate(valid[::-1], axis=0)[::-1]
    return np.where(seen & to_come, 1.0, np.nan)


# name -> (fields it needs, function of those arrays in that order)
DERIVED: dict[str, tuple[tuple[str, ...], Callable[..., np.ndarray]]] = {
    "returns": (("close",), returns),
    "vwap": (("high", "low", "close"), typical_price),
    "amount": (("vwap", "volume"), amount),
    "listed": (("close",), listed),
}


def derivable(stored: Mapping[str, object] | set[str]) -> list[str]:
    """Names of derived fields computable from the stored field names, in a stable order."""
    have = set(stored)
    out: list[str] = []
    changed = True
    while changed:  # derived fields may need other derived fields (amount needs vwap)
        changed = False
        for name, (needs, _) in DERIVED.items():
            if name not in have and all(n in have for n in needs):
                have.add(name)
                out.append(name)
                changed = True
    return out


def derive(name: str, get: Callable[[str], np.ndarray]) -> np.ndarray:
    """Compute derived field ``name``, fetching its inputs through ``get`` (may recurse)."""
    needs, fn = DERIVED[name]
    if name == "vwap":
        log.info("no 'vwap' field: using the typical price (high + low + close) / 3 instead")
    return np.ascontiguousarray(fn(*(get(n) for n in needs)), dtype=np.float64)
