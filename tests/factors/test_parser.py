"""The formula parser: both dialects, their policies, and errors with positions."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import factors as F
from factors import (
    Const,
    Field,
    FormulaError,
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
    vwap,
)
from factors.tokenizer import tokenize

ALPHA158 = Path(__file__).resolve().parents[3] / "shared" / "data" / "alpha158_qlib.tsv"


def same(text: str, expr, dialect: str = "alpha101") -> None:
    got = parse(text, dialect)
    assert got.key == expr.key, f"{text!r} parsed as {got!r}, expected {expr!r}"


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_kinds_and_positions():
    toks = tokenize("Ref($close, 1) >= 2.5e-3")
    assert [(t.kind, t.text, t.pos) for t in toks] == [
        ("NAME", "Ref", 0),
        ("OP", "(", 3),
        ("FIELD", "close", 4),
        ("OP", ",", 10),
        ("NUMBER", "1", 12),
        ("OP", ")", 13),
        ("OP", ">=", 15),
        ("NUMBER", "2.5e-3", 18),
        ("END", "", 24),
    ]


def test_tokenizer_numbers():
    assert [t.text for t in tokenize("1 1. .5 1e-12 2.E3")[:-1]] == [
        "1",
        "1.",
        ".5",
        "1e-12",
        "2.E3",
    ]


# ---------------------------------------------------------------- alpha101


def test_alpha101_basics():
    same("rank(ts_corr(open, volume, 10))", rank(ts_corr(open, volume, 10)))
    same("close / delay(close, 20) - 1", close / delay(close, 20) - 1)
    same("-1 * correlation(open, volume, 10)", Const(-1) * ts_corr(open, volume, 10))
    same("(high * low)^0.5 - vwap", (high * low) ** 0.5 - vwap)
    same("(high * low)**0.5 - vwap", (high * low) ** 0.5 - vwap)


def test_alpha101_precedence():
    same("1 + 2 * close", 1 + 2 * close)
    same("-close ^ 2", -(close**2))
    same("close ^ 2 ^ 3", close ** (Const(2) ** 3))  # right-associative
    same("close - open - high", (close - open) - high)
    same(
        "close < open || close > high && open > low",
        (close < open) | ((close > high) & (open > low)),
    )
    same("(close == open) != 0", F.ne(F.eq(close, open), 0))
    same("!(close > open)", ~(close > open))


def test_alpha101_ternary_is_lowest_and_right_associative():
    same(
        "close > open ? 1 : close < open ? -1 : 0",
        F.where(close > open, 1, F.where(close < open, -1, 0)),
    )
    same(
        "(returns < 0) ? stddev(returns, 20) : close",
        F.where(returns < 0, F.ts_std(returns, 20), close),
    )


def test_alpha101_functions_are_case_insensitive_and_fields_too():
    same("Ts_Rank(close, 5)", F.ts_rank(close, 5))
    same("Ts_ArgMax(close, 5)", F.ts_argmax(close, 5))
    same("SignedPower(close, 2.)", F.signedpower(close, 2))
    same("Log(CLOSE)", F.log(close))


def test_alpha101_fractional_windows_are_floored():
    same("correlation(close, volume, 9.9)", ts_corr(close, volume, 9))
    same("Ts_Rank(close, 3.43976)", F.ts_rank(close, 3))
    same("decay_linear(close, 4.20501)", F.decay_linear(close, 4, min_periods=4))
    with pytest.raises(FormulaError, match="'w' of ts_mean must be >= 1"):
        parse("ts_mean(close, 0.5)")


def test_alpha101_min_periods_is_the_window():
    e = parse("sum(close, 10)")
    assert e.op == "ts_sum" and e.param_dict == {"w": 10, "min_periods": 10}


def test_alpha101_aliases():
    same("sum(close, 5)", F.ts_sum(close, 5))
    same("product(close, 5)", F.ts_product(close, 5))
    same("stddev(close, 5)", F.ts_std(close, 5, ddof=1))
    same("covariance(close, open, 5)", F.ts_cov(close, open, 5))
    same("scale(close)", F.scale(close, 1.0))
    same("scale(close, 2)", F.scale(close, a=2.0))
    same("delta(close, 3)", F.delta(close, 3))
    same("abs(sign(close))", abs(F.sign(close)))


def test_alpha101_min_max_are_time_series_with_an_integer_window():
    same("min(close, 5)", F.ts_min(close, 5))
    same("max(close, 5.0)", F.ts_max(close, 5))
    same("min(close, open)", F.less(close, open))
    same("max(close, 0.5)", F.greater(close, 0.5))
    same("max(rank(close), rank(open))", F.greater(rank(close), rank(open)))


def test_alpha101_adv_and_derived_fields():
    same("adv20", adv(20))
    same("adv20", ts_mean(Field("amount"), 20, min_periods=20))
    assert parse("adv180").lookback == 179
    assert parse("returns").lookback == 1
    same("cap * vwap", Field("cap") * vwap)


def test_alpha101_indneutralize_maps_to_group_neutralize():
    for level in ("sector", "industry", "subindustry"):
        e = parse(f"IndNeutralize(close, IndClass.{level})")
        assert e.op == "group_neutralize" and e.args[1] == Field(level)
    same("group_rank(close, industry)", F.group_rank(close, "industry"))
    same("group_rank(close, $gics)", F.group_rank(close, "gics"))


def test_alpha101_extra_fields_and_dollar_fields():
    same("$pe / close", Field("pe") / close)
    assert parse("pe / close", fields=["pe"]).key == (Field("pe") / close).key
    with pytest.raises(FormulaError, match="unknown field 'pe'"):
        parse("pe / close")


def test_alpha101_keyword_parameters():
    same("ts_mean(close, 5, min_periods=2)", ts_mean(close, 5, min_periods=2))
    same("ts_mean(close, w=5)", ts_mean(close, 5))
    same("ts_quantile(close, 10, q=0.25)", F.ts_quantile(close, 10, 0.25))


def test_alpha101_paper_formulas():
    alpha1 = (
        "(rank(Ts_ArgMax(SignedPower(((returns < 0) ? stddev(returns, 20) : close), 2.), 5)) - 0.5)"
    )
    e = parse(alpha1)
    assert e.lookback == 1 + 19 + 4
    alpha41 = "(((high * low)^0.5) - vwap)"
    assert parse(alpha41).fields == {"high", "low", "vwap"}
    alpha_ind = (
        "(-1 * Ts_Rank(decay_linear(correlation(IndNeutralize(vwap, IndClass.industry), "
        "volume, 4.0), 7.5), 11.94))"
    )
    e = parse(alpha_ind)
    assert e.fields == {"vwap", "industry", "volume"}
    assert e.lookback == 3 + 6 + 10


# ---------------------------------------------------------------- qlib


def bare(e):
    """A qlib-dialect node without the instrument-span/dtype layer ``qlib_spans`` adds (masks,
    float32 reads, inf_to_nan, std tests, the *_listed argmax), f32 reset: the formula as
    written, with the dialect's policies."""
    from factors.expr import Call

    if not isinstance(e, Call):
        return e
    if e.op in ("mask", "float32", "inf_to_nan"):
        return bare(e.args[0])
    params = {k: (0 if k == "f32" else v) for k, v in e.params}
    if e.op.endswith("_listed"):
        return Call(e.op.removesuffix("_listed"), (bare(e.args[0]),), {**params, "nan_first": 1})
    return Call(e.op, [bare(a) for a in e.args], params)


