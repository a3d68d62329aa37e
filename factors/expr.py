"""Expression nodes of the factor language: ``Field``, ``Const`` and ``Call``.

Nodes are immutable and built from Python operators (``close / delay(close, 20) - 1``), from
the functions of ``factors`` or by ``factors.parse``. Each node knows:

- ``key``: a canonical structural hash (sha256 hex, a Merkle hash over the children's keys).
  It is stable across processes and Python versions, ignores the order of operands of
  commutative operators (``add mul greater less eq ne and_ or_``) and normalises constants
  (``1`` and ``1.0`` are the same). Two nodes with the same key compute the same array, so
  the key is what the planner shares sub-expressions by and what the cache is keyed on.
- ``lookback``: rows of history needed before the first output row: the operator's own
  lookback plus the largest lookback among its inputs (sums along a path, max over children).
- ``children``, ``fields`` and a ``repr`` that is a formula ``factors.parse`` reads back to a
  node with the same key.

``==`` between nodes is *structural* equality (same key) so nodes work as dict keys and in
sets; the elementwise comparison is ``eq(a, b)`` / ``a.eq(b)`` (``<``, ``>`` etc. do build
comparison nodes).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from factors.operators import OPERATORS, Operator

__all__ = [
    "BASE_FIELDS",
    "GROUP_FIELDS",
    "Call",
    "Const",
    "Expr",
    "Field",
    "as_expr",
    "call",
    "field_lookback",
]

#: Price/volume fields every panel provides (some derived by the panel, see contracts.md).
BASE_FIELDS = ("open", "high", "low", "close", "volume", "vwap", "amount", "returns", "cap")
#: Group label fields the language knows by name (IndClass.sector|industry|subindustry).
GROUP_FIELDS = ("sector", "industry", "subindustry")

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ADV = re.compile(r"adv(\d+)\Z")


def field_lookback(name: str) -> int:
    """Rows of history a field needs: 0, except derived ``returns`` (1) and ``adv{d}`` (d-1)."""
    if name == "returns":
        return 1
    m = _ADV.match(name)
    if m:
        return max(int(m.group(1)) - 1, 0)
    return 0


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Expr:
    """Base class of expression nodes (immutable; see the module docstring)."""

    __slots__ = ("_key", "_lookback", "_fields")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _init(self, **values: Any) -> None:
        for k, v in values.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "_key", None)
        object.__setattr__(self, "_lookback", None)
        object.__setattr__(self, "_fields", None)

    # -- structure -----------------------------------------------------------------
    @property
    def children(self) -> tuple[Expr, ...]:
        """The array inputs of this node (empty for fields and constants)."""
        return ()

    def _serialize(self) -> str:
        raise NotImplementedError

    def _own_lookback(self) -> int:
        raise NotImplementedError

    @property
    def key(self) -> str:
        """Canonical structural hash (64 hex chars)."""
        if self._key is None:
            object.__setattr__(self, "_key", _sha(self._serialize()))
        return self._key

    @property
    def lookback(self) -> int:
        """Rows of history needed before the first output row."""
        if self._lookback is None:
            below = max((c.lookback for c in self.children), default=0)
            object.__setattr__(self, "_lookback", self._own_lookback() + below)
        return self._lookback

    @property
    def fields(self) -> frozenset[str]:
        """Names of the fields (data columns and group labels) this node reads."""
        if self._fields is None:
            out: frozenset[str] = frozenset()
            for c in self.children:
                out |= c.fields
            object.__setattr__(self, "_fields", out)
        return self._fields

    def walk(self) -> Iterable[Expr]:
        """Every distinct node (by key) below and including this one, children first."""
        seen: set[str] = set()
        stack: list[tuple[Expr, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if node.key in seen:
                continue
            if expanded:
                seen.add(node.key)
                yield node
            else:
                stack.append((node, True))
                stack.extend((c, False) for c in reversed(node.children))

    # -- identity --------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expr) and other.key == self.key

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self.key)

    def __bool__(self) -> bool:
        raise TypeError(
            "an expression has no truth value; use & | ~ and where(cond, a, b) to combine "
            "conditions, and == only to compare expressions structurally"
        )

    # -- Python operators build nodes -----------------------------------------------
    def __add__(self, o: Any) -> Expr:
        return call("add", self, o)

    def __radd__(self, o: Any) -> Expr:
        return call("add", o, self)

    def __sub__(self, o: Any) -> Expr:
        return call("sub", self, o)

    def __rsub__(self, o: Any) -> Expr:
        return call("sub", o, self)

    def __mul__(self, o: Any) -> Expr:
        return call("mul", self, o)

    def __rmul__(self, o: Any) -> Expr:
        return call("mul", o, self)

    def __truediv__(self, o: Any) -> Expr:
        return call("div", self, o)

    def __rtruediv__(self, o: Any) -> Expr:
        return call("div", o, self)

    def __pow__(self, o: Any) -> Expr:
        return call("pow", self, o)

    def __rpow__(self, o: Any) -> Expr:
        return call("pow", o, self)

    def __neg__(self) -> Expr:
        return call("neg", self)

    def __pos__(self) -> Expr:
        return self

    def __abs__(self) -> Expr:
        return call("abs", self)

    def __lt__(self, o: Any) -> Expr:
        return call("lt", self, o)

    def __le__(self, o: Any) -> Expr:
        return call("le", self, o)

    def __gt__(self, o: Any) -> Expr:
        return call("gt", self, o)

    def __ge__(self, o: Any) -> Expr:
        return call("ge", self, o)

    def __and__(self, o: Any) -> Expr:
        return call("and_", self, o)

    def __rand__(self, o: Any) -> Expr:
        return call("and_", o, self)

    def __or__(self, o: Any) -> Expr:
        return call("or_", self, o)

    def __ror__(self, o: Any) -> Expr:
        return call("or_", o, self)

    def __invert__(self) -> Expr:
        return call("not_", self)

    def eq(self, o: Any) -> Expr:
        """Elementwise ``self == o`` as 1.0/0.0 (``==`` itself compares structure)."""
        return call("eq", self, o)

    def ne(self, o: Any) -> Expr:
        """Elementwise ``self != o`` as 1.0/0.0."""
        return call("ne", self, o)

    def __repr__(self) -> str:
        return to_formula(self)

    __str__ = __repr__


class Field(Expr):
    """A data column of the panel (``close``), a fundamental, or a group label field."""

    __slots__ = ("name",)
    name: str

    def __init__(self, name: str):
        if not isinstance(name, str) or not _IDENT.match(name):
            raise ValueError(f"field name must be an identifier, got {name!r}")
        self._init(name=name)

    def _serialize(self) -> str:
        return f"F:{self.name}"

    def _own_lookback(self) -> int:
        return field_lookback(self.name)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset((self.name,))

    def __reduce__(self) -> tuple:
        return (Field, (self.name,))


class Const(Expr):
    """A finite numeric constant, stored as float (``1`` and ``1.0`` are the same node)."""

    __slots__ = ("value",)
    value: float

    def __init__(self, value: float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"a constant must be a number, got {value!r}")
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"a constant must be finite, got {value!r}")
        self._init(value=v + 0.0)  # -0.0 -> 0.0

    def _serialize(self) -> str:
        return f"C:{self.value!r}"

    def _own_lookback(self) -> int:
        return 0

    def __reduce__(self) -> tuple:
        return (Const, (self.value,))


class Call(Expr):
    """An operator of the table applied to array inputs ``args`` with scalar ``params``.

    ``params`` is completed with the operator's (python-dialect) defaults, validated and
    ordered as in the table, so equal calls have equal keys however they were spelled.
    """

    __slots__ = ("op", "args", "params")
    op: str
    args: tuple[Expr, ...]
    params: tuple[tuple[str, Any], ...]

    def __init__(
        self,
        op: str,
        args: Iterable[Expr],
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
    ):
        spec = OPERATORS.get(op)
        if spec is None:
            raise ValueError(f"unknown operator {op!r}")
        args = tuple(args)
        if len(args) != spec.inputs:
            raise TypeError(
                f"{op} takes {spec.inputs} array argument(s), got {len(args)}: {spec.signature}"
            )
        for a in args:
            if not isinstance(a, Expr):
                raise TypeError(f"arguments of {op} must be expressions, got {a!r}")
        if spec.kind == "group" and not isinstance(args[-1], Field):
            raise TypeError(f"the last argument of {op} must be a group field, got {args[-1]!r}")
        given = dict(params)
        resolved = spec.resolve_params(given, "python")
        self._init(op=op, args=args, params=resolved)

    @property
    def spec(self) -> Operator:
        """The operator's row in the table."""
        return OPERATORS[self.op]

    @property
    def children(self) -> tuple[Expr, ...]:
        return self.args

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def _serialize(self) -> str:
        keys = [a.key for a in self.args]
        if self.spec.commutative:
            keys.sort()
        ps = ",".join(f"{n}={v!r}" for n, v in self.params)
        return f"{self.op}({','.join(keys)};{ps})"

    def _own_lookback(self) -> int:
        return self.spec.lookback(self.param_dict)

    def __reduce__(self) -> tuple:
        return (Call, (self.op, self.args, self.params))


