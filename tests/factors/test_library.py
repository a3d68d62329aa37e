"""The bundled factor libraries: they parse, carry their documented names, evaluate, and agree
with independent pandas transcriptions (``tests/factors/oracles``).

- alpha101: all 101 alphas parse and evaluate on a synthetic panel and on the real sample; 46
  of them equal a pandas transcription of the paper to 1e-9 (relative to each alpha's scale;
  three that rank exactly tied statistics are compared up to the order of their ties).
- alpha158: all 158 features equal a pandas transcription of Qlib's operators under Qlib's
  exact conventions (NaN compares False, IdxMax lands on a NaN, +-inf, per-instrument spans),
  cell for cell with the same NaN/inf pattern at float32 precision, on a synthetic panel with
  listings, delistings, halts, zero volumes and zero opens, and on the real sample.
- technical: all 12 indicators parse and evaluate.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.errors import PlanError
from engine.evaluate import evaluate
from engine.panel import Panel
from engine.sources import sample, synthetic
from factors import library
from factors.errors import FormulaError
from factors.expr import Call, Expr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oracles import alpha101_pandas, qlib_pandas  # noqa: E402

ALPHA158_PREFIXES = (
    "ROC MA STD BETA RSQR RESI MAX MIN QTLU QTLD RANK RSV IMAX IMIN IMXD CORR CORD CNTP CNTN "
    "CNTD SUMP SUMN SUMD VMA VSTD WVMA VSUMP VSUMN VSUMD"
).split()
ALPHA158_NAMES = "KMID KLEN KMID2 KUP KUP2 KLOW KLOW2 KSFT KSFT2 OPEN0 HIGH0 LOW0 VWAP0".split() + [
    f"{p}{d}" for p in ALPHA158_PREFIXES for d in qlib_pandas.WINDOWS
]
TECHNICAL_NAMES = (
    "RSI14 MACD MACD_SIGNAL MACD_HIST ATR14 BBP20 STOCHK14 STOCHD14 WILLR14 CCI20 OBV MFI14"
).split()
WARMUP = 260  # rows: the longest alpha101 lookback is 251 (alpha048)

# Alphas with no finite value at all, and why (asserted below, so a change is noticed):
# alpha096 = max(A, B) where B = Ts_Rank(decay_linear(Ts_ArgMax(correlation(Ts_Rank(close, 7),
# Ts_Rank(adv60, 4), 3), 12), 14), 13): a 3-day correlation of two ts_ranks (values k/7, k/4)
# is often over a constant window -> NaN, and the full windows (min_periods = window) that
# follow (12, then 14, then 13 rows of valid values) almost never fill; A is like that too.
ALL_NAN_ALPHAS = {"alpha096"}


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def panel():
    """Synthetic 300 x 40 panel with listings, delistings and halts (NaN runs)."""
    return synthetic(n_symbols=40, n_dates=300, seed=7)


@pytest.fixture(scope="module")
def real_panel():
    return sample()


@pytest.fixture(scope="module")
def alpha101_values(panel):
    return evaluate(library.load("alpha101"), panel)


def _wide(panel, names) -> dict[str, pd.DataFrame]:
    return {
        n: pd.DataFrame(np.asarray(panel[n], dtype=np.float64), panel.dates, panel.symbols)
        for n in names
    }


# ---------------------------------------------------------------------------------------------
# parsing and names
# ---------------------------------------------------------------------------------------------
def test_library_names_and_unknown_library():
    assert library.names() == ["alpha101", "alpha158", "technical"]
    with pytest.raises(KeyError, match="unknown factor library 'alpha191'"):
        library.load("alpha191")


def test_alpha101_all_parse_with_documented_names():
    alphas = library.load("alpha101")
    assert list(alphas) == [f"alpha{i:03d}" for i in range(1, 102)]
    assert all(isinstance(e, Expr) for e in alphas.values())
    text = library.formulas("alpha101")
    assert text["alpha001"].startswith("(rank(Ts_ArgMax(SignedPower(")
    assert text["alpha101"] == "((close - open) / ((high - low) + .001))"


def _calls(expr: Expr) -> list[Call]:
    return [n for n in expr.walk() if isinstance(n, Call)]


def _params(expr: Expr, op: str) -> list[dict]:
    return [dict(c.params) for c in _calls(expr) if c.op == op]


def test_alpha101_paper_notation_is_read_as_the_paper_means():
    a = library.load("alpha101")
    # fractional windows are floored: correlation(vwap, sum(adv20, 22.4101), 9.91009)
    assert {p["w"] for p in _params(a["alpha062"], "ts_corr")} == {9}
    assert {p["w"] for p in _params(a["alpha062"], "ts_sum")} == {22}
    # min(x, 5) with a number is ts_min; max(a, b) of two expressions is elementwise
    assert 5 in {p["w"] for p in _params(a["alpha029"], "ts_min")}
    assert a["alpha071"].op == "greater" and a["alpha077"].op == "less"
    # IndNeutralize(x, IndClass.sector) is a group neutralisation on the 'sector' labels
    (gn,) = [c for c in _calls(a["alpha058"]) if c.op == "group_neutralize"]
    assert gn.args[-1].name == "sector"
    # adv20 and cap are fields/derived fields the alphas read
    assert {"amount", "volume"} <= a["alpha007"].fields
    assert "cap" in a["alpha056"].fields
    assert a["alpha048"].lookback == 251


def test_alpha158_all_parse_with_qlib_names():
    features = library.load("alpha158")
    assert list(features) == ALPHA158_NAMES
    assert len(features) == 158
    assert library.formulas("alpha158")["CORD5"] == (
        "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), 5)"
    )
    # Qlib's policy: rolling operators need one valid value (min_periods=1)
    assert _params(features["MA20"], "ts_mean") == [{"w": 20, "min_periods": 1}]


def test_alpha158_file_keeps_its_provenance():
    head = (Path(library.__file__).parent / "alpha158.tsv").read_text().splitlines()[:3]
    assert any("microsoft/qlib" in line and "loader.py" in line for line in head)
    assert any("MIT" in line for line in head)


def test_technical_all_parse_with_documented_names():
    tech = library.load("technical")
    assert list(tech) == TECHNICAL_NAMES
    assert tech["RSI14"].op == "rsi" and dict(tech["RSI14"].params)["n"] == 14
    assert dict(tech["STOCHD14"].params) == {"n": 14, "m": 3}


def test_load_parses_once_and_returns_fresh_dicts():
    first, second = library.load("alpha158"), library.load("alpha158")
    assert first == second and first is not second
    assert all(first[k] is second[k] for k in first)  # the parsed graphs are cached
    first.clear()
    assert len(library.load("alpha158")) == 158


def test_a_bad_formula_names_its_library_and_factor(monkeypatch):
    bad = {"alpha001": "rank(close", "alpha002": "close"}
    monkeypatch.setattr(library, "_formulas", lambda name: bad)
    library._load.cache_clear()
    try:
        with pytest.raises(FormulaError, match="alpha101/alpha001"):
            library.load("alpha101")
    finally:
        library._load.cache_clear()


# ---------------------------------------------------------------------------------------------
# evaluation on synthetic and real data
# ---------------------------------------------------------------------------------------------
def _all_nan(values: dict[str, np.ndarray], start: int) -> set[str]:
    return {k for k, v in values.items() if not np.isfinite(v[start:]).any()}


def test_alpha101_evaluates_on_synthetic(panel, alpha101_values):
    assert set(alpha101_values) == set(library.load("alpha101"))
    assert all(v.shape == panel.shape for v in alpha101_values.values())
    assert _all_nan(alpha101_values, WARMUP) == ALL_NAN_ALPHAS


def test_alpha101_evaluates_on_real_sample(real_panel):
    assert "cap" not in real_panel  # the real data has no market capitalisation ...
    alphas = library.load("alpha101")
    with pytest.raises(PlanError, match="unknown field 'cap'"):
        evaluate({"alpha056": alphas.pop("alpha056")}, real_panel)  # ... so alpha056 can't run
    values = evaluate(alphas, real_panel)
    assert len(values) == 100
    assert _all_nan(values, WARMUP) == ALL_NAN_ALPHAS


@pytest.mark.parametrize("name", ["alpha158", "technical"])
def test_library_evaluates_on_synthetic_and_real_sample(name, panel, real_panel):
    for data in (panel, real_panel):
        values = evaluate(library.load(name), data)
        assert len(values) == len(library.formulas(name))
        assert _all_nan(values, 60) == set()


# ---------------------------------------------------------------------------------------------
# alpha101 against the pandas transcription
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def alpha101_oracle(panel):
    fields = _wide(panel, ["open", "high", "low", "close", "volume", "vwap", "returns", "cap"])
    fields["amount"] = _wide(panel, ["amount"])["amount"]
    labels = pd.DataFrame(panel.groups["industry"], panel.dates, panel.symbols)
    groups = {level: labels for level in ("sector", "industry", "subindustry")}
    return alpha101_pandas.compute(
        fields, groups, adv=lambda f, d: alpha101_pandas.ts_mean(f["amount"], d)
    )


def test_alpha101_oracle_covers_enough_alphas():
    assert len(alpha101_pandas.transcribed()) >= 20


# rank() of a statistic that takes exactly equal values on several stocks: the covariance of
# two ranks over 5 days is a multiple of 1/(4 n^2), a sum of two ranks a multiple of 1/n, so
# ties are frequent, and the last-bit roundings of the kernels and of pandas break them in
# different directions. These alphas are compared "up to ties": same NaN pattern, and within
# each group of stocks whose statistic ties (to 1e-12 relative) on a date, the same sum of
# ranks (the ranks a tie group occupies).
def _alpha034_statistic(f: dict[str, pd.DataFrame]) -> pd.DataFrame:
    vol = alpha101_pandas.div(
        alpha101_pandas.stddev(f["returns"], 2), alpha101_pandas.stddev(f["returns"], 5)
    )
    return (1 - rank(vol)) + (1 - rank(alpha101_pandas.delta(f["close"], 1)))


rank = alpha101_pandas.rank
TIE_SENSITIVE = {
    "alpha013": lambda f: alpha101_pandas.covariance(rank(f["close"]), rank(f["volume"]), 5),
    "alpha016": lambda f: alpha101_pandas.covariance(rank(f["high"]), rank(f["volume"]), 5),
    "alpha034": _alpha034_statistic,
}


def _tie_group_sums(values: np.ndarray, key: np.ndarray) -> list[float]:
    sums = []
    for t in range(values.shape[0]):
        ok = np.isfinite(key[t])
        if not ok.any():
            continue
        k = key[t, ok]
        rounded = np.round(k / max(np.abs(k).max(), 1e-300), 12)
        for g in np.unique(rounded):
            sums.append(float(values[t, ok][rounded == g].sum()))
    return sums


@pytest.mark.parametrize("name", alpha101_pandas.transcribed())
def test_alpha101_matches_pandas_transcription(name, panel, alpha101_values, alpha101_oracle):
    ours, expected = alpha101_values[name], alpha101_oracle[name].to_numpy()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected), err_msg=f"{name} NaN")
    finite = np.isfinite(expected)
    assert finite[WARMUP:].any(), f"{name}: the oracle has no value to compare"
    scale = np.abs(expected[finite]).max()
    if name in TIE_SENSITIVE:
        key = TIE_SENSITIVE[name](_wide(panel, ["close", "high", "volume", "returns"]))
        key = key.to_numpy()
        ours, expected = _tie_group_sums(ours, key), _tie_group_sums(expected, key)
        np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-9 * scale)
        return
    np.testing.assert_allclose(ours[finite], expected[finite], rtol=1e-9, atol=1e-9 * scale)


# ---------------------------------------------------------------------------------------------
# alpha158 against the Qlib-semantics transcription
# ---------------------------------------------------------------------------------------------
QLIB_FIELDS = ("open", "high", "low", "close", "volume", "vwap")


def _assert_float32_equal(name: str, ours: np.ndarray, expected: np.ndarray) -> None:
    ours = ours.astype(np.float32)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected), err_msg=f"{name} NaN")
    inf = np.isinf(expected) | np.isinf(ours)
    np.testing.assert_array_equal(ours[inf], expected[inf], err_msg=f"{name} +-inf")
    finite = np.isfinite(expected)
    np.testing.assert_allclose(ours[finite], expected[finite], rtol=2e-5, atol=1e-6, err_msg=name)


def _with_zeros(panel, seed: int = 3):
    """``panel`` with zero volume on ~1% of its traded cells (half of them two days running:
    x/0 = inf next to 0/0 = NaN) and a zero open on a few (KMID & co. divide by the open)."""
    rng = np.random.default_rng(seed)
    fields = {f: np.array(panel[f], dtype=np.float64) for f in QLIB_FIELDS}
    traded = np.argwhere(~np.isnan(fields["volume"][:-1]))
    pick = traded[rng.random(len(traded)) < 0.01]
    fields["volume"][pick[:, 0], pick[:, 1]] = 0.0
    run = pick[: len(pick) // 2]
    nxt = fields["volume"][run[:, 0] + 1, run[:, 1]]
    fields["volume"][run[:, 0] + 1, run[:, 1]] = np.where(np.isnan(nxt), np.nan, 0.0)
    zero_open = traded[rng.random(len(traded)) < 0.001]
    fields["open"][zero_open[:, 0], zero_open[:, 1]] = 0.0
    return Panel(panel.dates, panel.symbols, fields, panel.groups, panel.group_labels)


@pytest.fixture(scope="module")
def qlib_panels(panel, real_panel):
    """Panels with listings, delistings, halts and zero volumes: synthetic and the real sample."""
    return {"synthetic": _with_zeros(panel), "sample": real_panel}


@pytest.fixture(scope="module")
def alpha158_pairs(qlib_panels):
    """panel label -> (our alpha158 values, the Qlib-exact oracle's)."""
    out = {}
    for label, data in qlib_panels.items():
        ours = evaluate(library.load("alpha158"), data)
        exact = qlib_pandas.alpha158(_wide(data, QLIB_FIELDS), mode="qlib")
        out[label] = (ours, exact)
    return out


@pytest.mark.parametrize("label", ["synthetic", "sample"])
@pytest.mark.parametrize("name", ALPHA158_NAMES)
def test_alpha158_matches_exact_qlib_semantics(name, label, alpha158_pairs):
    """Qlib's own conventions, cell for cell: NaN compares False, IdxMax lands on a NaN, x/0 is
    +-inf, rolling windows read +-inf as NaN, and every instrument exists only over its own
    first..last row (the 'listed' field)."""
    ours, exact = alpha158_pairs[label]
    _assert_float32_equal(name, ours[name], exact[name].to_numpy())


def test_alpha158_test_panels_hit_qlib_corner_cases(qlib_panels, alpha158_pairs):
    syn = qlib_panels["synthetic"]
    listed = np.asarray(syn["listed"])
    assert np.isnan(listed[0]).any() and np.isnan(listed[-1]).any()  # listings, delistings
    close = np.asarray(syn["close"])
    assert (np.isnan(close) & ~np.isnan(listed)).any()  # halts inside the span
    assert (np.asarray(syn["volume"]) == 0).sum() > 10
    ours, exact = alpha158_pairs["synthetic"]
    assert np.isinf(ours["KMID"]).any()  # x/0 -> inf, as Qlib
    # Qlib counts the first row's NaN comparison as False: CNTP5 is 0, not NaN, on row 0
    assert exact["CNTP5"].iloc[0].dropna().eq(0).all() and (ours["CNTP5"][0] == 0).any()
    # nothing after a delisting, where min_periods=1 windows would still have values
    assert np.isnan(ours["MA60"][np.isnan(listed)]).all()


def test_alpha158_oracle_alphaforge_mode_is_the_alpha101_conventions(panel):
    """The oracle's "alphaforge" mode (comparisons with a NaN side NaN, IdxMax skipping NaN,
    x/0 NaN, no spans) is what the same formulas give under the alpha101 dialect's policies."""
    from factors.parser import parse

    def alpha101_policies(e):
        if not isinstance(e, Call):
            return e
        if e.op == "mask":
            return alpha101_policies(e.args[0])
        if e.op in ("ts_argmax_listed", "ts_argmin_listed"):
            return Call(e.op.removesuffix("_listed"), (alpha101_policies(e.args[0]),), e.params)
        if e.op == "inf_to_nan":
            return alpha101_policies(e.args[0])
        params = [(k, 0 if k in ("ieee", "nan_false", "nan_first") else v) for k, v in e.params]
        return Call(e.op, [alpha101_policies(a) for a in e.args], params)

    text = library.formulas("alpha158")
    names = ["KMID", "CNTP5", "IMAX10", "IMXD60", "VSUMD20", "CORR5", "MA60"]
    exprs = {n: alpha101_policies(parse(text[n], "qlib")) for n in names}
    ours = evaluate(exprs, panel)
    expected = qlib_pandas.alpha158(_wide(panel, QLIB_FIELDS), mode="alphaforge")
    for name in names:
        _assert_float32_equal(name, ours[name], expected[name].to_numpy())
