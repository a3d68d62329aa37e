"""Elementwise kernels: arithmetic, math functions, comparisons and logic, cell by cell.

The arithmetic is plain numpy ufuncs (as fast as a numba loop); the policy passes over their
results (+-inf to NaN, ``mask``) are small numba loops that work in place, where numpy's
boolean-index assignment costs a temporary mask and a slow scatter. One NaN/inf policy is
applied the same way by every function here:

* NaN in -> NaN out (for every operand of every op, including comparisons and logic).
* No infinity ever leaves this module (unless ``ieee=1``): a result of +-inf is mapped to
  NaN. So division by zero gives NaN (not inf), ``log`` of 0 gives NaN, ``pow(0, -1)`` NaN.
* Domain errors give NaN: ``log`` of a value <= 0, ``sqrt`` of a value < 0, a negative base
  to a fractional power.
* Comparisons (gt ge lt le eq ne) give 1.0 / 0.0; logic ops (and_ or_ not_) read nonzero as
  true and give 1.0 / 0.0.

Two policies (parameters with per-dialect defaults in ``factors.operators``) switch to Qlib's
numpy semantics for the qlib dialect:

* ``ieee=1`` (arithmetic, ``log``, ``sqrt``, ``greater``/``less``, ``where``): the plain numpy
  result, IEEE +-inf kept (x/0 = +-inf, log 0 = -inf) and numpy's own NaN rules
  (``nan ** 0 == 1``; ``where`` takes a NaN condition as true, like ``np.where``).
* ``f32=1`` (arithmetic, comparisons): operands as float32 and numpy's float32 arithmetic,
  where Qlib computes on float32 Series (set by the qlib dialect, see ``factors.parser``).
* ``nan_false=1`` (comparisons and logic): a NaN operand reads as False, like numpy's
  ``np.greater(nan, 1) == False``; the result is never NaN.

``mask(x, m)`` (x where m is not NaN) and ``inf_to_nan(x)`` are the two helpers the qlib
dialect adds around formulas (see ``factors.parser``).

Operands are (T, N) float arrays of one shape, or plain Python/numpy scalars (a constant in a
formula); at least the result is always a new float64 array. This module owns only these
cell-wise ops; windows, cross-sections and groups live in their own modules.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np
from numba import types
from numba.extending import overload

from engine.kernels._jit import njit
from engine.kernels._validate import as_panel_array

__all__ = ["KERNELS", "warmup"]

Operand = np.ndarray | float


def _operand(x: object, name: str) -> Operand:
    """A scalar stays a float; anything else must be a 2-D panel array."""
    if isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)):
        return float(x)
    return as_panel_array(x, name)


def _operands(**named: object) -> list[Operand]:
    """Validate each operand and check that all array operands share one shape."""
    values = [_operand(x, name) for name, x in named.items()]
    shapes = {
        name: v.shape for name, v in zip(named, values, strict=True) if isinstance(v, np.ndarray)
    }
    if not shapes:
        raise ValueError(f"{', '.join(named)}: at least one operand must be a 2-D array")
    if len(set(shapes.values())) > 1:
        desc = ", ".join(f"{n}={s}" for n, s in shapes.items())
        raise ValueError(f"operands must have the same shape, got {desc}")
    return values


def _to32(values: list[Operand], f32: int) -> list[Operand]:
    """With ``f32``: array operands as float32 (Python floats stay weak scalars, so numpy
    rounds them to float32 too: numpy's own float32 arithmetic, as Qlib's on float32 Series)."""
    if not f32:
        return values
    return [v.astype(np.float32) if isinstance(v, np.ndarray) else v for v in values]


def _shape(*values: Operand) -> tuple[int, ...]:
    return next(v.shape for v in values if isinstance(v, np.ndarray))


@njit(nogil=True, error_model="numpy")
def _inf_to_nan_inplace(flat):
    for i in range(flat.size):
        if np.isinf(flat[i]):
            flat[i] = np.nan


@njit(nogil=True, error_model="numpy")
def _mask_into(x, m, atol, out):
    for i in range(out.size):
        out[i] = x[i] if abs(m[i]) > atol else np.nan  # a NaN m compares False


def _finite(out: np.ndarray | float, shape: tuple[int, ...], ieee: int = 0) -> np.ndarray:
    """`out` as a float64 array of `shape` with +-inf replaced by NaN (unless `ieee`).

    `out` must be a result this module owns (a ufunc's fresh output or a scalar): a C-ordered
    float64 array of `shape` is changed in place, anything else is copied first."""
    if not (
        isinstance(out, np.ndarray)
        and out.dtype == np.float64
        and out.shape == shape
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        out = np.array(np.broadcast_to(out, shape), dtype=np.float64)
    if not ieee:
        _inf_to_nan_inplace(out.reshape(-1))
    return out


def _nan_if_any(out: np.ndarray, *values: Operand) -> np.ndarray:
    """Set NaN wherever any operand is NaN (comparisons and logic need this explicitly)."""
    for v in values:
        if isinstance(v, np.ndarray):
            out[np.isnan(v)] = np.nan
        elif np.isnan(v):
            out[...] = np.nan
    return out


# ---- arithmetic ------------------------------------------------------------------------------


_ADD, _SUB, _MUL, _DIV = range(4)


def _at(v, i):
    """``v[i]`` for an array, ``v`` for a scalar (inside numba kernels)."""


@overload(_at)
def _at_impl(v, i):
    if isinstance(v, types.Array):
        return lambda v, i: v[i]
    return lambda v, i: v


@njit(nogil=True, error_model="numpy")
def _arith32_into(op, a, b, finite, out):
    # Operands rounded to float32, the operation done in float64 and its result rounded to
    # float32: the same bits as numpy's float32 arithmetic, since float64 carries more than
    # twice float32's precision plus two bits, so rounding twice is exact for + - * /.
    # One loop per operation so that each vectorises; a or b may be a scalar.
    n = out.size
    if op == _ADD:
        for i in range(n):
            out[i] = np.float32(np.float64(np.float32(_at(a, i))) + np.float32(_at(b, i)))
    elif op == _SUB:
        for i in range(n):
            out[i] = np.float32(np.float64(np.float32(_at(a, i))) - np.float32(_at(b, i)))
    elif op == _MUL:
        for i in range(n):
            out[i] = np.float32(np.float64(np.float32(_at(a, i))) * np.float32(_at(b, i)))
    else:
        for i in range(n):
            out[i] = np.float32(np.float64(np.float32(_at(a, i))) / np.float32(_at(b, i)))
    if finite:
        for i in range(n):
            if np.isinf(out[i]):
                out[i] = np.nan


def _arith(op: int, ufunc: np.ufunc, a: object, b: object, ieee: int, f32: int) -> np.ndarray:
    """``ufunc(a, b)`` under the module's policy. With ``f32`` one fused pass
    (``_arith32_into``) instead of numpy's: two float32 copies, the float32 result, its
    float64 copy and the inf pass (Alpha158 in the qlib dialect has ~190 such nodes)."""
    a, b = _operands(a=a, b=b)
    shape = _shape(a, b)
    if f32:
        out = np.empty(shape, dtype=np.float64)
        a, b = (v.reshape(-1) if isinstance(v, np.ndarray) else v for v in (a, b))
        _arith32_into(op, a, b, not ieee, out.reshape(-1))
        return out
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _finite(ufunc(a, b), shape, ieee)


def add(a: object, b: object, ieee: int = 0, f32: int = 0) -> np.ndarray:
    """a + b."""
    return _arith(_ADD, np.add, a, b, ieee, f32)


def sub(a: object, b: object, ieee: int = 0, f32: int = 0) -> np.ndarray:
    """a - b."""
    return _arith(_SUB, np.subtract, a, b, ieee, f32)


def mul(a: object, b: object, ieee: int = 0, f32: int = 0) -> np.ndarray:
    """a * b."""
    return _arith(_MUL, np.multiply, a, b, ieee, f32)


def div(a: object, b: object, ieee: int = 0, f32: int = 0) -> np.ndarray:
    """a / b; division by zero gives NaN (IEEE +-inf or 0/0, then inf mapped to NaN)."""
    return _arith(_DIV, np.divide, a, b, ieee, f32)


def pow_(a: object, b: object, ieee: int = 0, f32: int = 0) -> np.ndarray:
    """a ** b; negative base with a fractional exponent and 0 ** negative give NaN."""
    a, b = _to32(_operands(a=a, b=b), f32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = _finite(np.power(a, b), _shape(a, b), ieee)
    if ieee:
        return out
    return _nan_if_any(out, a, b)  # numpy gives nan ** 0 == 1 ** nan == 1


def neg(a: object, ieee: int = 0, f32: int = 0) -> np.ndarray:
    """-a."""
    (a,) = _to32(_operands(a=a), f32)
    return _finite(np.negative(a), a.shape, ieee)


def abs_(a: object, ieee: int = 0, f32: int = 0) -> np.ndarray:
    """|a|."""
    (a,) = _to32(_operands(a=a), f32)
    return _finite(np.abs(a), a.shape, ieee)


def log(a: object, ieee: int = 0, f32: int = 0) -> np.ndarray:
    """Natural log; a <= 0 gives NaN."""
    (a,) = _to32(_operands(a=a), f32)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(a)
    return _finite(out, a.shape, ieee)


def sign(a: object) -> np.ndarray:
    """-1.0, 0.0 or 1.0 (NaN stays NaN)."""
    (a,) = _operands(a=a)
    return _finite(np.sign(a), a.shape)


def sqrt(a: object, ieee: int = 0, f32: int = 0) -> np.ndarray:
    """Square root; a < 0 gives NaN."""
    (a,) = _to32(_operands(a=a), f32)
    with np.errstate(invalid="ignore"):
        return _finite(np.sqrt(a), a.shape, ieee)


def signedpower(a: object, b: object) -> np.ndarray:
    """sign(a) * |a| ** b (Alpha101 SignedPower); `b` an array or a scalar."""
    a, b = _operands(a=a, b=b)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.sign(a) * np.power(np.abs(a), b)
    return _nan_if_any(_finite(out, _shape(a, b)), a, b)


def greater(a: object, b: object, ieee: int = 0, f32: int = 0) -> np.ndarray:
    """Elementwise max(a, b); NaN if either is NaN (np.maximum, Qlib Greater)."""
    a, b = _to32(_operands(a=a, b=b), f32)
    return _finite(np.maximum(a, b), _shape(a, b), ieee)


def less(a: object, b: object, ieee: int = 0, f32: int = 0) -> np.ndarray:
    """Elementwise min(a, b); NaN if either is NaN (np.minimum, Qlib Less)."""
    a, b = _to32(_operands(a=a, b=b), f32)
    return _finite(np.minimum(a, b), _shape(a, b), ieee)


def where(cond: object, a: object, b: object, ieee: int = 0, f32: int = 0) -> np.ndarray:
    """a where cond != 0 else b; NaN where cond is NaN (and the chosen branch's NaN stays).

    ``ieee=1``: ``np.where`` exactly (a NaN condition is true), +-inf kept."""
    cond, a, b = _operands(cond=cond, a=a, b=b)
    a, b = _to32([a, b], f32)
    shape = _shape(cond, a, b)
    out = _finite(np.where(np.asarray(cond) != 0, a, b), shape, ieee)
    if ieee:
        return out
    return _nan_if_any(out, cond)


def clip(a: object, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Clip a to [lo, hi] (scalars; None = unbounded on that side). NaN stays NaN."""
    (a,) = _operands(a=a)
    bounds = {}
    for name, v in (("lo", lo), ("hi", hi)):
        if v is None:
            continue
        if not isinstance(v, numbers.Real) or isinstance(v, (bool, np.bool_)) or np.isnan(v):
            raise ValueError(f"{name} must be a real number or None, got {v!r}")
        bounds[name] = float(v)
    if "lo" in bounds and "hi" in bounds and bounds["lo"] > bounds["hi"]:
        raise ValueError(f"lo must be <= hi, got lo={lo!r} hi={hi!r}")
    out = np.clip(a, bounds.get("lo", -np.inf), bounds.get("hi", np.inf))
    return _finite(out, a.shape)


# ---- comparisons and logic (1.0 / 0.0, NaN if any operand is NaN) -----------------------------


def _compare(ufunc: np.ufunc) -> Callable[..., np.ndarray]:
    def op(a: object, b: object, nan_false: int = 0, f32: int = 0) -> np.ndarray:
        a, b = _to32(_operands(a=a, b=b), f32)
        with np.errstate(invalid="ignore"):
            out = np.array(np.broadcast_to(ufunc(a, b), _shape(a, b)), dtype=np.float64)
        return out if nan_false else _nan_if_any(out, a, b)

    op.__name__ = ufunc.__name__
    op.__doc__ = (
        f"1.0 where {ufunc.__name__}(a, b) else 0.0; NaN if either operand is NaN "
        "(nan_false=1: a NaN operand compares False, as numpy)."
    )
    return op


gt = _compare(np.greater)
ge = _compare(np.greater_equal)
lt = _compare(np.less)
le = _compare(np.less_equal)
eq = _compare(np.equal)
ne = _compare(np.not_equal)


def _truth(v: Operand) -> np.ndarray | bool:
    """Nonzero and not NaN (the reading of a logic operand under ``nan_false=1``)."""
    return np.logical_and(v != 0, ~np.isnan(v))


def and_(a: object, b: object, nan_false: int = 0) -> np.ndarray:
    """1.0 where both are nonzero else 0.0; NaN if either is NaN (nan_false=1: NaN is false)."""
    a, b = _operands(a=a, b=b)
    out = np.array(np.broadcast_to(np.logical_and(_truth(a), _truth(b)), _shape(a, b)), float)
    return out if nan_false else _nan_if_any(out, a, b)


def or_(a: object, b: object, nan_false: int = 0) -> np.ndarray:
    """1.0 where either is nonzero else 0.0; NaN if either is NaN (nan_false=1: NaN is false)."""
    a, b = _operands(a=a, b=b)
    out = np.array(np.broadcast_to(np.logical_or(_truth(a), _truth(b)), _shape(a, b)), float)
    return out if nan_false else _nan_if_any(out, a, b)


def not_(a: object, nan_false: int = 0) -> np.ndarray:
    """1.0 where a == 0 else 0.0; NaN stays NaN (nan_false=1: NaN is false, so not NaN = 1.0)."""
    (a,) = _operands(a=a)
    out = np.logical_not(_truth(a)).astype(np.float64)
    return out if nan_false else _nan_if_any(out, a)


def mask(x: object, m: object, atol: float = 0.0) -> np.ndarray:
    """x where m is a number with |m| > atol (default: nonzero), else NaN.

    x's values, +-inf included, pass unchanged. ``mask(x, listed)`` keeps x over a symbol's
    listed rows; ``mask(corr, std, atol=2e-5)`` is Qlib's ``np.isclose(std, 0, atol=2e-5)``.
    """
    x, m = _operands(x=x, m=m)
    shape = _shape(x, m)
    if isinstance(x, np.ndarray) and isinstance(m, np.ndarray):
        out = np.empty(shape, dtype=np.float64)
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        m = np.ascontiguousarray(m, dtype=np.float64).reshape(-1)
        _mask_into(x, m, float(atol), out.reshape(-1))
        return out
    out = np.array(np.broadcast_to(x, shape), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        drop = ~(np.abs(np.asarray(m, dtype=np.float64)) > atol)
    out[np.broadcast_to(drop, shape)] = np.nan
    return out


def float32(x: object) -> np.ndarray:
    """x rounded to float32 (returned as float64): the precision of Qlib's binary store."""
    (x,) = _operands(x=x)
    return x.astype(np.float32).astype(np.float64)


def inf_to_nan(x: object) -> np.ndarray:
    """x with +-inf replaced by NaN (pandas rolling windows treat +-inf as missing)."""
    (x,) = _operands(x=x)
    return _finite(np.array(x, dtype=np.float64), x.shape)


KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "add": add,
    "sub": sub,
    "mul": mul,
    "div": div,
    "pow": pow_,
    "neg": neg,
    "abs": abs_,
    "log": log,
    "sign": sign,
    "sqrt": sqrt,
    "signedpower": signedpower,
    "greater": greater,
    "less": less,
    "where": where,
    "clip": clip,
    "gt": gt,
    "ge": ge,
    "lt": lt,
    "le": le,
    "eq": eq,
    "ne": ne,
    "and_": and_,
    "or_": or_,
    "not_": not_,
    "mask": mask,
    "float32": float32,
    "inf_to_nan": inf_to_nan,
}


def warmup() -> None:
    """Call every kernel once on a tiny array (compiles or loads the numba helpers)."""
    x = np.array([[1.0, -2.0], [np.nan, 0.0]])
    for name, fn in KERNELS.items():
        if name == "clip":
            fn(x, -1.0, 1.0)
            continue
        code = fn.__code__
        arrays = code.co_argcount - len(fn.__defaults__ or ())  # operands have no default
        fn(*([x] * arrays))
    for fn in (add, sub, mul, div):  # the three operand kinds of _arith32_into
        fn(x, x, f32=1)
        fn(x, 2.0, f32=1)
        fn(2.0, x, f32=1)
