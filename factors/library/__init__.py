"""Bundled factor libraries: the formula files beside this module and their parsed graphs.

Owns three libraries, each a text file of ``NAME<TAB>formula`` lines (``#`` starts a comment):

- ``alpha101``  (``alpha101.txt``): the 101 alphas of Kakushadze, "101 Formulaic Alphas" (2016),
  in the paper's notation (dialect ``alpha101``). The paper labels them ``Alpha#1`` ..
  ``Alpha#101``; the library names them ``alpha001`` .. ``alpha101`` (sortable identifiers).
- ``alpha158``  (``alpha158.tsv``): Qlib's Alpha158 feature set (``KMID`` .. ``VSUMD60``) in
  Qlib's notation (dialect ``qlib``), copied from Qlib (MIT) with its source line.
- ``technical`` (``technical.txt``): RSI, MACD, ATR, Bollinger %B, stochastics, Williams %R,
  CCI, OBV and MFI in the alpha101 dialect, calling the technical operators.

Parsing is done once per library and process (``load`` caches); ``formulas`` gives the raw text,
for registries and documentation. This module does not evaluate anything.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from factors.expr import Expr

__all__ = ["LIBRARIES", "formulas", "load", "names"]

# library name -> (file beside this module, parser dialect)
LIBRARIES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "alpha101": ("alpha101.txt", "alpha101"),
        "alpha158": ("alpha158.tsv", "qlib"),
        "technical": ("technical.txt", "alpha101"),
    }
)

_PAPER_LABEL = re.compile(r"Alpha#(\d+)")


def names() -> list[str]:
    """The names of the bundled libraries, sorted."""
    return sorted(LIBRARIES)


def _file_and_dialect(name: str) -> tuple[str, str]:
    try:
        return LIBRARIES[name]
    except KeyError:
        raise KeyError(f"unknown factor library {name!r}; known: {', '.join(names())}") from None


def _factor_name(label: str) -> str:
    """Library key of a file label: the paper's ``Alpha#7`` becomes ``alpha007``."""
    match = _PAPER_LABEL.fullmatch(label)
    return f"alpha{int(match.group(1)):03d}" if match else label


@cache
def _formulas(name: str) -> Mapping[str, str]:
    filename, _ = _file_and_dialect(name)
    text = resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        label, sep, formula = line.partition("\t")
        if not sep or not formula.strip():
            raise ValueError(f"{filename}:{lineno}: expected NAME<TAB>formula, got {line!r}")
        key = _factor_name(label.strip())
        if key in out:
            raise ValueError(f"{filename}:{lineno}: duplicate factor name {key!r}")
        out[key] = formula.strip()
    return MappingProxyType(out)


def formulas(name: str) -> dict[str, str]:
    """Factor name -> formula text of library ``name``, in file order."""
    return dict(_formulas(name))


@cache
def _load(name: str) -> Mapping[str, Expr]:
    from factors.errors import FormulaError
    from factors.parser import parse  # late import: the parser may import this package

    _, dialect = _file_and_dialect(name)
    parsed: dict[str, Expr] = {}
    for key, text in _formulas(name).items():
        try:
            parsed[key] = parse(text, dialect=dialect)
        except FormulaError as exc:
            raise FormulaError(f"{name}/{key}: {exc.message}", exc.text, exc.position) from exc
    return MappingProxyType(parsed)


def load(name: str) -> dict[str, Expr]:
    """Factor name -> parsed expression of library ``name`` (parsed once per process).

    Raises ``KeyError`` for an unknown library and ``factors.errors.FormulaError`` (naming the
    position) if a formula does not parse.
    """
    return dict(_load(name))
