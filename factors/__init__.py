"""The factor language: fields, operator functions, and the formula parser.

``from factors import close, volume, rank, ts_corr`` gives expression nodes and builders:
every operator of the table (``factors.operators``) is a function here under its canonical
name, taking array arguments (expressions or numbers) then its parameters
(``ts_mean(close, 20)``, ``ts_mean(close, 20, min_periods=5)``). ``parse(text, dialect)``
reads formula text of the alpha101 or qlib notation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from factors.errors import FactorLanguageError, FormulaError
from factors.expr import BASE_FIELDS, GROUP_FIELDS, Call, Const, Expr, Field, as_expr, call
from factors.operators import OPERATORS, Operator
from factors.parser import parse

open = Field("open")  # shadows the builtin on purpose: the field is called open
high = Field("high")
low = Field("low")
close = Field("close")
volume = Field("volume")
vwap = Field("vwap")
amount = Field("amount")
returns = Field("returns")
cap = Field("cap")


def field(name: str) -> Field:
    """A data column by name: a fundamental (``field("pe")``) or a group label field."""
    return Field(name)


def adv(d: int) -> Expr:
    """Average daily dollar volume over ``d`` rows: ``ts_mean(amount, d)`` (the paper's adv{d})."""
    return call("ts_mean", amount, w=d)


def _builder(op: Operator) -> Callable[..., Expr]:
    arrays = [f"x{i + 1}" if op.inputs > 1 else "x" for i in range(op.inputs)]
    if op.kind == "group":
        arrays[-1] = "group"

    def build(*args: Any, **params: Any) -> Expr:
        n = op.inputs
        if len(args) < n:
            raise TypeError(f"{op.name} takes {n} array argument(s): {op.signature}")
        extra = args[n:]
        if len(extra) > len(op.params):
            raise TypeError(f"too many arguments to {op.name}: {op.signature}")
        for p, v in zip(op.params, extra):
            if p.name in params:
                raise TypeError(f"{op.name} got parameter '{p.name}' twice")
            params[p.name] = v
        arr = list(args[:n])
        if op.kind == "group" and isinstance(arr[-1], str):
            arr[-1] = Field(arr[-1])
        return call(op.name, *arr, **params)

    P = inspect.Parameter
    sig = [P(a, P.POSITIONAL_OR_KEYWORD) for a in arrays]
    for p in op.params:
        default = P.empty if p.required else p.default
        sig.append(P(p.name, P.POSITIONAL_OR_KEYWORD, default=default))
    build.__signature__ = inspect.Signature(sig)  # type: ignore[attr-defined]
    build.__name__ = build.__qualname__ = op.name
    build.__doc__ = f"{op.signature}: {op.doc}."
    return build


_FUNCTIONS = {name: _builder(op) for name, op in OPERATORS.items()}
globals().update(_FUNCTIONS)

__all__ = [  # noqa: F822 - operator functions are generated from the table
    "BASE_FIELDS",
    "GROUP_FIELDS",
    "Call",
    "Const",
    "Expr",
    "FactorLanguageError",
    "Field",
    "FormulaError",
    "OPERATORS",
    "adv",
    "amount",
    "as_expr",
    "call",
    "cap",
    "close",
    "field",
    "high",
    "low",
    "open",
    "parse",
    "returns",
    "volume",
    "vwap",
    *_FUNCTIONS,
]
