"""THE operator table: one row per canonical operator of the factor language.

Every other part reads this table instead of repeating it: the expression nodes take their
parameter defaults and lookback rules from it, the parser its arities and dialect spellings,
the engine the names under which kernels are registered (``engine.kernels.KERNELS``).
Adding an operator is one row here plus its kernel.

A row says:
- ``name``: the canonical name (= the kernel's key), ``kind``: elementwise | ts | cs | group |
  technical, ``inputs``: how many array arguments come first (group ops: the last one is the
  group label field);
- ``params``: scalar parameters after the arrays, with type, default, bounds and per-dialect
  defaults (the dialect *policies*, e.g. Qlib's ``min_periods=1``);
- ``lookback(params)``: rows of history the operator needs beyond its inputs' own;
- ``memory``: ``"window"`` (exact finite lookback), ``"decaying"`` (recursive filters such as
  EMA: the lookback is the warm-up after which older rows weigh < 1e-6) or ``"cumulative"``
  (OBV: the value depends on all history);
- ``spellings``: names per dialect (``"alpha101"``, ``"qlib"``, ``"python"``) and ``doc``.

Kernel conventions (see /work/contracts.md): inputs are float64 (T, N) arrays, time on axis 0,
NaN inside a window is skipped and ``min_periods`` counts valid values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "COMMUTATIVE",
    "ParamError",
    "DIALECTS",
    "KINDS",
    "OPERATORS",
    "Operator",
    "Param",
    "decay_lookback",
    "get",
]

KINDS = ("elementwise", "ts", "cs", "group", "technical")
DIALECTS = ("alpha101", "qlib", "python")

#: Operators whose array operands may be reordered without changing the result.
COMMUTATIVE = frozenset({"add", "mul", "greater", "less", "eq", "ne", "and_", "or_"})


class ParamError(ValueError):
    """A parameter value is missing, unknown or out of range; ``param`` names it."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Param:
    """A scalar parameter of an operator.

    ``default`` is a value, ``None`` (required), or the name of an earlier parameter whose
    value is the default (``min_periods`` defaults to ``"w"``). ``dialect_defaults`` overrides
    the default for a dialect (a policy, e.g. ``{"qlib": 1}``). ``low``/``high`` are inclusive
    bounds; ``high`` may also name an earlier parameter (``min_periods <= w``).
    ``open_low`` makes ``low`` exclusive (``alpha`` in (0, 1]).
    """

    name: str
    type: type  # int or float
    default: Any = None
    low: float | str | None = None
    high: float | str | None = None
    open_low: bool = False
    dialect_defaults: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is None

    def default_for(self, dialect: str, values: Mapping[str, Any]) -> Any:
        """The default of this parameter in ``dialect`` given the earlier ``values``."""
        d = self.dialect_defaults.get(dialect, self.default)
        if isinstance(d, str):
            d = values[d]
        return d

    def check(self, value: Any, values: Mapping[str, Any], op: str) -> Any:
        """Validate and normalise ``value``; raise ParamError with a readable message."""
        try:
            return self._check(value, values, op)
        except ValueError as exc:
            raise ParamError(str(exc), self.name) from None

    def _check(self, value: Any, values: Mapping[str, Any], op: str) -> Any:
        what = f"parameter '{self.name}' of {op}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{what} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{what} must be finite, got {value!r}")
        if self.type is int:
            if value != int(value):
                raise ValueError(f"{what} must be an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value) + 0.0  # -0.0 -> 0.0
        low = values.get(self.low) if isinstance(self.low, str) else self.low
        if low is not None and (value <= low if self.open_low else value < low):
            rel = ">" if self.open_low else ">="
            raise ValueError(f"{what} must be {rel} {_bound(self.low, low)}, got {value!r}")
        high = values.get(self.high) if isinstance(self.high, str) else self.high
        if high is not None and value > high:
            raise ValueError(f"{what} must be <= {_bound(self.high, high)}, got {value!r}")
        return value


def _bound(spec: float | str, value: float) -> str:
    return f"{spec} ({value:g})" if isinstance(spec, str) else f"{value:g}"


LookbackRule = Callable[[Mapping[str, Any]], int]


@dataclass(frozen=True)
class Operator:
    """One canonical operator (see the module docstring for the meaning of each field)."""

    name: str
    kind: str
    inputs: int
    params: tuple[Param, ...] = ()
    lookback_rule: LookbackRule | None = None
    spellings: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    doc: str = ""
    memory: str = "window"
    infix: str | None = None  # symbol used when printing (add -> "+")

    def lookback(self, params: Mapping[str, Any]) -> int:
        """Rows of history this operator needs beyond its inputs' own lookbacks."""
        return 0 if self.lookback_rule is None else int(self.lookback_rule(params))

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def commutative(self) -> bool:
        return self.name in COMMUTATIVE

    def resolve_params(
        self,
        given: Mapping[str, Any],
        dialect: str = "python",
    ) -> tuple[tuple[str, Any], ...]:
        """Complete ``given`` with the dialect's defaults, validate, and order as the table.

        Raises ValueError naming the operator and parameter on a missing, unknown or
        out-of-range value.
        """
        unknown = set(given) - set(self.param_names)
        if unknown:
            names = ", ".join(sorted(unknown))
            raise ParamError(
                f"{self.name} has no parameter {names}; it takes {self.signature}",
                sorted(unknown)[0],
            )
        values: dict[str, Any] = {}
        for p in self.params:
            if p.name in given:
                raw = given[p.name]
            else:
                raw = p.default_for(dialect, values)
                if raw is None:
                    raise ParamError(
                        f"{self.name} needs parameter '{p.name}': {self.signature}", p.name
                    )
            values[p.name] = p.check(raw, values, self.name)
        return tuple(values.items())

    @property
    def signature(self) -> str:
        """A human-readable signature, e.g. ``ts_mean(x, w, min_periods=w)``."""
        arrays = [f"x{i + 1}" if self.inputs > 1 else "x" for i in range(self.inputs)]
        if self.kind == "group":
            arrays[-1] = "group"
        ps = [p.name if p.required else f"{p.name}={p.default}" for p in self.params]
        return f"{self.name}({', '.join(arrays + ps)})"


# ---------------------------------------------------------------- parameter helpers


def _window(name: str = "w", doc: str = "window length in rows") -> Param:
    return Param(name, int, low=1, doc=doc)


def _min_periods(window: str = "w") -> Param:
    # Policy: alpha101/python need a full window of valid values; Qlib's Rolling ops
    # (qlib/data/ops.py: series.rolling(N, min_periods=1)) emit as soon as one value is valid.
    return Param(
        "min_periods",
        int,
        default=window,
        low=1,
        high=window,
        dialect_defaults={"qlib": 1},
        doc="valid values needed in the window (alpha101: = window; qlib: 1)",
    )


def _ieee() -> Param:
    # Policy: alpha101/python map a result of +-inf to NaN (x/0, log 0); Qlib computes with
    # numpy on pandas Series and keeps IEEE +-inf (and numpy's own NaN rules, e.g. nan**0 = 1).
    return Param(
        "ieee",
        int,
        0,
        low=0,
        high=1,
        dialect_defaults={"qlib": 1},
        doc="1: keep IEEE +-inf and numpy's NaN rules (qlib); 0: +-inf -> NaN (alpha101)",
    )


def _f32() -> Param:
    # Not a dialect default: the qlib dialect sets it on the nodes Qlib computes in float32
    # (numpy on float32 Series read from its float32 store, before any rolling op).
    return Param(
        "f32",
        int,
        0,
        low=0,
        high=1,
        doc="1: compute in float32 like numpy on float32 arrays (operands rounded first)",
    )


def _nan_false() -> Param:
    # Policy: alpha101/python give NaN when an operand is NaN; Qlib's comparisons are numpy's
    # (np.greater(NaN, x) is False), so a NaN operand compares False.
    return Param(
        "nan_false",
        int,
        0,
        low=0,
        high=1,
        dialect_defaults={"qlib": 1},
        doc="1: a NaN operand reads as False -> 0.0 (qlib, numpy); 0: NaN -> NaN (alpha101)",
    )


def _nan_first() -> Param:
    # Policy: Qlib's IdxMax/IdxMin is rolling(N).apply(lambda x: x.argmax() + 1, raw=True):
    # np.argmax over a window holding NaN returns the first NaN's position.
    return Param(
        "nan_first",
        int,
        0,
        low=0,
        high=1,
        dialect_defaults={"qlib": 1},
        doc="1: the first NaN in the window is the answer (numpy argmax, qlib); 0: skip NaN",
    )


def decay_lookback(alpha: float) -> int:
    """Warm-up rows of a recursive filter with smoothing ``alpha``: (1-alpha)**k < 1e-6.

    Same rule as Qlib's ``Rolling.get_longest_back_rolling`` for EMA with 0 < N < 1.
    """
    if alpha >= 1.0:
        return 0
    return int(math.ceil(math.log(1e-6) / math.log(1.0 - alpha)))


def _w1(p: Mapping[str, Any]) -> int:
    return p["w"] - 1


def _sp(alpha101: tuple[str, ...] = (), qlib: tuple[str, ...] = ()) -> dict[str, tuple]:
    return {"alpha101": alpha101, "qlib": qlib}


# ---------------------------------------------------------------- the table

_ROWS: list[Operator] = []


def _row(
    name: str,
    kind: str,
    inputs: int,
    params: tuple[Param, ...] = (),
    lookback_rule: LookbackRule | None = None,
    spellings: Mapping[str, tuple[str, ...]] | None = None,
    doc: str = "",
    *,
    memory: str = "window",
    infix: str | None = None,
) -> None:
    """Add a row; the "python" spelling of every operator is its canonical name."""
    sp = {**(spellings or {}), "python": (name,)}
    _ROWS.append(
        Operator(
            name, kind, inputs, params, lookback_rule, MappingProxyType(sp), doc, memory, infix
        )
    )


E, TS, CS, G, TECH = KINDS

# Elementwise. Policy ``ieee`` (qlib: 1): ``ieee=0`` (alpha101/python) gives NaN for division
# by zero, log/sqrt of invalid input (never inf); ``ieee=1`` keeps numpy's IEEE results.
# ``f32=1`` computes in float32 (set by the qlib dialect where Qlib's operands are float32).
_I = (_ieee(), _f32())
_row("add", E, 2, _I, spellings=_sp(("add",), ("Add",)), infix="+", doc="a + b")
_row("sub", E, 2, _I, spellings=_sp(("sub",), ("Sub",)), infix="-", doc="a - b")
_row("mul", E, 2, _I, spellings=_sp(("mul",), ("Mul",)), infix="*", doc="a * b")
_row(
    "div",
    E,
    2,
    _I,
    spellings=_sp(("div",), ("Div",)),
    infix="/",
    doc="a / b; x/0 -> NaN (ieee: inf)",
)
_row(
    "pow",
    E,
    2,
    _I,
    spellings=_sp(("pow", "power"), ("Power",)),
    infix="**",
    doc="a ** b (the paper's x^y); invalid -> NaN (ieee: numpy's np.power, nan**0 = 1)",
)
_row("neg", E, 1, _I, spellings=_sp(("neg",)), doc="-a")
_row("abs", E, 1, _I, spellings=_sp(("abs",), ("Abs",)), doc="|a|")
_row(
    "log",
    E,
    1,
    _I,
    spellings=_sp(("log",), ("Log",)),
    doc="natural log; a <= 0 -> NaN (ieee: log 0 = -inf)",
)
_row("sign", E, 1, spellings=_sp(("sign",), ("Sign",)), doc="-1, 0 or 1 (NaN stays NaN)")
_row("sqrt", E, 1, _I, spellings=_sp(("sqrt",)), doc="square root; a < 0 -> NaN")
_row(
    "signedpower",
    E,
    2,
    spellings=_sp(("signedpower",)),
    doc="sign(a) * |a| ** b (paper's SignedPower)",
)
_row(
    "greater",
    E,
    2,
    _I,
    spellings=_sp(("greater",), ("Greater",)),
    doc="elementwise max; NaN if either is NaN (np.maximum)",
)
_row(
    "less",
    E,
    2,
    _I,
    spellings=_sp(("less",), ("Less",)),
    doc="elementwise min; NaN if either is NaN (np.minimum)",
)
_row(
    "where",
    E,
    3,
    _I,
    spellings=_sp(("where",), ("If",)),
    doc="cond ? a : b; cond NaN -> NaN, cond != 0 -> a (ieee: np.where, NaN cond -> a)",
)
_row(
    "clip",
    E,
    1,
    (Param("lo", float), Param("hi", float, low="lo")),
    spellings=_sp(("clip",)),
    doc="a clipped to [lo, hi]",
)
for _name, _sym, _q in (
    ("gt", ">", "Gt"),
    ("ge", ">=", "Ge"),
    ("lt", "<", "Lt"),
    ("le", "<=", "Le"),
    ("eq", "==", "Eq"),
    ("ne", "!=", "Ne"),
):
    _row(
        _name,
        E,
        2,
        (_nan_false(), _f32()),
        spellings=_sp((_name,), (_q,)),
        infix=_sym,
        doc=f"a {_sym} b -> 1.0/0.0; NaN if either is NaN (nan_false: 0.0, numpy)",
    )
_row(
    "and_",
    E,
    2,
    (_nan_false(),),
    spellings=_sp(("and",), ("And",)),
    infix="&&",
    doc="logical and (nonzero = true) -> 1.0/0.0; NaN propagates (nan_false: NaN is false)",
)
_row(
    "or_",
    E,
    2,
    (_nan_false(),),
    spellings=_sp(("or",), ("Or",)),
    infix="||",
    doc="logical or (nonzero = true) -> 1.0/0.0; NaN propagates (nan_false: NaN is false)",
)
_row(
    "not_",
    E,
    1,
    (_nan_false(),),
    spellings=_sp(("not",), ("Not",)),
    doc="logical not -> 1.0/0.0; NaN stays NaN (nan_false: NaN is false, not NaN -> 1.0)",
)
_row(
    "mask",
    E,
    2,
    (Param("atol", float, 0.0, low=0.0, doc="m counts as 0 where |m| <= atol"),),
    doc="x where m is a number with |m| > atol (default: nonzero), else NaN. The qlib "
    "dialect masks with the 'listed' field (Qlib computes an instrument only over its own "
    "first..last row) and Corr/Rsquare with their rolling std (atol=2e-5, Qlib's isclose)",
)
_row(
    "float32",
    E,
    1,
    doc="x rounded to float32 (what Qlib's binary store keeps; the qlib dialect reads fields so)",
)
_row(
    "inf_to_nan",
    E,
    1,
    doc="x with +-inf replaced by NaN (what pandas rolling windows do to their input)",
)

# Time series: windows count calendar rows of the panel; NaN inside a window is skipped.
_row(
    "delay",
    TS,
    1,
    (Param("d", int, low=0, doc="rows back"),),
    lambda p: p["d"],
    _sp(("delay",), ("Ref",)),
    "x of d rows ago (calendar rows; a NaN row stays NaN). Qlib Ref(x, N) = shift(N)",
)
_row(
    "delta",
    TS,
    1,
    (Param("d", int, low=1, doc="rows back"),),
    lambda p: p["d"],
    _sp(("delta",), ("Delta",)),
    "x - delay(x, d)",
)
for _name, _a, _q, _doc in (
    ("ts_sum", ("sum", "ts_sum"), ("Sum",), "rolling sum of valid values"),
    ("ts_mean", ("ts_mean", "mean"), ("Mean",), "rolling mean of valid values"),
    ("ts_min", ("ts_min",), ("Min",), "rolling minimum"),
    ("ts_max", ("ts_max",), ("Max",), "rolling maximum"),
    ("ts_product", ("product", "ts_product"), (), "rolling product of valid values"),
    ("ts_median", ("ts_median", "median"), ("Med",), "rolling median"),
    ("ts_skew", ("ts_skew", "skewness"), ("Skew",), "rolling skewness (pandas, bias-corrected)"),
    ("ts_kurt", ("ts_kurt", "kurtosis"), ("Kurt",), "rolling excess kurtosis (pandas)"),
    (
        "ts_argmax",
        ("ts_argmax",),
        ("IdxMax",),
        "1..w position of the max counted from the oldest row (Qlib IdxMax); ties: first",
    ),
    (
        "ts_argmin",
        ("ts_argmin",),
        ("IdxMin",),
        "1..w position of the min counted from the oldest row (Qlib IdxMin); ties: first",
    ),
    (
        "ts_rank",
        ("ts_rank",),
        ("Rank",),
        "percentile rank of the current value in the window, average ties "
        "(pandas rolling rank pct=True); NaN if the current value is NaN",
    ),
    ("ts_mad", ("ts_mad",), ("Mad",), "mean absolute deviation around the window mean"),
    (
        "decay_linear",
        ("decay_linear", "wma"),
        ("WMA",),
        "weighted mean, weights 1..w newest heaviest, normalised over valid values",
    ),
    ("ts_slope", ("ts_slope", "slope"), ("Slope",), "OLS slope of x on t=1..w (Qlib Slope)"),
    ("ts_rsquare", ("ts_rsquare", "rsquare"), ("Rsquare",), "R^2 of x on t=1..w (Qlib Rsquare)"),
    (
        "ts_resi",
        ("ts_resi", "resi"),
        ("Resi",),
        "residual of the current row of x regressed on t=1..w (Qlib Resi)",
    ),
):
    params = (_window(), _min_periods())
    if _name in ("ts_argmax", "ts_argmin"):
        params += (_nan_first(),)
    _row(_name, TS, 1, params, _w1, _sp(_a, _q), _doc)
for _name, _which in (("ts_argmax_listed", "max"), ("ts_argmin_listed", "min")):
    _row(
        _name,
        TS,
        2,
        (_window(), _min_periods()),
        _w1,
        {},
        f"Qlib's IdxM{_which[1:]}(x, N) exactly: np.arg{_which} + 1 over the window clipped to "
        "the rows where the second input (the 'listed' field) is not NaN -- Qlib's series of "
        "an instrument starts at its first row -- so a NaN in the window is the answer; "
        "min_periods counts valid x",
    )
_row(
    "ts_count",
    TS,
    1,
    (_window(),),
    _w1,
    _sp(("ts_count", "count"), ("Count",)),
    "number of valid values in the window",
)
for _name, _a, _q, _doc in (
    ("ts_std", ("stddev", "ts_std", "std"), ("Std",), "rolling standard deviation"),
    ("ts_var", ("ts_var", "variance", "var"), ("Var",), "rolling variance"),
):
    _row(
        _name,
        TS,
        1,
        (_window(), _min_periods(), Param("ddof", int, 1, low=0, doc="delta degrees of freedom")),
        _w1,
        _sp(_a, _q),
        _doc + " (ddof=1 as pandas and Qlib)",
    )
_row(
    "ts_quantile",
    TS,
    1,
    (
        _window(),
        Param("q", float, low=0.0, high=1.0, doc="quantile in [0, 1]"),
        _min_periods(),
    ),
    _w1,
    _sp(("ts_quantile", "quantile"), ("Quantile",)),
    "rolling quantile, linear interpolation (pandas)",
)
_row(
    "ts_corr",
    TS,
    2,
    (_window(), _min_periods()),
    _w1,
    _sp(("correlation", "ts_corr", "corr"), ("Corr",)),
    "rolling Pearson correlation over pairwise-complete rows; NaN where either std is ~0",
)
_row(
    "ts_cov",
    TS,
    2,
    (_window(), _min_periods(), Param("ddof", int, 1, low=0)),
    _w1,
    _sp(("covariance", "ts_cov", "cov"), ("Cov",)),
    "rolling covariance over pairwise-complete rows (ddof=1)",
)
_row(
    "ema",
    TS,
    1,
    (
        Param("alpha", float, low=0.0, high=1.0, open_low=True, doc="smoothing in (0, 1]"),
        # Qlib EMA = pandas ewm(span=N, min_periods=1).mean(): adjust=True, ignore_na=False.
        Param("adjust", int, 0, low=0, high=1, dialect_defaults={"qlib": 1}),
        Param("ignore_na", int, 1, low=0, high=1, dialect_defaults={"qlib": 0}),
    ),
    lambda p: decay_lookback(p["alpha"]),
    _sp(("ema",), ("EMA",)),
    "exponential moving average (pandas ewm(alpha).mean(); adjust/ignore_na as pandas, 0/1); "
    "Qlib EMA(x, N) = ewm(span=N): alpha = 2/(N+1), adjust=1, ignore_na=0",
    memory="decaying",
)
_row(
    "sma",
    TS,
    1,
    (Param("n", int, low=1), Param("m", int, low=1, high="n")),
    lambda p: decay_lookback(p["m"] / p["n"]),
    _sp(("sma",)),
    "Chinese SMA: y = (m*x + (n-m)*y_prev) / n",
    memory="decaying",
)

# Cross-section: one row (date) at a time over all symbols.
_row("rank", CS, 1, spellings=_sp(("rank",)), doc="percentile rank, average ties")
_row("zscore", CS, 1, spellings=_sp(("zscore",)), doc="(x - mean) / std (ddof=1)")
_row("demean", CS, 1, spellings=_sp(("demean",)), doc="x - cross-sectional mean")
_row(
    "scale",
    CS,
    1,
    (Param("a", float, 1.0, doc="target sum of |x|"),),
    spellings=_sp(("scale",)),
    doc="x rescaled so that sum(|x|) = a",
)
_row(
    "winsorize",
    CS,
    1,
    (Param("k", float, 3.0, low=0.0, open_low=True),),
    spellings=_sp(("winsorize",)),
    doc="clip at mean +- k*std per row",
)
_row(
    "quantile_bucket",
    CS,
    1,
    (Param("n", int, low=1),),
    spellings=_sp(("quantile_bucket", "bucket")),
    doc="bucket 1..n by cross-sectional rank",
)

# Group: per row and group label (the last array is an int64 label field, -1 = none).
for _name, _a, _doc in (
    ("group_neutralize", ("indneutralize", "group_neutralize"), "x - mean of x in its group"),
    ("group_rank", ("group_rank",), "percentile rank within the group"),
    ("group_mean", ("group_mean",), "mean of x over the group"),
    ("group_zscore", ("group_zscore",), "z-score within the group"),
):
    _row(_name, G, 2, spellings=_sp(_a), doc=_doc)


# Technical indicators (arrays first, then ints).
def _n(default: int) -> Param:
    return Param("n", int, default, low=1)


_row(
    "rsi",
    TECH,
    1,
    (_n(14),),
    lambda p: 1 + decay_lookback(1.0 / p["n"]),
    _sp(("rsi",)),
    "Wilder's RSI of close",
    memory="decaying",
)
_MACD = (Param("fast", int, 12, low=1), Param("slow", int, 26, low=1), Param("signal", int, 9, 1))


def _macd_lookback(p: Mapping[str, Any]) -> int:
    slow = decay_lookback(2.0 / (max(p["fast"], p["slow"]) + 1))
    return slow + decay_lookback(2.0 / (p["signal"] + 1))


for _name, _doc in (
    ("macd", "EMA(fast) - EMA(slow) of close"),
    ("macd_signal", "EMA(signal) of macd"),
    ("macd_hist", "macd - macd_signal"),
):
    _row(_name, TECH, 1, _MACD, _macd_lookback, _sp((_name,)), _doc, memory="decaying")
_row(
    "atr",
    TECH,
    3,
    (_n(14),),
    lambda p: 1 + decay_lookback(1.0 / p["n"]),
    _sp(("atr",)),
    "Wilder's average true range of (high, low, close)",
    memory="decaying",
)
_row(
    "bbands_pctb",
    TECH,
    1,
    (_n(20), Param("k", float, 2.0, low=0.0, open_low=True)),
    lambda p: p["n"] - 1,
    _sp(("bbands_pctb",)),
    "Bollinger %b of close: (close - lower) / (upper - lower)",
)
_row(
    "stoch_k",
    TECH,
    3,
    (_n(14),),
    lambda p: p["n"] - 1,
    _sp(("stoch_k",)),
    "stochastic %K of (high, low, close)",
)
_row(
    "stoch_d",
    TECH,
    3,
    (_n(14), Param("m", int, 3, low=1)),
    lambda p: p["n"] - 1 + p["m"] - 1,
    _sp(("stoch_d",)),
    "stochastic %D: m-row mean of %K",
)
_row(
    "willr",
    TECH,
    3,
    (_n(14),),
    lambda p: p["n"] - 1,
    _sp(("willr",)),
    "Williams %R of (high, low, close)",
)
_row(
    "cci",
    TECH,
    3,
    (_n(20),),
    lambda p: p["n"] - 1,
    _sp(("cci",)),
    "commodity channel index of (high, low, close)",
)
_row(
    "obv",
    TECH,
    2,
    (),
    lambda p: 1,
    _sp(("obv",)),
    "on-balance volume of (close, volume); cumulative: depends on all history",
    memory="cumulative",
)
_row(
    "mfi",
    TECH,
    4,
    (_n(14),),
    lambda p: p["n"],
    _sp(("mfi",)),
    "money flow index of (high, low, close, volume)",
)

#: name -> Operator, in table order.
OPERATORS: Mapping[str, Operator] = MappingProxyType({op.name: op for op in _ROWS})
if len(OPERATORS) != len(_ROWS):  # pragma: no cover - guards the table itself
    raise RuntimeError("duplicate operator name in the table")


def get(name: str) -> Operator:
    """The operator called ``name``; KeyError with the known names otherwise."""
    try:
        return OPERATORS[name]
    except KeyError:
        raise KeyError(f"unknown operator {name!r}") from None