def as_expr(value: Any) -> Expr:
    """``value`` as a node: nodes pass through, numbers become ``Const``."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, bool):
        raise TypeError(
            "cannot use a bool in a formula (== compares expressions structurally; "
            "use eq(a, b) for the elementwise comparison)"
        )
    if isinstance(value, int | float):
        return Const(value)
    raise TypeError(f"cannot use {value!r} ({type(value).__name__}) in a formula")


def call(op: str, *args: Any, **params: Any) -> Expr:
    """Build ``Call(op, args, params)``; numbers become constants, ``-const`` folds."""
    exprs = tuple(as_expr(a) for a in args)
    if op == "neg" and len(exprs) == 1 and isinstance(exprs[0], Const):
        return Const(-exprs[0].value)
    return Call(op, exprs, params)


# ---------------------------------------------------------------- printing

# Binding power of infix operators when printing (the alpha101 dialect's precedence, which
# ``factors.parse`` reads back): higher binds tighter.
_PREC = {
    "or_": 1,
    "and_": 2,
    "eq": 3,
    "ne": 3,
    "lt": 4,
    "le": 4,
    "gt": 4,
    "ge": 4,
    "add": 5,
    "sub": 5,
    "mul": 6,
    "div": 6,
    "neg": 7,
    "pow": 8,
}
_ATOM = 9
_NON_ASSOC = {1: False, 2: False, 3: True, 4: True, 5: False, 6: False}


def _format_number(v: float | int) -> str:
    return repr(v)


def _prec(e: Expr) -> int:
    if isinstance(e, Call):
        if any(v != e.spec.params[i].default for i, (_, v) in enumerate(e.params)):
            return _ATOM  # printed in function form (see to_formula)
        return _PREC.get(e.op, _ATOM)
    if isinstance(e, Const) and e.value < 0:
        return _PREC["neg"]
    return _ATOM


def _wrap(e: Expr, need: int) -> str:
    text = to_formula(e)
    return f"({text})" if _prec(e) < need else text


def to_formula(e: Expr) -> str:
    """The canonical formula text of ``e`` (alpha101 dialect, canonical operator names)."""
    if isinstance(e, Field):
        known = e.name in BASE_FIELDS or e.name in GROUP_FIELDS
        return e.name if known else f"${e.name}"
    if isinstance(e, Const):
        return _format_number(e.value)
    assert isinstance(e, Call)
    spec = e.spec
    p = _PREC.get(e.op)
    if any(v != spec.params[i].default for i, (_, v) in enumerate(e.params)):
        p = None  # a policy off its default (qlib's ieee=1, nan_false=1): function form
    if (
        p is not None and e.op == "neg" and not isinstance(e.args[0], Const)
    ):  # "-3.0" would read as Const(-3)
        return "-" + _wrap(e.args[0], _PREC["pow"])
    if p is not None and e.op == "pow":
        return f"{_wrap(e.args[0], _ATOM)} ** {_wrap(e.args[1], _ATOM)}"
    if spec.infix and p is not None:
        left_need = p + 1 if _NON_ASSOC[p] else p
        return f"{_wrap(e.args[0], left_need)} {spec.infix} {_wrap(e.args[1], p + 1)}"
    parts = [to_formula(a) for a in e.args]
    values: dict[str, Any] = {}
    for param in spec.params:
        name, value = param.name, e.param_dict[param.name]
        if param.required:
            parts.append(_format_number(value))
        elif value != param.default_for("alpha101", values):
            parts.append(f"{name}={_format_number(value)}")
        values[name] = value
    return f"{e.op}({', '.join(parts)})"
