"""Every error alphaforge raises on purpose, in one place.

Messages name what is wrong and where: the field, symbol and date of bad data, the
position in a formula, the table or URL (without credentials) of a store.
"""

from __future__ import annotations

from collections.abc import Sequence

from factors.errors import FactorLanguageError, FormulaError

__all__ = [
    "AlphaforgeError",
    "CacheError",
    "ConfigError",
    "DataValidationError",
    "FactorLanguageError",
    "FormulaError",
    "PlanError",
    "StoreError",
]


class AlphaforgeError(Exception):
    """Base class of all alphaforge errors."""


class DataValidationError(AlphaforgeError, ValueError):
    """Input data broke a rule; nothing downstream ran.

    ``problem`` names the rule, ``offenders`` lists the first few offending locations
    (as human-readable strings such as ``"symbol=AAPL date=2015-03-02 high=9.0 < low=10.0"``)
    and ``count`` is how many there were in all.
    """

    def __init__(self, problem: str, offenders: Sequence[str] = (), count: int | None = None):
        self.problem = problem
        self.offenders = list(offenders)
        self.count = len(self.offenders) if count is None else count
        msg = problem
        if self.offenders:
            shown = "\n  ".join(self.offenders)
            more = self.count - len(self.offenders)
            msg += f" ({self.count} offending row{'s' if self.count != 1 else ''}):\n  {shown}"
            if more > 0:
                msg += f"\n  ... and {more} more"
        super().__init__(msg)


class PlanError(AlphaforgeError, ValueError):
    """A set of factors cannot be planned (unknown field, bad window, cycle...)."""


class ConfigError(AlphaforgeError, ValueError):
    """Configuration is missing or invalid."""


class StoreError(AlphaforgeError):
    """The result store refused an operation or is unreachable."""


class CacheError(AlphaforgeError):
    """A cached value could not be read back (bad header, wrong shape); it is recomputed."""
