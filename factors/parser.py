"""Formula text -> expression nodes, for the alpha101 and qlib dialects.

A real parser, never ``eval``: ``factors.tokenizer`` splits the text into tokens, a Pratt
(precedence-climbing) parser reads them with the dialect's operator table
(``factors.dialects``) into a small AST, and ``_Builder`` turns the AST into ``Expr`` nodes,
resolving function spellings and parameters through the operator table
(``factors.operators``). Every error is a ``FormulaError`` carrying the formula and the
0-based position, saying what was found and what was expected, with a "did you mean"
suggestion for unknown names.
"""

from __future__ import annotations

import difflib
import keyword
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from factors.dialects import Dialect, get_dialect
from factors.errors import FormulaError
from factors.expr import BASE_FIELDS, GROUP_FIELDS, Call, Const, Expr, Field, call
from factors.operators import OPERATORS, ParamError
from factors.tokenizer import Token, tokenize

__all__ = ["parse"]

_ADV = re.compile(r"adv(\d+)\Z", re.IGNORECASE)


# ---------------------------------------------------------------- AST


@dataclass(frozen=True)
class Num:
    value: int | float
    pos: int


@dataclass(frozen=True)
class Name:
    name: str
    pos: int
    dollar: bool = False


@dataclass(frozen=True)
class GroupRef:
    """``IndClass.industry``: a group label field."""

    name: str
    pos: int


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Any
    pos: int


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Any
    right: Any
    pos: int


@dataclass(frozen=True)
class Ternary:
    cond: Any
    a: Any
    b: Any
    pos: int


@dataclass(frozen=True)
class Arg:
    value: Any
    pos: int
    keyword: str | None = None


@dataclass(frozen=True)
class FuncCall:
    name: str
    args: tuple[Arg, ...]
    pos: int
    end: int


# ---------------------------------------------------------------- syntax


