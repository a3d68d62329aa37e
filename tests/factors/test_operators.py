"""The operator table: its rows are consistent and every operator has exactly one kernel."""

from __future__ import annotations

import inspect

import pytest

from factors.dialects import ALPHA101, QLIB
from factors.operators import COMMUTATIVE, KINDS, OPERATORS, ParamError, decay_lookback, get


def test_every_row_is_well_formed():
    for name, op in OPERATORS.items():
        assert op.name == name
        assert op.kind in KINDS
        assert op.inputs >= 1
        assert op.doc, name
        assert op.memory in ("window", "decaying", "cumulative")
        assert op.spellings["python"] == (name,)
        names = [p.name for p in op.params]
        assert len(names) == len(set(names)), name
        for p in op.params:
            assert p.type in (int, float)
            if isinstance(p.default, str):  # a default naming another parameter comes earlier
                assert p.default in names[: names.index(p.name)]


def test_every_operator_has_a_kernel_and_every_kernel_an_operator():
    from engine.kernels import KERNELS

    assert set(OPERATORS) - set(KERNELS) == set()
    assert set(KERNELS) - set(OPERATORS) == set()


def test_kernel_signatures_take_the_table_parameters_by_name():
    from engine.kernels import KERNELS

    for name, op in OPERATORS.items():
        params = list(inspect.signature(KERNELS[name]).parameters)
        assert params[op.inputs : op.inputs + len(op.params)] == list(op.param_names), name


def test_spellings_are_unique_within_a_dialect():
    for dialect in ("alpha101", "qlib"):
        seen: dict[str, str] = {}
        for op in OPERATORS.values():
            for s in op.spellings.get(dialect, ()):
                key = s.lower() if dialect == "alpha101" else s
                assert key not in seen, (dialect, s, seen.get(key), op.name)
                seen[key] = op.name


def test_dialect_function_tables_come_from_the_operator_table():
    assert ALPHA101.lookup("Ts_Rank") == "ts_rank"
    assert ALPHA101.lookup("stddev") == "ts_std"
    assert ALPHA101.lookup("correlation") == "ts_corr"
    assert ALPHA101.lookup("sum") == "ts_sum"
    assert ALPHA101.lookup("product") == "ts_product"
    assert ALPHA101.lookup("ts_mean") == "ts_mean"  # canonical names too
    assert QLIB.lookup("Ref") == "delay"
    assert QLIB.lookup("Rank") == "ts_rank"
    assert QLIB.lookup("Med") == "ts_median"
    assert QLIB.lookup("ref") is None  # qlib is case-sensitive
    assert QLIB.lookup("ts_mean") is None


def test_commutative_set():
    assert COMMUTATIVE == {"add", "mul", "greater", "less", "eq", "ne", "and_", "or_"}
    assert get("add").commutative and not get("sub").commutative


def test_min_periods_policy_per_dialect():
    ts_mean = get("ts_mean")
    assert dict(ts_mean.resolve_params({"w": 20}, "alpha101")) == {"w": 20, "min_periods": 20}
    assert dict(ts_mean.resolve_params({"w": 20}, "python")) == {"w": 20, "min_periods": 20}
    assert dict(ts_mean.resolve_params({"w": 20}, "qlib")) == {"w": 20, "min_periods": 1}
    corr = get("ts_corr")
    assert dict(corr.resolve_params({"w": 5}, "qlib"))["min_periods"] == 1
    std = get("ts_std")
    assert dict(std.resolve_params({"w": 5}, "qlib"))["ddof"] == 1
    ema = get("ema")
    assert dict(ema.resolve_params({"alpha": 0.5}, "qlib")) == {
        "alpha": 0.5,
        "adjust": 1,
        "ignore_na": 0,
    }
    assert dict(ema.resolve_params({"alpha": 0.5}, "python")) == {
        "alpha": 0.5,
        "adjust": 0,
        "ignore_na": 1,
    }


