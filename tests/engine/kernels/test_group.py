"""Group kernels vs naive per-(row, label) references and vs pandas groupby, one table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.kernels import group as gk

_values = st.one_of(
    st.sampled_from([np.nan, 0.0, 1.0, -1.0, 2.5, 7.0]),
    # rounded: squares of subnormal-scale values underflow, so the std of a row of them is 0
    # (kernels give NaN, pandas rescales); that scale does not occur in factor data
    st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: round(v, 9)),
)


@st.composite
def panels(draw):
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12))
    x = draw(hnp.arrays(np.float64, shape, elements=_values))
    g = draw(hnp.arrays(np.int64, shape, elements=st.integers(-1, 3)))
    return x, g


# ---- naive references: for each row and label, loop over the member cells --------------------


def _naive(x, g, f):
    out = np.full(x.shape, np.nan)
    for t in range(x.shape[0]):
        for lab in set(g[t].tolist()) - {-1}:
            cells = [j for j in range(x.shape[1]) if g[t, j] == lab and not math.isnan(x[t, j])]
            vals = [float(x[t, j]) for j in cells]
            if not vals:
                continue
            for j, v in zip(cells, f(vals), strict=True):
                out[t, j] = v
    return out


def _mean(vals):
    return sum(vals) / len(vals)


def _zs(vals):
    if len(vals) < 2 or min(vals) == max(vals):
        return [math.nan] * len(vals)
    m = _mean(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return [(v - m) / sd if sd > 0 else math.nan for v in vals]


def _rk(vals):
    n = len(vals)
    return [(sum(u < v for u in vals) + (sum(u == v for u in vals) + 1) / 2) / n for v in vals]


# ---- pandas peer: long format, groupby (row, label) ------------------------------------------


def _long(x, g):
    T, N = x.shape
    df = pd.DataFrame(
        {"row": np.repeat(np.arange(T), N), "label": g.ravel(), "x": x.ravel()},
    )
    df.loc[df["label"] < 0, "x"] = np.nan
    return df


def _pandas(how):
    def peer(x, g):
        df = _long(x, g)
        grouped = df.groupby(["row", "label"])["x"]
        if how == "rank":
            out = grouped.rank(pct=True, method="average")
        elif how == "mean":
            out = grouped.transform("mean")
        elif how == "neutralize":
            out = df["x"] - grouped.transform("mean")
        else:
            mean, std = grouped.transform("mean"), grouped.transform("std")
            flat = grouped.transform("max") == grouped.transform("min")
            out = (df["x"] - mean) / std.where(~flat)
        out = out.where(df["x"].notna())  # NaN cells stay NaN (documented)
        return out.to_numpy(dtype=np.float64).reshape(x.shape)

    return peer


TABLE = {
    "group_mean": (lambda x, g: _naive(x, g, lambda v: [_mean(v)] * len(v)), _pandas("mean")),
    "group_neutralize": (
        lambda x, g: _naive(x, g, lambda v: [u - _mean(v) for u in v]),
        _pandas("neutralize"),
    ),
    "group_zscore": (lambda x, g: _naive(x, g, _zs), _pandas("zscore")),
    "group_rank": (lambda x, g: _naive(x, g, _rk), _pandas("rank")),
}


def _close(got, want, what):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN pattern")
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=what)


def test_table_covers_every_kernel():
    assert set(TABLE) == set(gk.KERNELS)


@pytest.mark.parametrize("name", sorted(TABLE))
@settings(max_examples=50, deadline=None)
@given(xg=panels())
def test_matches_naive_and_pandas(name, xg):
    x, g = xg
    naive, peer = TABLE[name]
    got = gk.KERNELS[name](x, g)
    assert got.shape == x.shape and got.dtype == np.float64
    _close(got, naive(x, g), f"{name} vs naive")
    _close(got, peer(x, g), f"{name} vs pandas")


@pytest.mark.parametrize("name", sorted(TABLE))
def test_sparse_large_codes_are_compacted(name):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 8))
    small = rng.integers(-1, 3, size=x.shape)
    big = np.where(small >= 0, small * 10**12 + 7, -1)
    np.testing.assert_array_equal(gk.KERNELS[name](x, big), gk.KERNELS[name](x, small))


@settings(max_examples=50, deadline=None)
@given(
    x=hnp.arrays(np.float64, (4, 9), elements=st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0])),
    g=hnp.arrays(np.int64, (4, 9), elements=st.integers(-1, 2)),
)
def test_group_rank_with_infinities(x, g):
    _close(gk.group_rank(x, g), _pandas("rank")(x, g), "group_rank vs pandas")


def test_documented_edge_cases():
    x = np.array([[1.0, 3.0, np.nan, 5.0, 2.0]])
    g = np.array([[0, 0, 0, -1, 1]])
    np.testing.assert_array_equal(gk.group_mean(x, g), [[2.0, 2.0, np.nan, np.nan, 2.0]])
    np.testing.assert_array_equal(gk.group_neutralize(x, g), [[-1.0, 1.0, np.nan, np.nan, 0.0]])
    np.testing.assert_array_equal(gk.group_rank(x, g), [[0.5, 1.0, np.nan, np.nan, 1.0]])
    z = gk.group_zscore(x, g)
    assert np.isnan(z[0, 2:]).all() and z[0, 0] == -z[0, 1]  # singleton group -> NaN
    assert np.isnan(gk.group_mean(x, np.full((1, 5), -1))).all()


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda: gk.group_mean(np.ones((2, 2)), np.zeros((2, 3), dtype=np.int64)), "same shape"),
        (lambda: gk.group_mean(np.ones((2, 2)), np.zeros((2, 2))), "g: expected integer"),
        (lambda: gk.group_mean(np.ones((2, 2)), np.full((2, 2), -2)), "g: group codes"),
        (lambda: gk.group_rank(np.ones((2, 2)), np.zeros(2, dtype=np.int64)), "g: expected a 2-D"),
        (lambda: gk.group_zscore(np.ones(2), np.zeros((2, 2), dtype=np.int64)), "x:"),
    ],
)
def test_bad_arguments(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_warmup_runs():
    gk.warmup()