class _Parser:
    """Pratt parser over the token list of one formula."""

    def __init__(self, text: str, dialect: Dialect):
        self.text = text
        self.d = dialect
        self.tokens = tokenize(text)
        self.i = 0

    # -- helpers ---------------------------------------------------------------------
    def error(self, message: str, pos: int) -> FormulaError:
        return FormulaError(message, self.text, pos)

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def advance(self) -> Token:
        t = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return t

    def is_op(self, text: str, t: Token | None = None) -> bool:
        t = self.tok if t is None else t
        return t.kind == "OP" and t.text == text

    def expect(self, text: str, what: str) -> Token:
        if not self.is_op(text):
            raise self.unexpected(what)
        return self.advance()

    def unexpected(self, expected: str) -> FormulaError:
        t = self.tok
        if t.kind == "STRING":
            return self.error(f"strings are not allowed in formulas at {t.pos}", t.pos)
        return self.error(f"unexpected {t.describe()} at {t.pos}; expected {expected}", t.pos)

    # -- grammar ---------------------------------------------------------------------
    def parse(self) -> Any:
        node = self.expression(0)
        if self.tok.kind != "END":
            t = self.tok
            if self.is_op(")"):
                raise self.error(f"unbalanced ')' at {t.pos}", t.pos)
            raise self.unexpected("an operator or the end of the formula")
        return node

    def expression(self, min_bp: int) -> Any:
        left = self.prefix()
        while True:
            t = self.tok
            if t.kind != "OP":
                return left
            if t.text == "?" and self.d.ternary_bp is not None:
                if self.d.ternary_bp <= min_bp:
                    return left
                self.advance()
                a = self.expression(0)
                self.expect(":", "':' of 'cond ? a : b'")
                b = self.expression(self.d.ternary_bp - 1)
                left = Ternary(left, a, b, t.pos)
                continue
            spec = self.d.binary.get(t.text)
            if spec is None:
                self._reject_operator(t)
                return left
            if spec.bp <= min_bp:
                return left
            self.advance()
            rbp = spec.bp - 1 if spec.assoc == "right" else spec.bp
            right = self.expression(rbp)
            left = BinOp(spec.op, left, right, t.pos)
            if spec.assoc == "none":
                nxt = self.d.binary.get(self.tok.text) if self.tok.kind == "OP" else None
                if nxt is not None and nxt.bp == spec.bp:
                    p = self.tok.pos
                    raise self.error(
                        f"chained comparison '{self.tok.text}' at {p}; add parentheses", p
                    )

    def _reject_operator(self, t: Token) -> None:
        """Operators that are not binary in this dialect: a clear error, or end of expression."""
        if t.text in (")", ",", ":", "="):
            return
        if t.text == ".":
            raise self.error(f"attribute access is not allowed at {t.pos}", t.pos)
        if t.text == "[":
            raise self.error(f"indexing is not allowed at {t.pos}", t.pos)
        if t.text == "(":
            raise self.error(
                f"unexpected '(' at {t.pos}; only names of functions can be called", t.pos
            )
        if t.text in ("^", "&&", "||", "?") and self.d.name == "qlib":
            hint = {"^": "use ** or Power(x, y)", "?": "use If(cond, a, b)"}.get(
                t.text, "use & or |"
            )
            raise self.error(
                f"operator '{t.text}' is not part of the qlib dialect at {t.pos}; {hint}", t.pos
            )
        raise self.error(f"unexpected operator '{t.text}' at {t.pos}", t.pos)

    def prefix(self) -> Any:
        t = self.tok
        if t.kind == "OP" and t.text in self.d.prefix:
            self.advance()
            operand = self.expression(self.d.prefix_bp)
            return Unary(self.d.prefix[t.text], operand, t.pos)
        return self.primary()

    def primary(self) -> Any:
        t = self.tok
        if t.kind == "NUMBER":
            self.advance()
            value = _number(t.text)
            if not math.isfinite(value):
                raise self.error(f"number '{t.text}' at {t.pos} is out of range", t.pos)
            return Num(value, t.pos)
        if t.kind == "FIELD":
            self.advance()
            return Name(t.text, t.pos, dollar=True)
        if t.kind == "NAME":
            if keyword.iskeyword(t.text):
                raise self.error(
                    f"'{t.text}' is not allowed at {t.pos}: a formula is an expression of "
                    "fields, numbers, operators and functions",
                    t.pos,
                )
            self.advance()
            if self.is_op("("):
                return self.call(t)
            if self.is_op(".") and t.text.lower() == "indclass" and self.d.name == "alpha101":
                self.advance()
                g = self.tok
                if g.kind != "NAME":
                    raise self.unexpected("a group level after 'IndClass.'")
                self.advance()
                return GroupRef(g.text.lower(), t.pos)
            return Name(t.text, t.pos)
        if self.is_op("("):
            self.advance()
            inner = self.expression(0)
            if self.tok.kind == "END":
                raise self.error(f"unbalanced '(' at {t.pos}: missing ')'", t.pos)
            self.expect(")", "')'")
            return inner
        if t.kind == "END":
            raise self.unexpected("a number, field, function or '('")
        if self.is_op(")"):
            raise self.error(f"unexpected ')' at {t.pos}; expected an expression", t.pos)
        raise self.unexpected("a number, field, function or '('")

    def call(self, name_tok: Token) -> FuncCall:
        name = name_tok.text
        if self.d.lookup(name) is None:  # fail on the name before reading the arguments
            msg = f"unknown function '{name}' at {name_tok.pos}"
            msg += _suggest(self.d.normalise(name), self.d.names)
            raise self.error(msg, name_tok.pos)
        open_tok = self.advance()
        args: list[Arg] = []
        if not self.is_op(")"):
            while True:
                start = self.tok
                if start.kind == "NAME" and self.is_op("=", self.peek()):
                    self.advance()
                    self.advance()
                    args.append(Arg(self.expression(0), start.pos, start.text))
                else:
                    args.append(Arg(self.expression(0), start.pos))
                if self.is_op(","):
                    self.advance()
                    continue
                if self.tok.kind == "END":
                    raise self.error(
                        f"unbalanced '(' at {open_tok.pos}: missing ')' of {name_tok.text}",
                        open_tok.pos,
                    )
                if self.is_op(")"):
                    break
                raise self.unexpected(f"',' or ')' in the arguments of {name_tok.text}")
        end = self.advance()
        return FuncCall(name_tok.text, tuple(args), name_tok.pos, end.pos)