def qsame(text: str, expr) -> None:
    got = bare(parse(text, "qlib"))
    assert got.key == expr.key, f"{text!r} parsed as {got!r}, expected {expr!r}"


def test_qlib_basics_and_policies():
    e = bare(parse("Mean($close, 5)", "qlib"))
    assert e.op == "ts_mean" and e.param_dict == {"w": 5, "min_periods": 1}
    qsame("Ref($close, 1)", delay(close, 1))
    qsame("$open+$close", F.add(open, close, ieee=1))
    qsame("Std($close, 20)", F.ts_std(close, 20, min_periods=1, ddof=1))
    qsame(
        "Corr($close, Log($volume+1), 10)",
        ts_corr(close, F.log(F.add(volume, 1, ieee=1), ieee=1), 10, min_periods=1),
    )
    qsame("Greater($open, $close)", F.greater(open, close, ieee=1))
    qsame("Less($open, $close)", F.less(open, close, ieee=1))
    qsame("Max($high, 5)", F.ts_max(high, 5, min_periods=1))
    qsame("IdxMax($high, 5)", F.ts_argmax(high, 5, min_periods=1, nan_first=1))
    qsame("Rank($close, 5)", F.ts_rank(close, 5, min_periods=1))
    qsame("Quantile($close, 10, 0.8)", F.ts_quantile(close, 10, 0.8, min_periods=1))
    qsame("If($close > $open, 1, 0)", F.where(F.gt(close, open, nan_false=1), 1, 0, ieee=1))
    qsame("Power($close, 2)", F.pow(close, 2, ieee=1))
    qsame("$close ** 2", F.pow(close, 2, ieee=1))
    qsame("Delta($close, 3)", F.sub(close, delay(close, 3), ieee=1))  # float32: x - Ref(x)
    qsame("Count($close, 3)", F.ts_count(close, 3))


