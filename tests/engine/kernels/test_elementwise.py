"""Elementwise kernels vs a per-cell pure-Python reference, through one table."""

from __future__ import annotations

import math
import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.kernels import elementwise as ew

NAN = math.nan

# values with ties, zeros, negatives, NaN and magnitudes that overflow under pow/mul
_values = st.one_of(
    st.sampled_from([NAN, 0.0, 1.0, -1.0, 2.0, -2.5, 0.5, 1e200, -1e200]),
    st.floats(-100, 100, allow_nan=False),
)


def _panel(shape):
    return hnp.arrays(np.float64, shape, elements=_values)


def _fin(v: float) -> float:
    """The module's rule: +-inf becomes NaN."""
    return NAN if math.isinf(v) else v


def _nanin(*vs: float) -> bool:
    return any(math.isnan(v) for v in vs)


def _safe(f):
    """Python raises where IEEE returns inf/nan; the reference turns those into NaN."""

    def g(*vs: float) -> float:
        if _nanin(*vs):
            return NAN
        try:
            return _fin(float(f(*vs)))
        except (ValueError, ZeroDivisionError, OverflowError):
            return NAN

    return g


def _sign(a: float) -> float:
    return float((a > 0) - (a < 0))


def _signedpower(a: float, b: float) -> float:
    mag = abs(a) ** b
    if isinstance(mag, complex):
        return NAN
    return _sign(a) * mag


def _pow(a: float, b: float) -> float:
    r = a**b
    return NAN if isinstance(r, complex) else r


def _where(c: float, a: float, b: float) -> float:
    if math.isnan(c):
        return NAN
    return _fin(a if c != 0 else b)


def _cmp(op):
    return lambda a, b: NAN if _nanin(a, b) else float(op(a, b))


# name -> (arity, per-cell reference)
TABLE = {
    "add": (2, _safe(operator.add)),
    "sub": (2, _safe(operator.sub)),
    "mul": (2, _safe(operator.mul)),
    "div": (2, _safe(operator.truediv)),
    "pow": (2, _safe(_pow)),
    "neg": (1, _safe(operator.neg)),
    "abs": (1, _safe(abs)),
    "log": (1, _safe(lambda a: math.log(a) if a > 0 else NAN)),
    "sign": (1, _safe(_sign)),
    "sqrt": (1, _safe(lambda a: math.sqrt(a) if a >= 0 else NAN)),
    "signedpower": (2, _safe(_signedpower)),
    "greater": (2, _safe(max)),
    "less": (2, _safe(min)),
    "where": (3, _where),
    "gt": (2, _cmp(operator.gt)),
    "ge": (2, _cmp(operator.ge)),
    "lt": (2, _cmp(operator.lt)),
    "le": (2, _cmp(operator.le)),
    "eq": (2, _cmp(operator.eq)),
    "ne": (2, _cmp(operator.ne)),
    "and_": (2, _cmp(lambda a, b: a != 0 and b != 0)),
    "or_": (2, _cmp(lambda a, b: a != 0 or b != 0)),
    "not_": (1, _cmp(lambda a, _: a == 0)),
}


def _check(name, arrays):
    ref = TABLE[name][1]
    got = ew.KERNELS[name](*arrays)
    want = np.empty(arrays[0].shape)
    for idx in np.ndindex(want.shape):
        cells = [float(a[idx]) for a in arrays]
        want[idx] = ref(*cells) if name != "not_" else ref(cells[0], 0.0)
    assert got.dtype == np.float64 and got.shape == want.shape
    assert not np.isinf(got).any()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, equal_nan=True, err_msg=name)


QLIB_HELPERS = {"mask", "float32", "inf_to_nan"}  # tested in test_qlib_policies below


def test_table_covers_every_kernel():
    assert set(TABLE) | {"clip"} | QLIB_HELPERS == set(ew.KERNELS)


@pytest.mark.parametrize("name", sorted(TABLE))
@settings(max_examples=40, deadline=None)
@given(data=st.data(), shape=st.tuples(st.integers(1, 6), st.integers(1, 5)))
def test_matches_reference(name, data, shape):
    arity = TABLE[name][0]
    arrays = [data.draw(_panel(shape), label=f"arg{i}") for i in range(arity)]
    _check(name, arrays)


@settings(max_examples=40, deadline=None)
@given(
    x=_panel((5, 4)),
    lo=st.floats(-10, 10),
    width=st.floats(0, 10),
)
def test_clip(x, lo, width):
    hi = lo + width
    got = ew.clip(x, lo, hi)
    want = np.where(np.isnan(x), np.nan, np.minimum(np.maximum(x, lo), hi))
    np.testing.assert_array_equal(got, want)


