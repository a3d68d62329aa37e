"""engine.kernels.extreme (van Herk / Gil-Werman) against a naive window scan, bit for bit.

The two implementations must agree bit for bit -- values, NaN pattern and the sign of zero --
on panels with NaN runs, ties, constant stretches, signed zeros and infinities, for every
window and min_periods, on narrow panels and on panels wider than one column block; plus
block invariance (a start one window early reproduces the whole-series bits) and argument
errors. rolling_order's own tests compare the deques with naive references and peers.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ts_reference import make_panel, panels, window_args

from engine.kernels import extreme, rolling_order
from engine.kernels._validate import COLUMNS_PER_BLOCK


def naive(name: str, x: np.ndarray, w: int, mp: int | None) -> np.ndarray:
    """Scan each window oldest to newest; NaN skipped; ties keep the oldest (its bits)."""
    mp = w if mp is None else mp
    is_max = name in ("ts_max", "ts_argmax")
    want_index = name in ("ts_argmax", "ts_argmin")
    out = np.full(x.shape, np.nan)
    for j in range(x.shape[1]):
        for t in range(x.shape[0]):
            start = max(0, t - w + 1)
            best, pos, n = np.nan, -1, 0
            for k in range(start, t + 1):
                v = x[k, j]
                if np.isnan(v):
                    continue
                n += 1
                if pos < 0 or (v > best if is_max else v < best):
                    best, pos = v, k
            if n >= mp:
                out[t, j] = float(pos - start + 1) if want_index else best
    return out


NAMES = sorted(extreme.KERNELS)


def _bits_equal(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype == np.float64, what
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    assert np.array_equal(nan_a, nan_b), f"{what}: NaN patterns differ"
    # NaN payloads aside, every value has the same bits (0.0 and -0.0 differ here).
    assert np.array_equal(a[~nan_a].view(np.int64), b[~nan_b].view(np.int64)), what


def _with_specials(x: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = x.copy()
    mask = rng.random(x.shape) < 0.1
    x[mask] = rng.choice([0.0, -0.0, np.inf, -np.inf], size=int(mask.sum()))
    return x


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_same_bits_as_a_naive_scan(name: str, data: st.DataObject) -> None:
    x, kind = data.draw(panels(max_t=80, max_n=6))
    if data.draw(st.booleans()):
        x = _with_specials(x, data.draw(st.integers(0, 2**32 - 1)))
    w, mp = data.draw(window_args(x.shape[0]))
    ours = extreme.KERNELS[name](x, w, mp)
    _bits_equal(ours, naive(name, x, w, mp), f"{name} ({kind}, w={w}, mp={mp})")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("w", [1, 2, 7, 20, 64])
def test_same_bits_on_a_panel_wider_than_one_block(name: str, w: int) -> None:
    n = 2 * COLUMNS_PER_BLOCK + 37  # two full column blocks and a partial one
    x = _with_specials(make_panel(w, 90, n, "ties", 0.1), w)
    for mp in (None, 1, max(1, w // 2)):
        ours = extreme.KERNELS[name](x, w, mp)
        _bits_equal(ours, naive(name, x, w, mp), f"{name} w={w} mp={mp}")


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=20, deadline=None)
@given(w=st.integers(1, 12), t0=st.integers(0, 150), seed=st.integers(0, 2**32 - 1))
def test_slice_one_window_early_reproduces_the_whole_series(name, w, t0, seed) -> None:
    x = make_panel(seed, 180, 4, "price", 0.1)
    full = extreme.KERNELS[name](x, w, 1)
    s = max(0, t0 - w + 1)
    part = extreme.KERNELS[name](x[s:], w, 1)
    _bits_equal(part[t0 - s :], full[t0:], f"{name} from row {s}")


def test_ties_go_to_the_oldest_row_and_positions_count_from_the_oldest() -> None:
    x = np.array([[1.0], [3.0], [3.0], [2.0], [np.nan], [0.0]])
    np.testing.assert_array_equal(extreme.ts_argmax(x, 3, 1)[:, 0], [1, 2, 2, 1, 1, 1])
    np.testing.assert_array_equal(extreme.ts_argmin(x, 3, 1)[:, 0], [1, 1, 1, 3, 2, 3])
    np.testing.assert_array_equal(extreme.ts_max(x, 3, 1)[:, 0], [1, 3, 3, 3, 3, 2])
    z = np.array([[0.0], [-0.0], [np.nan]])
    assert not np.signbit(extreme.ts_max(z, 3, 1)[1, 0])  # the older zero
    assert np.signbit(extreme.ts_max(z, 2, 1)[2, 0])  # only -0.0 left in the window


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True, None])
def test_bad_window_raises_clear_value_error(name: str, bad) -> None:
    with pytest.raises(ValueError, match="w must be an integer >= 1"):
        extreme.KERNELS[name](np.ones((4, 2)), bad)


def test_kernels_table_and_warmup() -> None:
    extreme.warmup()
    assert set(extreme.KERNELS) == {"ts_min", "ts_max", "ts_argmin", "ts_argmax"}
    assert set(extreme.KERNELS) <= set(rolling_order.KERNELS)
    out = extreme.ts_min(np.array([[1.0, 2.0], [3.0, np.nan]]), 2, 1)
    assert out.dtype == np.float64 and out.flags.c_contiguous
