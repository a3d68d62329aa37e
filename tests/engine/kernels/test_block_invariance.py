"""Every windowed time-series kernel gives the same bits on a slice as on the whole series.

This is the contract the block executor relies on (``engine.plan``): a kernel started at
the row the planner chooses — ``lookback`` rows before the first row needed, or, for the
running-sum kernels of ``BLOCK_ALIGNED``, a multiple of ``w`` at least one window before it —
must reproduce the whole-panel values on every needed row exactly, not to a tolerance:
downstream ranks and comparisons turn last-bit differences into different answers.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels import BLOCK_ALIGNED, KERNELS
from engine.plan import _own_lookback
from factors.operators import OPERATORS

WINDOWED = sorted(
    name for name, op in OPERATORS.items() if op.kind == "ts" and op.memory == "window"
)


def _params(op, w: int, minp_full: bool) -> dict:
    out = {}
    for p in op.params:
        if p.name in ("w", "d"):
            out[p.name] = w
        elif p.name == "min_periods":
            out[p.name] = w if minp_full else 1
        elif p.name == "q":
            out[p.name] = 0.3
        elif p.name == "ddof":
            out[p.name] = 1
    return out


def _panel(rng: np.random.Generator, t: int, n: int, scale: float) -> np.ndarray:
    x = scale * np.exp(np.cumsum(rng.standard_t(4, size=(t, n)) * 0.02, axis=0))
    x[rng.random((t, n)) < 0.08] = np.nan
    x[10:14, 0] = np.nan  # a halt
    x[:, 1] = np.round(x[:, 1], 1)  # ties
    return x


@pytest.mark.parametrize("op_name", WINDOWED)
@settings(max_examples=12, deadline=None)
@given(
    w=st.integers(1, 12),
    t0=st.integers(0, 150),
    minp_full=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_slice_reproduces_whole_series(op_name, w, t0, minp_full, seed):
    op = OPERATORS[op_name]
    rng = np.random.default_rng(seed)
    arrays = [_panel(rng, 180, 4, scale) for scale in (100.0, 1e7)[: op.inputs]]
    params = _params(op, w, minp_full)
    full = KERNELS[op_name](*arrays, **params)
    if op_name in BLOCK_ALIGNED:
        s = max(0, (t0 // w - 1) * w)
    else:
        own = op.lookback(params)
        s = max(0, t0 - own)
    part = KERNELS[op_name](*[a[s:] for a in arrays], **params)
    np.testing.assert_array_equal(part[t0 - s :], full[t0:], err_msg=f"{op_name} from row {s}")


def test_planner_gives_aligned_kernels_two_windows():
    from factors import close, ts_mean

    assert _own_lookback(ts_mean(close, 10)) == 19