def test_scalar_operands_broadcast():
    x = np.array([[1.0, 0.0], [np.nan, -4.0]])
    np.testing.assert_array_equal(ew.div(x, 2.0), [[0.5, 0.0], [np.nan, -2.0]])
    np.testing.assert_array_equal(ew.div(1.0, x), [[1.0, np.nan], [np.nan, -0.25]])
    np.testing.assert_array_equal(ew.gt(x, 0), [[1.0, 0.0], [np.nan, 0.0]])
    np.testing.assert_array_equal(ew.signedpower(x, 2), [[1.0, 0.0], [np.nan, -16.0]])
    np.testing.assert_array_equal(ew.pow_(x, 0.0), [[1.0, 1.0], [np.nan, 1.0]])


def test_documented_nan_rules():
    x = np.array([[0.0, -1.0, 4.0, np.nan]])
    assert np.isnan(ew.div(x, 0.0)).all()
    np.testing.assert_array_equal(ew.log(x), [[np.nan, np.nan, np.log(4.0), np.nan]])
    np.testing.assert_array_equal(ew.sqrt(x), [[0.0, np.nan, 2.0, np.nan]])
    np.testing.assert_array_equal(ew.where(x, 1.0, 2.0), [[2.0, 1.0, 1.0, np.nan]])
    np.testing.assert_array_equal(ew.mul(np.full((1, 1), 1e200), 1e200), [[np.nan]])


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda: ew.add(np.ones((2, 2)), np.ones((2, 3))), "same shape"),
        (lambda: ew.add(np.ones(3), np.ones(3)), "a:"),
        (lambda: ew.neg("abc"), "a:"),
        (lambda: ew.add(1.0, 2.0), "2-D array"),
        (lambda: ew.clip(np.ones((2, 2)), 2.0, 1.0), "lo must be <= hi"),
        (lambda: ew.clip(np.ones((2, 2)), "x", 1.0), "lo"),
        (lambda: ew.where(np.ones((1, 2)), np.ones((2, 2)), 0.0), "cond"),
    ],
)
def test_bad_arguments(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_warmup_runs():
    ew.warmup()


# ---- the qlib dialect's policies: numpy's own semantics ---------------------------------------

_QX = np.array([[0.0, -1.0, 4.0, np.nan, 2.5]])
_QY = np.array([[0.0, 0.0, np.nan, 1.0, 2.5]])


def test_ieee_policy_is_plain_numpy():
    with np.errstate(all="ignore"):
        for name, ufunc in (
            ("add", np.add),
            ("sub", np.subtract),
            ("mul", np.multiply),
            ("div", np.divide),
            ("pow", np.power),
            ("greater", np.maximum),
            ("less", np.minimum),
        ):
            got = ew.KERNELS[name](_QX, _QY, ieee=1)
            np.testing.assert_array_equal(got, ufunc(_QX, _QY), err_msg=name)
        for name, ufunc in (("neg", np.negative), ("abs", np.abs), ("log", np.log)):
            np.testing.assert_array_equal(ew.KERNELS[name](_QX, ieee=1), ufunc(_QX), name)
        np.testing.assert_array_equal(ew.sqrt(_QX, ieee=1), np.sqrt(_QX))
    assert ew.div(_QX, 0.0, ieee=1)[0, 2] == np.inf and ew.log(_QX, ieee=1)[0, 0] == -np.inf
    assert ew.pow_(_QX, 0.0, ieee=1)[0, 3] == 1.0  # numpy: nan ** 0 == 1
    cond = np.array([[np.nan, 0.0, 1.0, 2.0, 0.0]])
    np.testing.assert_array_equal(ew.where(cond, _QX, 7.0, ieee=1), np.where(cond, _QX, 7.0))


def test_nan_false_policy_compares_like_numpy():
    for name, ufunc in (("gt", np.greater), ("ge", np.greater_equal), ("lt", np.less)):
        for b in (_QY, 0.0, np.nan):
            with np.errstate(invalid="ignore"):
                want = ufunc(_QX, b).astype(float)
            np.testing.assert_array_equal(ew.KERNELS[name](_QX, b, nan_false=1), want, name)
    np.testing.assert_array_equal(ew.eq(_QX, _QY, nan_false=1), [[1.0, 0, 0, 0, 1]])
    np.testing.assert_array_equal(ew.ne(_QX, _QY, nan_false=1), [[0.0, 1, 1, 1, 0]])
    # logic: NaN reads as false
    np.testing.assert_array_equal(ew.and_(_QX, _QY, nan_false=1), [[0.0, 0, 0, 0, 1]])
    np.testing.assert_array_equal(ew.or_(_QX, _QY, nan_false=1), [[0.0, 1, 1, 1, 1]])
    np.testing.assert_array_equal(ew.not_(_QX, nan_false=1), [[1.0, 0, 0, 1, 0]])
    # the default keeps the alpha101 rule: a NaN operand gives NaN
    assert np.isnan(ew.gt(_QX, _QY)[0, 2:4]).all()


def test_f32_policy_is_numpy_float32_arithmetic():
    rng = np.random.default_rng(0)
    a = rng.lognormal(4, 1, (50, 7))
    b = rng.lognormal(4, 1, (50, 7))
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    for name, fn in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply)):
        got = ew.KERNELS[name](a, b, ieee=1, f32=1)
        np.testing.assert_array_equal(got, fn(a32, b32).astype(np.float64), err_msg=name)
    np.testing.assert_array_equal(ew.div(a, b, ieee=1, f32=1), (a32 / b32).astype(np.float64))
    # a constant is a weak scalar: rounded to float32 like numpy does (1e-12 -> 9.9999999e-13)
    np.testing.assert_array_equal(
        ew.add(np.zeros((1, 1)), 1e-12, ieee=1, f32=1), [[float(np.float32(1e-12))]]
    )
    np.testing.assert_array_equal(ew.log(a, ieee=1, f32=1), np.log(a32).astype(np.float64))
    np.testing.assert_array_equal(ew.float32(a), a32.astype(np.float64))
    assert ew.add(a, b, f32=1).dtype == np.float64