def _number(text: str) -> int | float:
    if re.fullmatch(r"\d+", text):
        return int(text)
    return float(text)


# ---------------------------------------------------------------- semantics


class _Builder:
    """AST -> Expr, resolving names, spellings, parameters and dialect policies."""

    def __init__(self, text: str, dialect: Dialect, fields: Iterable[str]):
        self.text = text
        self.d = dialect
        self.fields = set(BASE_FIELDS) | set(fields)

    def error(self, message: str, pos: int) -> FormulaError:
        return FormulaError(message, self.text, pos)

    def build(self, node: Any) -> Expr:
        if isinstance(node, Num):
            return Const(node.value)
        if isinstance(node, Name):
            return self.field(node)
        if isinstance(node, GroupRef):
            raise self.error(
                f"IndClass.{node.name} at {node.pos} can only be the group argument of "
                "IndNeutralize or a group_* function",
                node.pos,
            )
        if isinstance(node, Unary):
            operand = self.build(node.operand)
            if node.op == "pos":
                return operand
            return self.make(node.op, operand)
        if isinstance(node, BinOp):
            return self.make(node.op, self.build(node.left), self.build(node.right))
        if isinstance(node, Ternary):
            return self.make("where", self.build(node.cond), self.build(node.a), self.build(node.b))
        if isinstance(node, FuncCall):
            return self.function(node)
        raise AssertionError(f"unknown AST node {node!r}")  # pragma: no cover

    def make(self, op: str, *args: Expr) -> Expr:
        """An operator written as an infix/prefix symbol, with the dialect's policies."""
        return call(op, *args, **dict(OPERATORS[op].resolve_params({}, self.d.name)))

    # -- names -----------------------------------------------------------------------
    def field(self, node: Name) -> Expr:
        name = node.name
        if node.dollar:
            return Field(name)
        if not self.d.bare_fields:
            raise self.error(
                f"unknown name '{name}' at {node.pos}; qlib fields are written '${name}'",
                node.pos,
            )
        if name in self.fields:
            return Field(name)
        m = _ADV.match(name)
        if m:
            d = int(m.group(1))
            if d < 1:
                raise self.error(f"'{name}' at {node.pos}: adv needs a window >= 1", node.pos)
            return call("ts_mean", Field("amount"), w=d, min_periods=d)
        if name.lower() in self.fields:
            return Field(name.lower())
        if name in GROUP_FIELDS:
            raise self.error(
                f"group field '{name}' at {node.pos} can only be the group argument of "
                "IndNeutralize or a group_* function",
                node.pos,
            )
        if self.d.lookup(name) is not None:
            raise self.error(
                f"'{name}' at {node.pos} is a function; expected '(' after it", node.pos
            )
        msg = f"unknown field '{name}' at {node.pos} (write other data columns as ${name})"
        msg += _suggest(name, sorted(self.fields))
        raise self.error(msg, node.pos)

    def group(self, arg: Arg) -> Field:
        node = arg.value
        if isinstance(node, GroupRef):
            return Field(node.name)
        if isinstance(node, Name) and (node.dollar or self.d.bare_fields):
            return Field(node.name if node.dollar else node.name.lower())
        raise self.error(
            f"expected a group field (e.g. IndClass.industry or $industry) at {arg.pos}",
            arg.pos,
        )

    # -- functions -------------------------------------------------------------------
    def function(self, node: FuncCall) -> Expr:
        target = self.d.lookup(node.name)
        if target is None:
            msg = f"unknown function '{node.name}' at {node.pos}"
            msg += _suggest(self.d.normalise(node.name), self.d.names)
            raise self.error(msg, node.pos)
        if target == "min" or target == "max":
            return self.min_max(node, target)
        if target == "indneutralize":
            return self.apply(node, "group_neutralize")
        if target == "qlib_ema":
            return self.qlib_ema(node)
        return self.apply(node, target)

    def min_max(self, node: FuncCall, which: str) -> Expr:
        """The paper's min/max: ts_min/ts_max with an integral literal window, else elementwise."""
        if len(node.args) == 2 and node.args[1].keyword is None:
            second = node.args[1].value
            if isinstance(second, Num) and second.value == int(second.value) and second.value >= 1:
                return self.apply(node, "ts_min" if which == "min" else "ts_max")
        return self.apply(node, "less" if which == "min" else "greater")

    def qlib_ema(self, node: FuncCall) -> Expr:
        """Qlib EMA(x, N): pandas ewm(span=N) -> alpha = 2/(N+1); 0 < N < 1 is alpha itself."""
        if len(node.args) != 2 or any(a.keyword for a in node.args):
            raise self.error(
                f"EMA at {node.pos} takes 2 arguments (x, N), got {len(node.args)}", node.pos
            )
        x = self.build(node.args[0].value)
        n_arg = node.args[1]
        n = self.literal(n_arg, "N", "EMA")
        if 0 < n < 1:
            alpha = float(n)
        elif n >= 1 and n == int(n):
            alpha = 2.0 / (n + 1.0)
        else:
            raise self.error(
                f"parameter 'N' of EMA must be an integer >= 1 or in (0, 1), got {n!r} "
                f"at {n_arg.pos}",
                n_arg.pos,
            )
        params = OPERATORS["ema"].resolve_params({"alpha": alpha}, "qlib")
        return Call("ema", (x,), params)

    def literal(self, arg: Arg, pname: str, fname: str) -> int | float:
        node = arg.value
        sign = 1
        if isinstance(node, Unary) and node.op == "neg":
            sign, node = -1, node.operand
        if not isinstance(node, Num):
            raise self.error(
                f"parameter '{pname}' of {fname} must be a number, got an expression at {arg.pos}",
                arg.pos,
            )
        return sign * node.value

    def apply(self, node: FuncCall, op: str) -> Expr:
        spec = OPERATORS[op]
        positional = [a for a in node.args if a.keyword is None]
        keywords = [a for a in node.args if a.keyword is not None]
        if any(a.keyword is None for a in node.args[len(positional) :]):
            kw = keywords[0]
            raise self.error(f"positional argument after keyword at {kw.pos}", kw.pos)
        pnames = [p.name for p in spec.params]
        named = {a.keyword for a in keywords}
        missing = [
            p.name
            for k, p in enumerate(spec.params)
            if p.required and spec.inputs + k >= len(positional) and p.name not in named
        ]
        if not spec.inputs <= len(positional) <= spec.inputs + len(pnames) or missing:
            self._arity_error(node, spec.signature, len(node.args))
        arrays: list[Expr] = []
        for k, a in enumerate(positional[: spec.inputs]):
            if spec.kind == "group" and k == spec.inputs - 1:
                arrays.append(self.group(a))
            else:
                arrays.append(self.build(a.value))
        given: dict[str, Any] = {}
        where: dict[str, int] = {}
        for pname, a in zip(pnames, positional[spec.inputs :]):
            given[pname] = self.literal(a, pname, node.name)
            where[pname] = a.pos
        for a in keywords:
            if a.keyword not in pnames:
                raise self.error(
                    f"{node.name} has no parameter '{a.keyword}' at {a.pos}; "
                    f"it takes {spec.signature}",
                    a.pos,
                )
            if a.keyword in given:
                raise self.error(f"parameter '{a.keyword}' given twice at {a.pos}", a.pos)
            given[a.keyword] = self.literal(a, a.keyword, node.name)
            where[a.keyword] = a.pos
        if self.d.floor_windows:
            for p in spec.params:
                v = given.get(p.name)
                if p.type is int and isinstance(v, float) and math.isfinite(v):
                    given[p.name] = math.floor(v)
        try:
            params = spec.resolve_params(given, self.d.name)
        except ParamError as exc:
            pos = where.get(exc.param or "", node.pos)
            msg = f"{exc} at {pos}"
            if self.d.name == "qlib" and exc.param in ("w", "d") and given.get(exc.param) == 0:
                msg += " (Qlib's window 0 = expanding is not supported)"
            raise self.error(msg, pos) from None
        try:
            return Call(op, arrays, params)
        except (TypeError, ValueError) as exc:
            raise self.error(f"{exc} at {node.pos}", node.pos) from None

    def _arity_error(self, node: FuncCall, signature: str, got: int) -> None:
        raise self.error(
            f"wrong number of arguments to '{node.name}' at {node.pos}: it takes {signature}, "
            f"got {got} argument{'s' if got != 1 else ''}",
            node.pos,
        )


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# ---------------------------------------------------------------- Qlib's instrument spans

