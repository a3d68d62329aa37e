"""The two formula dialects: their spellings, operator precedence and default policies.

``alpha101`` — the notation of Kakushadze, "101 Formulaic Alphas" (2016), plus every
canonical operator name (so ``repr(expr)`` always parses back):

- function names are case-insensitive (the paper writes ``Ts_Rank``, ``ts_rank``, ``Log``);
- ``x ^ y`` and ``x ** y`` are power; ``SignedPower(x, y)`` is explicit;
- ``c ? a : b`` -> ``where``; ``||`` ``&&`` (also ``|`` ``&``), ``!``/``~`` not,
  ``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=``; C-like precedence (``?:`` lowest, then ``||``,
  ``&&``, equality, comparison, ``+ -``, ``* /``, unary ``- ! ~``, ``^``);
- windows may be fractional (``correlation(x, y, 9.9)``): every integer parameter is
  *floored*, as the paper says; ``min_periods`` defaults to the window (a full window of
  valid values, the policy recorded in ``factors.operators``);
- ``sum`` -> ts_sum, ``product`` -> ts_product, ``stddev`` -> ts_std (ddof=1),
  ``correlation``/``covariance`` -> ts_corr/ts_cov;
- ``min(x, d)`` / ``max(x, d)`` with an integral number literal ``d >= 1`` are ts_min/ts_max
  over ``d`` rows; with any other second argument they are elementwise ``less``/``greater``
  (the paper uses both forms);
- ``adv{d}`` -> ``ts_mean(amount, d)`` (average daily dollar volume, amount = vwap * volume);
- ``IndNeutralize(x, IndClass.sector|industry|subindustry)`` -> ``group_neutralize(x, g)``
  with the group field of that name. ``engine.evaluate`` maps a level the panel lacks to one
  it has (see ``engine.evaluate.resolve_group``);
- fields: ``open high low close volume vwap amount returns cap``, names passed to
  ``parse(..., fields=...)``, or any ``$name``.

``qlib`` — Qlib's expression notation (qlib/data/ops.py, parsed by Qlib with Python's eval
after ``$close`` -> ``Feature("close")``), so Python's operator precedence applies
(comparisons lowest, then ``|``, ``&``, ``+ -``, ``* /``, unary, ``**``); function names
are case-sensitive; fields are ``$name``. Policies read from Qlib's source: rolling ops use
``min_periods=1``; ``Std``/``Var`` use ddof=1; ``Ref(x, N)`` is a plain row shift (N < 0
would read the future and N = 0 means "first row": both rejected); ``EMA(x, N)`` is
``ewm(span=N)`` i.e. alpha = 2/(N+1), with 0 < N < 1 meaning alpha = N; a window of 0
(Qlib's "expanding") is rejected; ``Rank`` is the rolling percentile rank.

Verified in microsoft/qlib ``qlib/data/ops.py`` (commit d5379c5): ``Rolling._load_internal``
(``series.rolling(N, min_periods=1)``, N=0 expanding, 0<N<1 ewm), ``Ref`` (``shift(N)``),
``Rank`` (``rolling(N, min_periods=1).rank(pct=True)``), ``IdxMax``/``IdxMin``
(``argmax()+1`` over the window), ``Quantile``, ``Mad``, ``Count``, ``Delta``
(``x - x.shift(N)``), ``Corr`` (NaN where either rolling std is close to 0, ``atol=2e-5``),
``Rsquare`` (same test on x), ``WMA``, ``EMA`` (``ewm(span=N, min_periods=1)``),
``Greater``/``Less`` (``np.maximum``/``np.minimum``), ``If`` (``np.where``), and
``qlib/utils/__init__.py`` ``parse_field`` (``$x`` -> ``Feature``, then Python eval).

Qlib's exact semantics (what makes Alpha158 equal Qlib's own output, measured with
``scripts/compare_qlib.py`` against pyqlib 0.9.7) are policies -- parameters whose qlib
default differs, in ``factors.operators`` -- plus one rewrite, ``factors.parser.qlib_spans``:

- numpy's rules: ``ieee=1`` keeps +-inf (x/0, log 0) and numpy's NaN rules (``nan ** 0 = 1``,
  ``If`` with a NaN condition takes the first branch); ``nan_false=1``: a comparison or logic
  op with a NaN operand is False (0.0); ``nan_first=1``: ``IdxMax``/``IdxMin`` land on the
  first NaN of the window (``np.argmax``);
- Qlib's instrument spans: Qlib computes a symbol only over its own first..last row, so the
  parser masks the result (and every op that makes values out of NaN) with the derived field
  ``listed`` (``mask(x, listed)``), and ``IdxMax``/``IdxMin`` become ``ts_argmax_listed``/
  ``ts_argmin_listed`` (the window clipped at the listing); with ``min_periods=1`` every other
  rolling op reads the NaN rows before a listing as Qlib reads no row at all;
- pandas rolling reads +-inf as NaN: a rolling op's input that may hold +-inf goes through
  ``inf_to_nan``; ``Corr``/``Rsquare`` are also NaN where an input's rolling std is within
  2e-5 of 0 (``mask(.., std, atol=2e-5)``, Qlib's absolute ``np.isclose`` test);
- float32: fields are read as float32 (Qlib's store), and elementwise ops on float32 operands
  compute in float32 (``f32=1``) until a rolling op gives float64, as numpy/pandas do in Qlib.

The alpha101 and python dialects keep the contract's rules (NaN in -> NaN out, never inf, no
spans, float64). Left as they were: ``WMA`` is the weighted mean (Qlib's ``nanmean(w * x)``
with normalised ``w`` divides once more by the window length); ``Skew``/``Kurt`` accept any
window (Qlib needs >= 3 / >= 5); ``Slope``/``Rsquare``/``Resi`` are the two-pass least squares
(Qlib's Cython running sums drift in the last bits).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from factors.operators import OPERATORS

__all__ = ["ALPHA101", "DIALECTS", "QLIB", "Binary", "Dialect", "get_dialect"]

Assoc = Literal["left", "right", "none"]


@dataclass(frozen=True)
class Binary:
    """An infix operator of a dialect: binding power, associativity, canonical op."""

    bp: int
    op: str
    assoc: Assoc = "left"


@dataclass(frozen=True)
class Dialect:
    """Everything the parser needs to know about one notation."""

    name: str
    case_sensitive: bool
    functions: MappingProxyType  # spelling (lower-cased if not case_sensitive) -> canonical op
    special: MappingProxyType  # spelling -> name of a special rule in the parser
    binary: MappingProxyType  # token text -> Binary
    prefix: MappingProxyType  # token text -> canonical op
    prefix_bp: int
    ternary_bp: int | None  # binding power of `c ? a : b`, None if not in the dialect
    bare_fields: bool  # whether `close` (without `$`) names a field
    floor_windows: bool  # fractional integer parameters are floored (else an error)

    def normalise(self, name: str) -> str:
        return name if self.case_sensitive else name.lower()

    def lookup(self, name: str) -> str | None:
        """Canonical op or special rule for function ``name``, None if unknown."""
        key = self.normalise(name)
        return self.special.get(key) or self.functions.get(key)

    @property
    def names(self) -> list[str]:
        """All function spellings of the dialect (for 'did you mean' suggestions)."""
        return sorted(set(self.functions) | set(self.special))


def _functions(dialect: str, with_canonical: bool, lower: bool) -> MappingProxyType:
    out: dict[str, str] = {}
    for op in OPERATORS.values():
        names = list(op.spellings.get(dialect, ()))
        if with_canonical:
            names.append(op.name)
        for n in names:
            out[n.lower() if lower else n] = op.name
    return MappingProxyType(out)


_A101_BINARY = {
    "||": Binary(2, "or_"),
    "|": Binary(2, "or_"),
    "&&": Binary(3, "and_"),
    "&": Binary(3, "and_"),
    "==": Binary(4, "eq", "none"),
    "!=": Binary(4, "ne", "none"),
    "<": Binary(5, "lt", "none"),
    "<=": Binary(5, "le", "none"),
    ">": Binary(5, "gt", "none"),
    ">=": Binary(5, "ge", "none"),
    "+": Binary(6, "add"),
    "-": Binary(6, "sub"),
    "*": Binary(7, "mul"),
    "/": Binary(7, "div"),
    "^": Binary(9, "pow", "right"),
    "**": Binary(9, "pow", "right"),
}

ALPHA101 = Dialect(
    name="alpha101",
    case_sensitive=False,
    functions=_functions("alpha101", with_canonical=True, lower=True),
    special=MappingProxyType({"min": "min", "max": "max", "indneutralize": "indneutralize"}),
    binary=MappingProxyType(_A101_BINARY),
    prefix=MappingProxyType({"-": "neg", "+": "pos", "!": "not_", "~": "not_"}),
    prefix_bp=8,
    ternary_bp=1,
    bare_fields=True,
    floor_windows=True,
)

_QLIB_BINARY = {
    "<": Binary(1, "lt", "none"),
    "<=": Binary(1, "le", "none"),
    ">": Binary(1, "gt", "none"),
    ">=": Binary(1, "ge", "none"),
    "==": Binary(1, "eq", "none"),
    "!=": Binary(1, "ne", "none"),
    "|": Binary(2, "or_"),
    "&": Binary(3, "and_"),
    "+": Binary(4, "add"),
    "-": Binary(4, "sub"),
    "*": Binary(5, "mul"),
    "/": Binary(5, "div"),
    "**": Binary(7, "pow", "right"),
}

QLIB = Dialect(
    name="qlib",
    case_sensitive=True,
    functions=_functions("qlib", with_canonical=False, lower=False),
    special=MappingProxyType({"EMA": "qlib_ema"}),
    binary=MappingProxyType(_QLIB_BINARY),
    prefix=MappingProxyType({"-": "neg", "+": "pos", "~": "not_"}),
    prefix_bp=6,
    ternary_bp=None,
    bare_fields=False,
    floor_windows=False,
)

DIALECTS = MappingProxyType({"alpha101": ALPHA101, "qlib": QLIB})


def get_dialect(name: str) -> Dialect:
    """The dialect called ``name`` (``"alpha101"`` or ``"qlib"``)."""
    try:
        return DIALECTS[name]
    except KeyError:
        known = ", ".join(DIALECTS)
        raise ValueError(f"unknown dialect {name!r}; known: {known}") from None
