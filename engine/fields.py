"""Derived fields: the market fields a formula may name that a source need not provide.

A `Panel` stores what its source delivered (open, high, low, close, volume, ...). Formulas
may also name:

- ``returns`` = close / close[t-1] - 1 (first row NaN; NaN when either close is NaN);
- ``vwap`` when the source has none: the typical price (high + low + close) / 3, a stand-in
  logged once per panel at INFO level (the real S&P 500 data has no vwap);
- ``amount`` (traded value) when the source has none: vwap * volume.

Rolling quantities such as ``adv20`` are not here: the factor language builds them from
``volume`` and ``close`` with ordinary operators.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["DERIVED", "amount", "derivable", "returns", "typical_price"]

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


# name -> (fields it needs, function of those arrays in that order)
DERIVED: dict[str, tuple[tuple[str, ...], Callable[..., np.ndarray]]] = {
    "returns": (("close",), returns),
    "vwap": (("high", "low", "close"), typical_price),
    "amount": (("vwap", "volume"), amount),
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