# float32 edge cases: overflow to inf in float32 only, subnormal results, signed zeros
_f32_values = st.one_of(
    st.sampled_from(
        [NAN, math.inf, -math.inf, 0.0, -0.0, 1.0, 3.0, 1e-45, 1e-39, -1e-38, 3.4e38, 1e39, 1e300]
    ),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(width=32),
)


@settings(max_examples=300, deadline=None)
@given(
    a=hnp.arrays(np.float64, (3, 4), elements=_f32_values),
    b=hnp.arrays(np.float64, (3, 4), elements=_f32_values),
    scalar=st.sampled_from(["none", "a", "b"]),
    ieee=st.sampled_from([0, 1]),
)
def test_f32_arithmetic_is_bitwise_numpy_float32(a, b, scalar, ieee):
    """The fused float32 pass gives numpy's float32 bits (signed zeros, subnormals, overflow
    to inf and NaN included), with the module's inf policy, for arrays and scalars."""
    x = a[0, 0] if scalar == "a" else a
    y = b[0, 0] if scalar == "b" else b
    x, y = (float(v) if np.ndim(v) == 0 else v for v in (x, y))
    ufuncs = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}
    for name, ufunc in ufuncs.items():
        with np.errstate(all="ignore"):
            x32 = x.astype(np.float32) if isinstance(x, np.ndarray) else x
            y32 = y.astype(np.float32) if isinstance(y, np.ndarray) else y
            want = ufunc(x32, y32)
            assert want.dtype == np.float32  # numpy's float32 arithmetic, scalars included
            want = np.broadcast_to(want, (3, 4)).astype(np.float64)
        if not ieee:
            want = np.where(np.isinf(want), np.nan, want)
        got = ew.KERNELS[name](x, y, ieee=ieee, f32=1)
        assert got.dtype == np.float64 and got.shape == (3, 4)
        np.testing.assert_array_equal(got, want, err_msg=name)
        signed = ~np.isnan(want)  # a NaN's sign bit means nothing
        np.testing.assert_array_equal(np.signbit(got[signed]), np.signbit(want[signed]), name)


def test_mask_and_inf_to_nan():
    listed = np.array([[np.nan, 1.0, 1.0, 1.0, np.nan]])
    x = np.array([[1.0, np.inf, np.nan, -2.0, 3.0]])
    np.testing.assert_array_equal(ew.mask(x, listed), [[np.nan, np.inf, np.nan, -2.0, np.nan]])
    std = np.array([[0.0, 1e-5, 2e-5, 3e-5, np.nan]])
    np.testing.assert_array_equal(
        ew.mask(np.ones((1, 5)), std, atol=2e-5), [[np.nan, np.nan, np.nan, 1.0, np.nan]]
    )
    np.testing.assert_array_equal(ew.mask(x, 1.0), x)
    np.testing.assert_array_equal(ew.inf_to_nan(x), [[1.0, np.nan, np.nan, -2.0, 3.0]])
