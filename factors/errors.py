"""Errors of the factor language. ``engine.errors`` re-exports them, so callers catch one set."""

from __future__ import annotations


class FactorLanguageError(ValueError):
    """Base class of errors raised by the factor language."""


class FormulaError(FactorLanguageError):
    """A formula could not be parsed or type-checked.

    ``position`` is the 0-based character offset in ``text`` where the problem is.
    """

    def __init__(self, message: str, text: str = "", position: int | None = None):
        self.text = text
        self.position = position
        self.message = message
        full = message
        if text and position is not None:
            full += f"\n  {text}\n  {' ' * position}^"
        super().__init__(full)