#: Elementwise ops that can give a value where their inputs are NaN under Qlib's numpy rules
#: (comparisons and logic read NaN as False, np.where takes a NaN condition as true,
#: nan ** 0 == 1), and Count (0 on an empty window): outside an instrument's span Qlib has no
#: row at all, so their results are masked with the 'listed' field.
_SPAN_MASKED = frozenset(
    {"gt", "ge", "lt", "le", "eq", "ne", "and_", "or_", "not_", "where", "pow", "ts_count"}
)
#: Elementwise ops whose result is never +-inf when their inputs are finite.
_NEVER_INF = frozenset({"gt", "ge", "lt", "le", "eq", "ne", "and_", "or_", "not_", "sign"})
#: Time-series ops that are plain shifts in Qlib (Ref, Delta): +-inf passes through them;
#: every other Qlib rolling op is pandas rolling/ewm, which reads +-inf as NaN.
_SHIFTS = frozenset({"delay", "delta"})
#: Qlib's Corr and Rsquare set NaN where an input's rolling std (min_periods=1) is within
#: 2e-5 of 0 (``np.isclose(std, 0, atol=2e-05)``): an absolute test on top of the kernels' own.
_STD_TESTED = frozenset({"ts_corr", "ts_rsquare"})
_STD_ATOL = 2e-05
_ARGEXT = {"ts_argmax": "ts_argmax_listed", "ts_argmin": "ts_argmin_listed"}
LISTED = Field("listed")