def test_qlib_spans_and_dtypes():
    """Qlib's per-instrument span, float32 reads and numpy rules, as nodes (see qlib_spans)."""
    listed = Field("listed")
    c32 = F.float32(close)
    up = F.gt(c32, delay(c32, 1), nan_false=1, f32=1)
    assert (
        parse("Mean($close > Ref($close, 1), 5)", "qlib").key
        == F.mask(ts_mean(F.mask(up, listed), 5, min_periods=1), listed).key
    )
    e = parse("IdxMax($high, 5)", "qlib")
    assert e.key == F.mask(F.ts_argmax_listed(F.float32(high), listed, 5, 1), listed).key
    kmid = parse("($close-$open)/$open", "qlib")
    o32 = F.float32(open)
    assert kmid.key == F.mask(F.div(F.sub(c32, o32, ieee=1, f32=1), o32, ieee=1, f32=1), listed).key
    # a rolling op reads +-inf as NaN (pandas); a ratio of two rolling results is float64
    ratio = F.div(c32, delay(c32, 1), ieee=1, f32=1)
    std = F.ts_std(F.inf_to_nan(ratio), 5, min_periods=1)
    assert parse("Std($close/Ref($close, 1), 5)", "qlib").key == F.mask(std, listed).key
    m = parse("Mean($close, 5)/Std($close, 5)", "qlib")
    assert m.args[0].param_dict == {"ieee": 1, "f32": 0}
    # Corr and Rsquare: NaN where an input's rolling std is within 2e-5 of 0 (absolute)
    rsq = parse("Rsquare($close, 5)", "qlib")
    assert rsq.args[0].op == "mask" and rsq.args[0].param_dict == {"atol": 2e-05}
    for text in ("Mean($close, 5)", "Corr($close, $volume, 5)", "$close"):
        e = parse(text, "qlib")
        assert e.op == "mask" and e.args[1] == listed and "listed" in e.fields


def test_qlib_ema_is_pandas_span():
    e = bare(parse("EMA($close, 9)", "qlib"))
    assert e.op == "ema"
    assert e.param_dict == {"alpha": 0.2, "adjust": 1, "ignore_na": 0}
    assert bare(parse("EMA($close, 0.3)", "qlib")).param_dict["alpha"] == 0.3
    with pytest.raises(FormulaError, match="integer >= 1 or in \\(0, 1\\)"):
        parse("EMA($close, 2.5)", "qlib")


def test_qlib_uses_python_precedence():
    # in Python (and so in Qlib) & binds tighter than comparisons
    gt1 = F.gt(close, 1, nan_false=1), F.gt(open, 1, nan_false=1)
    qsame("($close > 1) & ($open > 1)", F.and_(*gt1, nan_false=1))
    qsame("-2 ** 2", F.neg(F.pow(Const(2), Const(2), ieee=1), ieee=1))
    qsame("2 ** -1", F.pow(Const(2), Const(-1), ieee=1))
    with pytest.raises(FormulaError, match="chained comparison '>' at 19"):
        parse("$close > 1 & $open > 1", "qlib")


def test_qlib_rejects_alpha101_syntax():
    with pytest.raises(FormulaError, match="'\\^' is not part of the qlib dialect at 7"):
        parse("$close ^ 2", "qlib")
    with pytest.raises(FormulaError, match="qlib fields are written '\\$close'"):
        parse("Ref(close, 1)", "qlib")
    with pytest.raises(FormulaError, match="unknown function 'ref' at 0; did you mean 'Ref'"):
        parse("ref($close, 1)", "qlib")
    with pytest.raises(FormulaError, match="'d' of delay must be >= 0, got -1 at 12"):
        parse("Ref($close, -1)", "qlib")
    with pytest.raises(FormulaError, match="expanding"):
        parse("Mean($close, 0)", "qlib")
    with pytest.raises(FormulaError, match="must be an integer"):
        parse("Mean($close, 2.5)", "qlib")


