"""The reference evaluator: hand-computed cases, pandas comparisons, sharing, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import factors as F
from engine.errors import PlanError
from engine.evaluate import evaluate, resolve_group
from engine.kernels import KERNELS
from engine.panel import Panel
from factors import close, delay, open, rank, ts_corr, ts_mean, volume

T, N = 80, 6


def make_panel(seed: int = 0, nan: bool = True) -> Panel:
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    o = c * np.exp(rng.normal(0, 0.01, (T, N)))
    h = np.maximum(o, c) * 1.01
    lo = np.minimum(o, c) * 0.99
    v = rng.lognormal(10, 1, (T, N))
    if nan:
        c[5, 1] = np.nan
        c[40:43, 3] = np.nan
        v[10, 2] = np.nan
    industry = np.tile(np.array([0, 0, 1, 1, 2, -1]), (T, 1))
    dates = pd.bdate_range("2020-01-01", periods=T)
    return Panel(
        dates,
        [f"S{i}" for i in range(N)],
        {"open": o, "high": h, "low": lo, "close": c, "volume": v},
        {"industry": industry},
    )


@pytest.fixture(scope="module")
def panel() -> Panel:
    return make_panel()


def frame(panel: Panel, name: str) -> pd.DataFrame:
    return pd.DataFrame(panel[name])


def assert_same(got: np.ndarray, expected, rtol: float = 1e-9) -> None:
    expected = np.asarray(expected, dtype=float)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-12, equal_nan=True)


# ---------------------------------------------------------------- hand-computed


class Tiny:
    """Any object with __getitem__ and .groups works as a panel."""

    def __init__(self):
        self.data = {
            "close": np.array([[1.0, 2.0], [2.0, 4.0], [4.0, 3.0], [3.0, np.nan]]),
            "open": np.array([[1.0, 1.0], [1.0, 5.0], [5.0, 1.0], [1.0, 1.0]]),
        }
        self.groups = {"sector": np.array([[0, 0]] * 4, dtype=np.int64)}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]


def test_hand_computed_small_examples():
    nan = np.nan
    out = evaluate(
        {
            "sum": "close + open",
            "lag": "delay(close, 1)",
            "mean2": "ts_mean(close, 2)",
            "rank": "rank(close)",
            "neg": "-close",
            "cond": "close > open ? 1 : -1",
            "const": "2",
            "neut": "IndNeutralize(close, IndClass.industry)",
        },
        Tiny(),
    )
    assert_same(out["sum"], [[2, 3], [3, 9], [9, 4], [4, nan]])
    assert_same(out["lag"], [[nan, nan], [1, 2], [2, 4], [4, 3]])
    assert_same(out["mean2"], [[nan, nan], [1.5, 3], [3, 3.5], [3.5, nan]])
    assert_same(out["rank"], [[0.5, 1], [0.5, 1], [1, 0.5], [1, nan]])
    assert_same(out["neg"], [[-1, -2], [-2, -4], [-4, -3], [-3, nan]])
    assert_same(out["cond"], [[-1, 1], [1, -1], [-1, 1], [1, nan]])
    assert_same(out["const"], np.full((4, 2), 2.0))
    # no 'industry' level in this panel: IndClass.industry falls back to 'sector'
    assert_same(out["neut"], [[-0.5, 0.5], [-1, 1], [0.5, -0.5], [0, nan]])


def test_qlib_dialect_strings(panel):
    out = evaluate({"m": "Mean($close, 3)", "r": "Ref($close, 2)"}, panel, dialect="qlib")
    c = frame(panel, "close").astype(np.float32)  # Qlib reads its float32 store
    assert_same(out["m"], c.rolling(3, min_periods=1).mean())
    assert_same(out["r"], c.shift(2).astype(np.float64))


# ---------------------------------------------------------------- against pandas


def test_composite_formulas_match_pandas(panel):
    c, o, v = frame(panel, "close"), frame(panel, "open"), frame(panel, "volume")
    formulas = {
        "mom": close / delay(close, 20) - 1,
        "corr_rank": rank(ts_corr(open, volume, 10)),
        "zs": (close - ts_mean(close, 10)) / F.ts_std(close, 10),
        "alpha": "-1 * correlation(rank(delta(log(volume), 2)), rank((close - open) / open), 6)",
        "qlib_kmid": F.parse("($close-$open)/$open", "qlib"),
    }
    out = evaluate(formulas, panel)
    assert_same(out["mom"], c / c.shift(20) - 1)
    corr = o.rolling(10).corr(v)
    assert_same(out["corr_rank"], corr.rank(axis=1, pct=True))
    assert_same(out["zs"], (c - c.rolling(10).mean()) / c.rolling(10).std())
    a = np.log(v).diff(2).rank(axis=1, pct=True)
    b = ((c - o) / o).rank(axis=1, pct=True)
    assert_same(out["alpha"], -1 * a.rolling(6).corr(b), rtol=1e-7)
    c32, o32 = c.astype(np.float32), o.astype(np.float32)  # Qlib: float32 arithmetic
    assert_same(out["qlib_kmid"], ((c32 - o32) / o32).astype(np.float64))


def test_alpha158_style_formula_matches_pandas(panel):
    text = (
        "(Sum(Greater($close-Ref($close, 1), 0), 10)-Sum(Greater(Ref($close, 1)-$close, 0), 10))"
        "/(Sum(Abs($close-Ref($close, 1)), 10)+1e-12)"
    )
    out = evaluate({"cntd": text}, panel, dialect="qlib")["cntd"]
    c = frame(panel, "close").astype(np.float32)  # Qlib: float32 until the rolling sums
    d = c - c.shift(1)
    up = np.maximum(d, 0).rolling(10, min_periods=1).sum()
    down = np.maximum(-d, 0).rolling(10, min_periods=1).sum()
    total = d.abs().rolling(10, min_periods=1).sum()
    assert_same(out, (up - down) / (total + 1e-12))


def test_group_neutralize_matches_pandas(panel):
    out = evaluate({"n": "IndNeutralize(close, IndClass.industry)"}, panel)["n"]
    c = frame(panel, "close")
    g = panel["industry"][0]
    expected = c.copy()
    for label in set(g) - {-1}:
        cols = np.flatnonzero(g == label)
        expected.iloc[:, cols] = c.iloc[:, cols].sub(c.iloc[:, cols].mean(axis=1), axis=0)
    expected.iloc[:, np.flatnonzero(g == -1)] = np.nan
    assert_same(out, expected)


# ---------------------------------------------------------------- sharing and memory


def test_each_distinct_node_is_computed_once(panel):
    calls: list[str] = []

    def counting(op):
        def run(*args, **kwargs):
            calls.append(op)
            return KERNELS[op](*args, **kwargs)

        return run

    kernels = {op: counting(op) for op in KERNELS}
    shared = ts_corr(open, volume, 10)
    out = evaluate(
        {"a": rank(shared), "b": -shared, "c": "rank(ts_corr(open, volume, 10))"},
        panel,
        kernels=kernels,
    )
    assert calls.count("ts_corr") == 1
    assert calls.count("rank") == 1
    assert_same(out["a"], out["c"])
    assert out["a"] is not out["c"]  # equal factors still get their own arrays


def test_results_never_alias_the_panel(panel):
    out = evaluate({"c": "close"}, panel)
    assert out["c"] is not panel["close"]
    out["c"][:] = 0.0
    assert not np.all(panel["close"] == 0.0)


def test_same_result_with_and_without_other_factors(panel):
    alone = evaluate({"x": "rank(ts_mean(close, 5)) * volume"}, panel)["x"]
    together = evaluate(
        {"y": "ts_mean(close, 5)", "x": "rank(ts_mean(close, 5)) * volume", "z": "volume"},
        panel,
    )["x"]
    assert_same(together, alone, rtol=0)


# ---------------------------------------------------------------- errors


def test_unknown_field_is_a_plan_error(panel):
    with pytest.raises(PlanError, match="unknown field 'pe'"):
        evaluate({"x": F.field("pe") + 1}, panel)


def test_bare_panel_columns_parse(panel):
    out = evaluate({"x": "high - low"}, panel)
    assert_same(out["x"], frame(panel, "high") - frame(panel, "low"))


def test_unknown_group_names_the_panel_groups(panel):
    with pytest.raises(PlanError, match="unknown group field 'country'.*industry"):
        resolve_group(panel, "country")
    assert resolve_group(panel, "subindustry") is panel.groups["industry"]


def test_bad_factor_type(panel):
    with pytest.raises(TypeError, match="must be an Expr or a formula string"):
        evaluate({"x": 3}, panel)


def test_formula_errors_propagate(panel):
    with pytest.raises(F.FormulaError, match="unknown function"):
        evaluate({"x": "ts_rnk(close, 5)"}, panel)


# ---------------------------------------------------------------- every operator


_SAMPLE_PARAMS = {"w": 5, "d": 2, "q": 0.3, "alpha": 0.4, "n": 5, "m": 2, "lo": 90.0, "hi": 110.0}


@pytest.mark.parametrize("op", sorted(F.OPERATORS))
def test_every_operator_evaluates_through_its_kernel(panel, op):
    spec = F.OPERATORS[op]
    params = {p.name: _SAMPLE_PARAMS[p.name] for p in spec.params if p.required}
    if spec.kind == "group":
        args = (close, F.field("industry"))
    elif op in ("rsi", "macd", "macd_signal", "macd_hist", "bbands_pctb"):
        args = (close,)
    elif op == "obv":
        args = (close, volume)
    elif spec.kind == "technical":  # (high, low, close[, volume])
        args = (F.high, F.low, close, volume)[: spec.inputs]
    else:
        args = (close, open, volume)[: spec.inputs]
    expr = F.call(op, *args, **params)
    got = evaluate({"x": expr}, panel)["x"]
    arrays = [
        panel.groups["industry"]
        if isinstance(a, F.Field) and a.name == "industry"
        else panel[a.name]
        for a in args
    ]
    direct = KERNELS[op](*arrays, **dict(expr.params))
    assert got.dtype == np.float64 and got.shape == panel.shape
    np.testing.assert_array_equal(got, direct)
    assert np.isfinite(got).any(), op