def _may_be_inf(e: Expr) -> bool:
    """Whether ``e`` can hold +-inf (finite data in, Qlib's numpy rules)."""
    if not isinstance(e, Call):
        return False
    if e.op in ("div", "log", "pow", "mul"):  # x/0, log 0, overflow
        return True
    if e.op in _SHIFTS or (e.spec.kind == "elementwise" and e.op not in _NEVER_INF):
        return e.op != "inf_to_nan" and any(_may_be_inf(a) for a in e.args)
    return False


_COMPARE = frozenset({"gt", "ge", "lt", "le", "eq", "ne", "and_", "or_", "not_"})


def qlib_spans(expr: Expr) -> Expr:
    """Give a qlib-dialect expression Qlib's per-instrument semantics and dtypes exactly.

    Qlib computes each instrument only over its own first..last row (``instruments/all.txt``):
    there are no rows before or after, so windows at a listing are short and nothing exists
    after a delisting. Over a dense panel this is: (1) the result is ``mask(x, listed)``;
    (2) ops that make values out of NaN (``_SPAN_MASKED``) are masked too, so a window
    straddling the listing sees NaN, i.e. nothing, before it; (3) ``IdxMax/IdxMin`` (whose
    answer is a position in the window) become ``ts_argmax_listed/ts_argmin_listed``, which
    clip the window at the listing; (4) inputs that may hold +-inf are wrapped in
    ``inf_to_nan`` before a rolling op (pandas rolling treats +-inf as missing); (5) Corr and
    Rsquare are masked where an input's rolling std is within 2e-5 of 0, as Qlib does.
    Everything else is window-local and reads NaN before the listing as Qlib reads no row.

    Dtypes as Qlib's: fields are read as float32 (``float32(x)``: its store is float32),
    elementwise ops whose array operands are all float32 compute in float32 (``f32=1``,
    numpy's rules: a constant is a weak scalar), and rolling ops give float64 (pandas);
    ``Ref`` keeps its input's dtype and ``Delta`` on float32 is a float32 subtraction.
    """
    memo: dict[str, tuple[Expr, str]] = {}

    def rewrite(e: Expr) -> tuple[Expr, str]:  # (node, "f32" | "f64" | "weak")
        if e.key in memo:
            return memo[e.key]
        if isinstance(e, Field):
            res = (Call("float32", (e,)), "f32")
        elif isinstance(e, Call):
            res = rewrite_call(e)
        else:
            res = (e, "weak")
        memo[e.key] = res
        return res

    def rewrite_call(e: Call) -> tuple[Expr, str]:
        pairs = [rewrite(a) for a in e.args]
        args = [a for a, _ in pairs]
        kinds = [k for _, k in pairs]
        params = dict(e.params)
        spec = e.spec
        strong = [k for k in kinds if k != "weak"]
        if e.op == "where":
            strong = [k for k in kinds[1:] if k != "weak"]
        is_f32 = bool(strong) and all(k == "f32" for k in strong)
        if spec.kind == "elementwise":
            kind = "f32" if is_f32 else "f64"
            if e.op in _COMPARE:
                kind = "weak"  # numpy bool: takes the other operand's dtype
            if "f32" in params:
                params["f32"] = int(is_f32)
            out: Expr = Call(e.op, args, params)
        elif e.op == "delay":
            out, kind = Call(e.op, args, params), kinds[0]
        elif e.op == "delta" and kinds[0] == "f32":  # x - x.shift(N) in float32
            shifted = Call("delay", (args[0],), {"d": params["d"]})
            sub = OPERATORS["sub"].resolve_params({"f32": 1}, "qlib")
            out, kind = Call("sub", (args[0], shifted), sub), "f32"
        else:
            if spec.kind == "ts" and e.op not in _SHIFTS:
                args = [call("inf_to_nan", a) if _may_be_inf(a) else a for a in args]
            if e.op in _ARGEXT:
                params.pop("nan_first", None)
                out = Call(_ARGEXT[e.op], (args[0], LISTED), params)
            else:
                out = Call(e.op, args, params)
            if e.op in _STD_TESTED:  # Qlib: NaN where np.isclose(rolling std, 0, atol=2e-5)
                for a in args[: spec.inputs]:
                    std = Call("ts_std", (a,), {"w": params["w"], "min_periods": 1, "ddof": 1})
                    out = Call("mask", (out, std), {"atol": _STD_ATOL})
            kind = "f64"
        if e.op in _SPAN_MASKED:
            out = Call("mask", (out, LISTED))
        return out, kind

    out, _ = rewrite(expr)
    if not (isinstance(out, Call) and out.op == "mask" and out.args[1] == LISTED):
        out = Call("mask", (out, LISTED))
    return out


def parse(text: str, dialect: str = "alpha101", *, fields: Iterable[str] = ()) -> Expr:
    """Parse formula ``text`` of ``dialect`` (``"alpha101"`` or ``"qlib"``) into an ``Expr``.

    ``fields`` names extra data columns (fundamentals) that may be written bare in the
    alpha101 dialect; any column can always be written ``$name``. Raises ``FormulaError``
    with the position of the problem. A qlib formula gets Qlib's per-instrument spans
    (``qlib_spans``): it reads the derived field ``listed`` besides its own fields.
    """
    d = get_dialect(dialect)
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be a string, got {type(text).__name__}")
    if not text.strip():
        raise FormulaError("empty formula", text, 0)
    ast = _Parser(text, d).parse()
    expr = _Builder(text, d, fields).build(ast)
    if d.name == "qlib":
        expr = qlib_spans(expr)
    return expr