def test_every_alpha158_formula_parses():
    lines = [ln for ln in ALPHA158.read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 158
    for line in lines:
        name, formula = line.split("\t")
        e = parse(formula, "qlib")
        assert parse(repr(e)).key == e.key, name
        assert e.fields <= {"open", "high", "low", "close", "volume", "vwap", "listed"}, name


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("close # 2", "unexpected character '#' at 6", 6),
        ("3x + 1", "bad number '3x' at 0", 0),
        ("(close + open", "unbalanced '(' at 0", 0),
        ("close + open)", "unbalanced ')' at 12", 12),
        ("rank(close", "unbalanced '(' at 4", 4),
        ("close +", "unexpected end of formula at 7", 7),
        ("1 +* 2", "unexpected '*' at 3", 3),
        ("rank(ts_rnk(close, 5))", "unknown function 'ts_rnk' at 5; did you mean 'ts_rank'?", 5),
        (
            "clsoe + 1",
            "unknown field 'clsoe' at 0 (write other data columns as $clsoe); "
            "did you mean 'close'?",
            0,
        ),
        ("rank(close, 5)", "wrong number of arguments to 'rank' at 0", 0),
        ("ts_corr(close, 5)", "wrong number of arguments to 'ts_corr' at 0", 0),
        ("delay(close)", "wrong number of arguments to 'delay' at 0", 0),
        ("ts_mean(close, 0)", "'w' of ts_mean must be >= 1, got 0 at 15", 15),
        ("ts_mean(close, -3)", "'w' of ts_mean must be >= 1, got -3 at 15", 15),
        ("ts_mean(close, x)", "'w' of ts_mean must be a number, got an expression at 15", 15),
        ("ts_mean(close, 2 + 3)", "must be a number, got an expression at 15", 15),
        ("ts_mean(close, 'x')", "strings are not allowed in formulas at 15", 15),
        ("ts_mean(close, 5, span=2)", "ts_mean has no parameter 'span' at 18", 18),
        ("ts_mean(close, 5, w=5)", "parameter 'w' given twice at 18", 18),
        ("__import__('os').system('x')", "unknown function '__import__' at 0", 0),
        ("close.__class__", "attribute access is not allowed at 5", 5),
        ("lambda x: x", "'lambda' is not allowed at 0", 0),
        ("close[0]", "indexing is not allowed at 5", 5),
        ("'close'", "strings are not allowed in formulas at 0", 0),
        ("rank", "'rank' at 0 is a function; expected '(' after it", 0),
        ("(close)(1)", "unexpected '(' at 7; only names of functions can be called", 7),
        ("close ? 1", "expected ':' of 'cond ? a : b'", 9),
        ("rank(industry)", "group field 'industry' at 5 can only be the group argument", 5),
        ("IndNeutralize(close, close + 1)", "expected a group field", 21),
        ("close < open < high", "chained comparison '<' at 13", 13),
        ("", "empty formula", 0),
        ("close, open", "unexpected ',' at 5", 5),
        ("adv0", "adv needs a window >= 1", 0),
        ("close * 1e400", "number '1e400' at 8 is out of range", 8),
    ],
)
def test_errors_name_the_position_and_what_was_expected(text, message, position):
    with pytest.raises(FormulaError) as info:
        parse(text)
    err = info.value
    assert message in err.message
    assert err.position == position
    assert err.text == text
    if text:
        assert str(err).splitlines()[-1] == "  " + " " * position + "^"


def test_formula_error_is_a_value_error_and_reexported_by_engine():
    from engine.errors import FormulaError as EngineFormulaError

    assert EngineFormulaError is FormulaError
    assert issubclass(FormulaError, ValueError)


def test_unknown_dialect():
    with pytest.raises(ValueError, match="unknown dialect 'sql'"):
        parse("close", "sql")


def test_never_evaluates_python(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    attacks = [
        f"__import__('os').system('touch {marker}')",
        f"open('{marker}', 'w')",
        "().__class__.__bases__[0].__subclasses__()",
        "[x for x in ()]",
        "exec('1')",
    ]
    for text in attacks:
        with pytest.raises(FormulaError):
            parse(text)
        with pytest.raises(FormulaError):
            parse(text, "qlib")
    assert not marker.exists()


def test_whitespace_and_newlines_are_ignored():
    same("rank(\n  ts_corr(open,\tvolume, 10)\n)", rank(ts_corr(open, volume, 10)))
    same("  returns  ", returns)
    same("low", low)


_PIECES = [
    "close", "open", "$volume", "rank(", "ts_mean(", "Ref(", "Mean(", "min(", "IndNeutralize(",
    "IndClass.", "industry", "adv20", "(", ")", ",", "+", "-", "*", "/", "^", "**", "<", ">=",
    "==", "&&", "||", "&", "|", "!", "~", "?", ":", "=", ".", "1", "2.5", "0", "-3", "1e9",
    " ", "w", "min_periods", "'s'", "[", "lambda", "__import__", "EMA(", "$", "#",
]  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=14), st.sampled_from(["alpha101", "qlib"]))
def test_any_input_parses_or_raises_formula_error(pieces, dialect):
    text = "".join(pieces)
    try:
        e = parse(text, dialect)
    except FormulaError as err:
        assert err.position is None or 0 <= err.position <= len(text)
    else:
        assert parse(repr(e)).key == e.key
