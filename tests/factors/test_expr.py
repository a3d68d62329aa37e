"""Expression nodes: structural keys, lookbacks, fields, printing and immutability."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import factors as F
from factors import (
    Call,
    Const,
    Expr,
    Field,
    adv,
    close,
    delay,
    high,
    low,
    open,
    parse,
    rank,
    returns,
    ts_corr,
    ts_mean,
    volume,
)

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- keys


def test_commutative_operands_give_equal_keys():
    assert (close + open).key == (open + close).key
    assert (close * volume).key == (volume * close).key
    assert F.greater(close, open).key == F.greater(open, close).key
    assert F.eq(close, open).key == F.eq(open, close).key
    assert (close & open).key == (open & close).key


def test_non_commutative_operands_differ():
    assert (close - open).key != (open - close).key
    assert (close / open).key != (open / close).key
    assert (close < open).key != (open < close).key
    assert ts_corr(close, volume, 10).key != ts_corr(close, volume, 11).key


def test_constants_are_normalised():
    assert Const(1).key == Const(1.0).key
    assert Const(-0.0).key == Const(0.0).key
    assert (close + 1).key == (close + 1.0).key
    assert Const(1).key != Const(2).key
    assert (-Const(3)).key == Const(-3).key  # unary minus folds into the constant


def test_equal_formulas_have_equal_keys_whatever_the_spelling():
    a = parse("close+open")
    b = parse("open + close")
    d = open + close
    assert a.key == b.key == d.key
    # the qlib dialect's policies (IEEE inf, float32, instrument spans) give other nodes
    assert parse("$open+$close", "qlib").key == parse("$close + $open", "qlib").key != a.key


def test_default_parameters_are_part_of_the_key():
    assert ts_mean(close, 20).key == ts_mean(close, 20, min_periods=20).key
    assert ts_mean(close, 20).key != ts_mean(close, 20, min_periods=1).key


def test_keys_are_sha256_hex():
    k = rank(close).key
    assert len(k) == 64 and int(k, 16) >= 0


def test_keys_are_stable_across_processes():
    exprs = [
        "rank(ts_corr(open, volume, 10))",
        "close / delay(close, 20) - 1",
        "IndNeutralize(delta(close, 2), IndClass.industry)",
        "ts_mean(close, 5, min_periods=1) + 1e-12",
    ]
    code = f"import factors\nfor t in {exprs!r}:\n    print(factors.parse(t).key)\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [parse(t).key for t in exprs]


def test_structural_equality_and_hashing():
    a, b = close + open, open + close
    assert a == b and hash(a) == hash(b)
    assert len({a, b, close - open}) == 2
    assert (close == 1) is False  # == is structural; use eq() for elementwise
    assert F.eq(close, 1).op == "eq" and close.eq(1).op == "eq" and close.ne(1).op == "ne"


def test_expressions_have_no_truth_value():
    with pytest.raises(TypeError, match="no truth value"):
        bool(close > open)


# ---------------------------------------------------------------- python operators


def test_python_operators_build_calls():
    assert (close + 1).op == "add"
    assert (1 - close).op == "sub" and (1 - close).args[0] == Const(1)
    assert (2 * close).op == "mul"
    assert (1 / close).op == "div"
    assert (close**2).op == "pow" and (2**close).op == "pow"
    assert (-close).op == "neg"
    assert +close is close
    assert abs(close).op == "abs"
    assert (close > 1).op == "gt" and (close >= 1).op == "ge"
    assert (close < 1).op == "lt" and (close <= 1).op == "le"
    assert ((close > 1) & (open > 1)).op == "and_"
    assert ((close > 1) | (open > 1)).op == "or_"
    assert (~(close > 1)).op == "not_"


def test_builders_validate():
    with pytest.raises(ValueError, match="'w' of ts_mean must be >= 1"):
        ts_mean(close, 0)
    with pytest.raises(TypeError, match="array argument"):
        ts_corr(close)
    with pytest.raises(TypeError, match="cannot use 'x'"):
        close + "x"
    with pytest.raises(TypeError, match="use eq\\(a, b\\)"):
        F.where(close == open, 1, 0)
    with pytest.raises(ValueError, match="identifier"):
        Field("not a name")
    with pytest.raises(ValueError, match="finite"):
        Const(float("nan"))
    with pytest.raises(TypeError, match="group field"):
        Call("group_rank", (close, close + 1))


def test_group_builders_take_field_names():
    e = F.group_neutralize(close, "industry")
    assert e.args[1] == Field("industry")
    assert e.fields == {"close", "industry"}


def test_nodes_are_immutable_and_picklable():
    e = rank(ts_corr(open, volume, 10)) + 1
    with pytest.raises(AttributeError, match="immutable"):
        e.op = "sub"
    with pytest.raises(AttributeError):
        close.name = "open"
    back = pickle.loads(pickle.dumps(e))  # noqa: S301 - our own bytes
    assert back.key == e.key and repr(back) == repr(e)


# ---------------------------------------------------------------- lookback and fields


@pytest.mark.parametrize(
    ("expr", "rows"),
    [
        (close, 0),
        (Const(1), 0),
        (returns, 1),
        (Field("adv20"), 19),
        (adv(20), 19),
        (delay(close, 5), 5),
        (ts_mean(close, 20), 19),
        (ts_mean(delay(close, 5), 20), 24),
        (ts_mean(delay(close, 5), 20) + delay(close, 30), 30),
        (rank(ts_corr(open, volume, 10)), 9),
        (ts_corr(delay(open, 3), ts_mean(volume, 10), 10), 18),
        (ts_mean(returns, 5), 5),
        (F.delta(F.ts_sum(close, 3), 2), 4),
    ],
)
def test_lookback(expr, rows):
    assert expr.lookback == rows


def test_fields_and_children():
    e = ts_corr(open, volume, 10) / (high - low)
    assert e.fields == {"open", "volume", "high", "low"}
    assert len(e.children) == 2
    assert close.children == () and Const(1).children == ()
    assert Const(2).fields == frozenset()


def test_walk_visits_each_distinct_node_once_children_first():
    shared = ts_mean(close, 5)
    e = rank(shared) + shared
    nodes = list(e.walk())
    keys = [n.key for n in nodes]
    assert len(keys) == len(set(keys))
    assert keys.index(close.key) < keys.index(shared.key) < keys.index(e.key)
    assert nodes[-1] == e


# ---------------------------------------------------------------- printing


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        (close + open, "close + open"),
        ((close + open) * 2, "(close + open) * 2.0"),
        (close - (open - high), "close - (open - high)"),
        ((close - open) - high, "close - open - high"),
        (-close, "-close"),
        (Call("neg", (Const(3),)), "neg(3.0)"),
        (Call("neg", (Const(-3),)), "neg(-3.0)"),
        (Call("neg", (-close,)), "-(-close)"),
        (close * -1, "close * -1.0"),
        (Const(-3) ** 2, "(-3.0) ** 2.0"),
        (ts_mean(close, 20), "ts_mean(close, 20)"),
        (ts_mean(close, 20, min_periods=1), "ts_mean(close, 20, min_periods=1)"),
        (Field("pe"), "$pe"),
        (F.group_rank(close, "industry"), "group_rank(close, industry)"),
        ((close > 1) & (open < 2), "close > 1.0 && open < 2.0"),
        (F.where(close > open, 1, -1), "where(close > open, 1.0, -1.0)"),
    ],
)
def test_repr(expr, text):
    assert repr(expr) == text
    assert parse(repr(expr)).key == expr.key


# Random expression trees: printing then parsing gives the same key.
_fields = st.sampled_from([close, open, high, low, volume, returns, Field("pe")])
_consts = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).map(Const)
_binary = ["add", "sub", "mul", "div", "pow", "gt", "le", "eq", "ne", "and_", "or_", "greater"]
_unary = ["neg", "abs", "log", "sign", "rank", "not_", "zscore"]


def _extend(children):
    windows = st.integers(1, 30)
    return st.one_of(
        st.tuples(st.sampled_from(_binary), children, children).map(
            lambda t: F.call(t[0], t[1], t[2])
        ),
        st.tuples(st.sampled_from(_unary), children).map(lambda t: F.call(t[0], t[1])),
        st.tuples(st.sampled_from(_unary), children).map(lambda t: Call(t[0], (t[1],))),
        st.tuples(children, windows).map(lambda t: ts_mean(t[0], t[1])),
        st.tuples(children, windows, windows).map(
            lambda t: ts_mean(t[0], max(t[1], t[2]), min_periods=min(t[1], t[2]))
        ),
        st.tuples(children, children, windows).map(lambda t: ts_corr(t[0], t[1], t[2])),
        st.tuples(children, st.integers(0, 10)).map(lambda t: delay(t[0], t[1])),
        st.tuples(children, children, children).map(lambda t: F.where(*t)),
        st.tuples(children, st.floats(0.01, 1.0)).map(lambda t: F.ema(t[0], t[1])),
        st.tuples(children).map(lambda t: F.group_neutralize(t[0], "industry")),
    )


expressions = st.recursive(st.one_of(_fields, _consts), _extend, max_leaves=12)


@settings(max_examples=80, deadline=None)
@given(expressions)
def test_repr_round_trip(expr: Expr):
    back = parse(repr(expr))
    assert back.key == expr.key
    assert back.lookback == expr.lookback
    assert repr(back) == repr(expr)


def _canon(e: Expr) -> str:
    """An independent canonical form: commutative operands sorted by their own form."""
    if isinstance(e, Field):
        return e.name
    if isinstance(e, Const):
        return repr(e.value)
    parts = [_canon(a) for a in e.args]
    if e.spec.commutative:
        parts.sort()
    return f"{e.op}[{'|'.join(parts)}]{e.params!r}"


def _swap(e: Expr) -> Expr:
    """The same tree with the operands of every commutative call reversed."""
    if not isinstance(e, Call):
        return e
    args = tuple(_swap(a) for a in e.args)
    if e.spec.commutative:
        args = args[::-1]
    return Call(e.op, args, e.params)


@settings(max_examples=50, deadline=None)
@given(expressions, expressions)
def test_keys_equal_exactly_when_canonical_forms_are_equal(a: Expr, b: Expr):
    assert _swap(a).key == a.key
    assert (a.key == b.key) == (_canon(a) == _canon(b))
    assert (a + 1).key != a.key
