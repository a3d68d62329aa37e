"""Cross-section kernels vs naive per-row references and vs pandas / bottleneck, one table."""

from __future__ import annotations

import math
from fractions import Fraction
from types import SimpleNamespace

import bottleneck as bn
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.kernels import cross_section as cs

# few distinct values -> many ties; NaN -> holes; some rows end up all-NaN or constant
_values = st.one_of(
    st.sampled_from([np.nan, 0.0, 1.0, -1.0, 2.5, 2.5, 7.0]),
    # rounded: squares of subnormal-scale values underflow, so the std of a row of them is 0
    # (kernels give NaN, pandas rescales); that scale does not occur in factor data
    st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: round(v, 9)),
)
panels = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12).flatmap(
    lambda shape: hnp.arrays(np.float64, shape, elements=_values)
)


# ---- naive per-row references: loops over the valid values of one row ------------------------


def _row_apply(x, f):
    out = np.full(x.shape, np.nan)
    for t in range(x.shape[0]):
        valid = [j for j in range(x.shape[1]) if not math.isnan(x[t, j])]
        vals = [float(x[t, j]) for j in valid]
        if not vals:
            continue
        for j, v in zip(valid, f(vals), strict=True):
            out[t, j] = v
    return out


def _naive_rank(vals):
    n = len(vals)
    return [(sum(u < v for u in vals) + (sum(u == v for u in vals) + 1) / 2) / n for v in vals]


def _naive_stats(vals):
    n = len(vals)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
    return mean, std


def _naive_zscore(vals):
    mean, std = _naive_stats(vals)
    if len(vals) < 2 or min(vals) == max(vals) or std == 0:
        return [math.nan] * len(vals)
    return [(v - mean) / std for v in vals]


def _naive_demean(vals):
    mean = sum(vals) / len(vals)
    return [v - mean for v in vals]


def _naive_scale(vals, a=1.0):
    s = sum(abs(v) for v in vals)
    return [v / s * a if s > 0 else math.nan for v in vals]


def _naive_winsorize(vals, k=3.0):
    if len(vals) < 2:
        return vals
    mean, std = _naive_stats(vals)
    return [min(max(v, mean - k * std), mean + k * std) for v in vals]


def _naive_bucket(vals, nb):
    m = len(vals)
    out = []
    for v in vals:
        pct = Fraction(2 * sum(u < v for u in vals) + sum(u == v for u in vals) + 1, 2 * m)
        out.append(float(math.ceil(pct * nb)))
    return out


# ---- peers -------------------------------------------------------------------------------------


def _pandas_rank(x):
    return pd.DataFrame(x).rank(axis=1, pct=True, method="average").to_numpy()


def _bottleneck_rank(x):
    counts = (~np.isnan(x)).sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return bn.nanrankdata(x, axis=1) / counts


def _pandas_zscore(x):
    df = pd.DataFrame(x)
    std = df.std(axis=1, ddof=1)
    flat = df.max(axis=1) == df.min(axis=1)
    out = df.sub(df.mean(axis=1), axis=0).div(std.where(~flat), axis=0)
    return out.to_numpy()


def _pandas_demean(x):
    df = pd.DataFrame(x)
    return df.sub(df.mean(axis=1), axis=0).to_numpy()


def _pandas_scale(x):
    df = pd.DataFrame(x)
    s = df.abs().sum(axis=1)
    return df.div(s.where(s > 0), axis=0).to_numpy()


def _pandas_winsorize(x):
    df = pd.DataFrame(x)
    mean, std = df.mean(axis=1), df.std(axis=1)
    out = df.clip(lower=mean - 3 * std, upper=mean + 3 * std, axis=0)
    return out.where(std.notna(), df, axis=0).to_numpy()


# name -> (kernel call, naive reference, peer reference)
TABLE = {
    "rank": (cs.rank, lambda x: _row_apply(x, _naive_rank), _pandas_rank),
    "rank_bottleneck": (cs.rank, lambda x: _row_apply(x, _naive_rank), _bottleneck_rank),
    "zscore": (cs.zscore, lambda x: _row_apply(x, _naive_zscore), _pandas_zscore),
    "demean": (cs.demean, lambda x: _row_apply(x, _naive_demean), _pandas_demean),
    "scale": (cs.scale, lambda x: _row_apply(x, _naive_scale), _pandas_scale),
    "winsorize": (cs.winsorize, lambda x: _row_apply(x, _naive_winsorize), _pandas_winsorize),
    "quantile_bucket": (
        lambda x: cs.quantile_bucket(x, 5),
        lambda x: _row_apply(x, lambda v: _naive_bucket(v, 5)),
        lambda x: np.ceil(_pandas_rank(x) * 5 - 1e-9),
    ),
}