@pytest.mark.parametrize(
    ("op", "given", "fragment"),
    [
        ("ts_mean", {"w": 0}, "'w' of ts_mean must be >= 1"),
        ("ts_mean", {"w": -3}, ">= 1"),
        ("ts_mean", {"w": 2.5}, "must be an integer"),
        ("ts_mean", {"w": "x"}, "must be a number"),
        ("ts_mean", {"w": True}, "must be a number"),
        ("ts_mean", {"w": 5, "min_periods": 6}, "'min_periods' of ts_mean must be <= w (5)"),
        ("ts_mean", {}, "needs parameter 'w'"),
        ("ts_mean", {"w": 5, "span": 3}, "has no parameter span"),
        ("delay", {"d": -1}, ">= 0"),
        ("ts_quantile", {"w": 5, "q": 1.5}, "<= 1"),
        ("ema", {"alpha": 0.0}, "> 0"),
        ("sma", {"n": 3, "m": 4}, "<= n (3)"),
        ("clip", {"lo": 2.0, "hi": 1.0}, ">= lo (2)"),
        ("ts_mean", {"w": float("inf")}, "finite"),
    ],
)
def test_bad_parameters_are_rejected_with_the_parameter_named(op, given, fragment):
    with pytest.raises(ParamError) as info:
        get(op).resolve_params(given)
    assert fragment in str(info.value)


def test_integral_floats_are_accepted_as_int_parameters():
    assert dict(get("delay").resolve_params({"d": 5.0})) == {"d": 5}
    assert type(dict(get("delay").resolve_params({"d": 5.0}))["d"]) is int
    assert type(dict(get("scale").resolve_params({"a": 2}))["a"]) is float


@pytest.mark.parametrize(
    ("op", "params", "rows"),
    [
        ("delay", {"d": 5}, 5),
        ("delta", {"d": 3}, 3),
        ("ts_mean", {"w": 20, "min_periods": 20}, 19),
        ("ts_corr", {"w": 10, "min_periods": 10}, 9),
        ("ts_quantile", {"w": 7, "q": 0.5, "min_periods": 7}, 6),
        ("rank", {}, 0),
        ("add", {}, 0),
        ("stoch_d", {"n": 14, "m": 3}, 15),
        ("mfi", {"n": 14}, 14),
    ],
)
def test_lookback_rules(op, params, rows):
    assert get(op).lookback(params) == rows


def test_decaying_lookback_is_the_one_in_a_million_horizon():
    assert decay_lookback(1.0) == 0
    k = decay_lookback(0.1)
    assert 0.9**k < 1e-6 <= 0.9 ** (k - 1)
    assert get("ema").memory == "decaying"
    assert get("obv").memory == "cumulative"


def test_unknown_operator():
    with pytest.raises(KeyError, match="unknown operator 'nope'"):
        get("nope")


def test_signature_text():
    assert get("ts_mean").signature == "ts_mean(x, w, min_periods=w)"
    assert get("ts_corr").signature == "ts_corr(x1, x2, w, min_periods=w)"
    assert get("group_rank").signature == "group_rank(x1, group)"


def test_qlib_numpy_policies_per_dialect():
    """Qlib's numpy semantics are parameters with a qlib default; alpha101/python keep theirs."""
    for name, param in (
        ("div", "ieee"),
        ("log", "ieee"),
        ("add", "ieee"),
        ("where", "ieee"),
        ("gt", "nan_false"),
        ("and_", "nan_false"),
        ("not_", "nan_false"),
        ("ts_argmax", "nan_first"),
        ("ts_argmin", "nan_first"),
    ):
        op = get(name)
        given = {"w": 5} if op.kind == "ts" else {}
        assert dict(op.resolve_params(given, "qlib"))[param] == 1, name
        for dialect in ("alpha101", "python"):
            assert dict(op.resolve_params(given, dialect))[param] == 0, (name, dialect)
    # f32 is no dialect default: the qlib parser sets it where Qlib's operands are float32
    assert dict(get("add").resolve_params({}, "qlib"))["f32"] == 0


def test_qlib_span_operators():
    mask, listed_max = get("mask"), get("ts_argmax_listed")
    assert mask.kind == "elementwise" and mask.inputs == 2 and mask.lookback({"atol": 0}) == 0
    assert listed_max.kind == "ts" and listed_max.inputs == 2
    assert listed_max.lookback({"w": 10, "min_periods": 1}) == 9
    assert not listed_max.spellings.get("qlib")  # the qlib parser builds it from IdxMax
    assert get("float32").inputs == get("inf_to_nan").inputs == 1