def _close(got, want, what):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN pattern")
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=what)


def test_table_covers_every_kernel():
    covered = {name.split("_bottleneck")[0] for name in TABLE}
    assert covered == set(cs.KERNELS)


@pytest.mark.parametrize("name", sorted(TABLE))
@settings(max_examples=50, deadline=None)
@given(x=panels)
def test_matches_naive_and_peer(name, x):
    kernel, naive, peer = TABLE[name]
    got = kernel(x)
    assert got.shape == x.shape and got.dtype == np.float64
    _close(got, naive(x), f"{name} vs naive")
    _close(got, peer(x), f"{name} vs peer")


@settings(max_examples=40, deadline=None)
@given(x=panels, a=st.floats(0.1, 10), k=st.floats(0.1, 5), nb=st.integers(1, 12))
def test_parameters(x, a, k, nb):
    _close(cs.scale(x, a), _row_apply(x, lambda v: _naive_scale(v, a)), "scale(a)")
    _close(cs.winsorize(x, k), _row_apply(x, lambda v: _naive_winsorize(v, k)), "winsorize(k)")
    got = cs.quantile_bucket(x, nb)
    _close(got, _row_apply(x, lambda v: _naive_bucket(v, nb)), "quantile_bucket(n)")
    assert np.all((got[~np.isnan(got)] >= 1) & (got[~np.isnan(got)] <= nb))


@settings(max_examples=50, deadline=None)
@given(
    x=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=10),
        elements=st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0, -3.0]),
    )
)
def test_rank_with_infinities(x):
    """+inf ties with the NaN filler of the argsort; NaN cells must still be told apart."""
    _close(cs.rank(x), _pandas_rank(x), "rank vs pandas")
    _close(cs.rank(x), _row_apply(x, _naive_rank), "rank vs naive")
    _close(cs.quantile_bucket(x, 4), _row_apply(x, lambda v: _naive_bucket(v, 4)), "bucket")


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_rank_threaded_sort_matches_pandas(monkeypatch, threads):
    """Large panels argsort in row chunks on several threads; force that path on a small one."""
    monkeypatch.setattr(cs, "_PARALLEL_SORT_CELLS", 0)
    monkeypatch.setattr(cs, "numba", SimpleNamespace(get_num_threads=lambda: threads))
    rng = np.random.default_rng(threads)
    x = np.round(rng.normal(size=(37, 23)), 1)
    x[rng.random(x.shape) < 0.2] = np.nan
    x[5] = np.nan
    _close(cs.rank(x), _pandas_rank(x), "threaded rank")
    _close(cs.quantile_bucket(x, 5), _row_apply(x, lambda v: _naive_bucket(v, 5)), "bucket")


def test_documented_edge_cases():
    x = np.array([[np.nan, np.nan], [3.0, 3.0], [0.0, 0.0], [1.0, np.nan]])
    assert np.isnan(cs.rank(x)[0]).all()
    np.testing.assert_array_equal(cs.rank(x)[1], [0.75, 0.75])
    assert np.isnan(cs.zscore(x)).all()  # empty, constant, constant, single value
    assert np.isnan(cs.scale(x)[2]).all()  # all-zero row
    np.testing.assert_array_equal(cs.winsorize(x)[3], [1.0, np.nan])
    # a row of 0.1s whose float mean is not exactly 0.1 is still "all equal" -> NaN
    assert np.isnan(cs.zscore(np.full((1, 7), 0.1))).all()


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda: cs.rank(np.ones(4)), "x:"),
        (lambda: cs.quantile_bucket(np.ones((2, 2)), 0), "n must be"),
        (lambda: cs.quantile_bucket(np.ones((2, 2)), 2.0), "n must be"),
        (lambda: cs.scale(np.ones((2, 2)), float("nan")), "a must be"),
        (lambda: cs.winsorize(np.ones((2, 2)), -1.0), "k must be"),
        (lambda: cs.winsorize(np.ones((2, 2)), "3"), "k must be"),
    ],
)
def test_bad_arguments(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_warmup_runs():
    cs.warmup()
