"""Benchmark: time-series kernels vs pandas, bottleneck, numbagg and TA-Lib, on the same input.

Our users hold a (dates, symbols) float64 panel, C-contiguous, time on axis 0, and want the
result in the same layout. Every peer is timed three ways, all in the same run, repeats
interleaved (one round of every implementation, then the next round), median reported:

* **on our layout** -- the peer called on that very array (pandas ``DataFrame.rolling`` on the
  wide frame; bottleneck/numbagg along axis 0; TA-Lib, which takes 1-D contiguous series only,
  on a contiguous copy of each column, the copy timed);
* **preferred layout, +T** -- the peer on its fastest layout (symbol-major rows), *with* the
  transposing copies in and out timed: what it costs a user who starts from our panel;
* **preferred layout** -- the same without the copies (not a same-input comparison; shown
  for reference only).

``ours/best`` is ours over the fastest same-input peer (on our layout or +T); ``/long`` is ours
over pandas' long-format ``groupby(symbol).rolling`` (how a long-format pipeline computes it;
slow, so it runs on the first ``--long-symbols`` symbols and is scaled to Mcells/s). TA-Lib has
no NaN handling, so it gets a gap-free copy of the panel (filled before timing); its STDDEV
divides by n (same cost). Semantics differ slightly among peers (NaN handling, ddof, seeding);
the point is the cost of computing the same statistic. The machine may be shared: the load
average is printed; compare ratios, not absolute numbers.

Windows are 20 (10 for pairs), min_periods = window; ``ts_quantile(20)`` is q = 0.3 (pandas:
linear interpolation); ``delay(20)``/``delta(20)`` use d = 20 against a numpy shift/difference.
Kernels without a peer computing the same statistic are not listed: ``ts_mad`` (no rolling
mean-absolute-deviation in any peer) and ``ts_product`` (numbagg has no ``move_prod``; pandas
``rolling().apply(np.prod)`` is a Python call per window, not a fair peer).

    PYTHONPATH=. python bench/bench_kernels_ts.py [--small] [--repeat 5] [--only mean,max]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import bottleneck as bn
import numba
import numbagg
import numpy as np
import pandas as pd
import talib

from engine.kernels import KERNELS, ewm, extreme, rolling, rolling_order, rolling_pair

# Implementation labels: which are same-input peers, which are for reference only.
OURS = "ours"
LONG = "pandas long groupby"
REFERENCE_ONLY = "(preferred layout)"  # a suffix: input already symbol-major, copies untimed


def _panel(T: int, N: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A price-like and a volume-like panel with ~2% missing cells."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    volume = np.round(1e7 * rng.lognormal(0, 0.5, (T, N)), -2)
    close[rng.random((T, N)) < 0.02] = np.nan
    volume[rng.random((T, N)) < 0.02] = np.nan
    return close, volume


def _sym_major(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T)


def _talib_columns(fn: Callable[..., np.ndarray], *arrays: np.ndarray) -> np.ndarray:
    """TA-Lib on our layout: a contiguous copy of each column, results written back."""
    out = np.empty_like(arrays[0])
    for j in range(arrays[0].shape[1]):
        out[:, j] = fn(*(np.ascontiguousarray(a[:, j]) for a in arrays))
    return out


def _talib_rows(fn: Callable[..., np.ndarray], *rows: np.ndarray) -> np.ndarray:
    """TA-Lib on symbol-major rows (its preferred layout)."""
    out = np.empty_like(rows[0])
    for j in range(rows[0].shape[0]):
        out[j] = fn(*(r[j] for r in rows))
    return out


def _transposed(fn: Callable[..., np.ndarray], *arrays: np.ndarray) -> Callable[[], np.ndarray]:
    """`fn` on symbol-major copies of `arrays`, the copies in and out timed."""
    return lambda: _sym_major(fn(*(_sym_major(a) for a in arrays)))


def _long(x: np.ndarray, y: np.ndarray, n_symbols: int) -> pd.DataFrame:
    """The first n_symbols symbols of x, y stacked to a long frame (date, symbol, x, y)."""
    T = x.shape[0]
    return pd.DataFrame(
        {
            "date": np.repeat(np.arange(T), n_symbols),
            "symbol": np.tile(np.arange(n_symbols), T),
            "x": x[:, :n_symbols].ravel(),
            "y": y[:, :n_symbols].ravel(),
        }
    )


Case = dict[str, tuple[Callable[[], object], int]]  # implementation -> (callable, cells)


def _cases(x: np.ndarray, y: np.ndarray, n_long: int, n_slow: int) -> dict[str, Case]:
    """kernel -> implementation -> (callable, cells it computes)."""
    cells = x.size
    xt, yt = _sym_major(x), _sym_major(y)
    f = pd.DataFrame(x).ffill().bfill().to_numpy()  # gap-free copies for TA-Lib
    g = pd.DataFrame(y).ffill().bfill().to_numpy()
    ft, gt = _sym_major(f), _sym_major(g)
    wide, wide_y = pd.DataFrame(x), pd.DataFrame(y)
    slow = pd.DataFrame(x[:, :n_slow])  # pandas wide rolling rank is slow: a slice of symbols
    long = _long(x, y, n_long)
    by = long.groupby("symbol")["x"]
    n_cells_long, n_cells_slow = long.shape[0], slow.size
    alpha = 2.0 / 21.0

    def bn_move(name: str, w: int, **kw: object) -> Case:
        fn = getattr(bn, name)
        return {
            "bottleneck axis 0": (lambda: fn(x, w, axis=0, **kw), cells),
            "bottleneck +T": (_transposed(lambda a: fn(a, w, axis=1, **kw), x), cells),
            f"bottleneck {REFERENCE_ONLY}": (lambda: fn(xt, w, axis=1, **kw), cells),
        }

    def nb_move(name: str, *arrays_and_t: np.ndarray, **kw: object) -> Case:
        fn = getattr(numbagg, name)
        ours_layout, sym = (
            arrays_and_t[: len(arrays_and_t) // 2],
            arrays_and_t[len(arrays_and_t) // 2 :],
        )
        return {
            "numbagg axis 0": (lambda: fn(*ours_layout, axis=0, **kw), cells),
            "numbagg +T": (_transposed(lambda *a: fn(*a, axis=-1, **kw), *ours_layout), cells),
            f"numbagg {REFERENCE_ONLY}": (lambda: fn(*sym, axis=-1, **kw), cells),
        }

    def ta(fn: Callable[..., np.ndarray], n_inputs: int = 1) -> Case:
        ours_layout, sym = (f, g)[:n_inputs], (ft, gt)[:n_inputs]
        return {
            "talib per column": (lambda: _talib_columns(fn, *ours_layout), cells),
            "talib +T": (_transposed(lambda *a: _talib_rows(fn, *a), *ours_layout), cells),
            f"talib {REFERENCE_ONLY}": (lambda: _talib_rows(fn, *sym), cells),
        }

    def grouped_corr() -> object:
        return long.groupby("symbol")[["x", "y"]].rolling(10).corr()

    def grouped_cov() -> object:
        return long.groupby("symbol")[["x", "y"]].rolling(10).cov()

    def shift(a: np.ndarray, d: int) -> np.ndarray:
        out = np.empty_like(a)
        out[:d] = np.nan
        out[d:] = a[:-d]
        return out

    def diff(a: np.ndarray, d: int) -> np.ndarray:
        out = np.empty_like(a)
        out[:d] = np.nan
        np.subtract(a[d:], a[:-d], out=out[d:])
        return out

    tc = np.arange(20.0) - 9.5  # window positions centred: slope = tc . a / (tc . tc)
    sxx = float(tc @ tc)
    wl = np.arange(1.0, 21.0) / 210.0  # linear decay weights, newest heaviest, sum 1

    def slope(a: np.ndarray) -> float:
        return float(tc @ a) / sxx

    def wma(a: np.ndarray) -> float:
        return float(wl @ a)

    K = KERNELS

    return {
        "ts_mean(20)": {
            OURS: (lambda: rolling.ts_mean(x, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).mean(), cells),
            LONG: (lambda: by.rolling(20).mean(), n_cells_long),
            **bn_move("move_mean", 20),
            **nb_move("move_mean", x, xt, window=20),
            **ta(lambda r: talib.SMA(r, 20)),
        },
        "ts_std(20)": {
            OURS: (lambda: rolling.ts_std(x, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).std(), cells),
            LONG: (lambda: by.rolling(20).std(), n_cells_long),
            **bn_move("move_std", 20, ddof=1),
            **nb_move("move_std", x, xt, window=20),
            **ta(lambda r: talib.STDDEV(r, 20)),
        },
        "ts_max(20)": {
            OURS: (lambda: extreme.ts_max(x, 20), cells),
            "ours rolling_order (deque)": (lambda: rolling_order.ts_max(x, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).max(), cells),
            LONG: (lambda: by.rolling(20).max(), n_cells_long),
            **bn_move("move_max", 20),
            **ta(lambda r: talib.MAX(r, 20)),
        },
        "ts_min(20)": {
            OURS: (lambda: extreme.ts_min(x, 20), cells),
            "ours rolling_order (deque)": (lambda: rolling_order.ts_min(x, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).min(), cells),
            LONG: (lambda: by.rolling(20).min(), n_cells_long),
            **bn_move("move_min", 20),
            **ta(lambda r: talib.MIN(r, 20)),
        },
        "ts_argmax(20)": {
            OURS: (lambda: extreme.ts_argmax(x, 20), cells),
            "ours rolling_order (deque)": (lambda: rolling_order.ts_argmax(x, 20), cells),
            "pandas wide": (lambda: slow.rolling(20).apply(np.argmax, raw=True), n_cells_slow),
            LONG: (lambda: by.rolling(20).apply(np.argmax, raw=True), n_cells_long),
            **bn_move("move_argmax", 20),
            **ta(lambda r: talib.MAXINDEX(r, 20)),
        },
        "ts_rank(10)": {
            OURS: (lambda: rolling_order.ts_rank(x, 10), cells),
            "pandas wide": (lambda: slow.rolling(10).rank(pct=True), n_cells_slow),
            LONG: (lambda: by.rolling(10).rank(pct=True), n_cells_long),
            **bn_move("move_rank", 10),
        },
        "ts_corr(10)": {
            OURS: (lambda: rolling_pair.ts_corr(x, y, 10), cells),
            "pandas wide": (lambda: wide.rolling(10).corr(wide_y), cells),
            LONG: (grouped_corr, n_cells_long),
            **nb_move("move_corr", x, y, xt, yt, window=10),
            **ta(lambda a, b: talib.CORREL(a, b, 10), 2),
        },
        "ts_sum(20)": {
            OURS: (lambda: K["ts_sum"](x, 20, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).sum(), cells),
            LONG: (lambda: by.rolling(20).sum(), n_cells_long),
            **bn_move("move_sum", 20),
            **nb_move("move_sum", x, xt, window=20),
            **ta(lambda r: talib.SUM(r, 20)),
        },
        "ts_var(20)": {
            OURS: (lambda: K["ts_var"](x, 20, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).var(), cells),
            LONG: (lambda: by.rolling(20).var(), n_cells_long),
            **bn_move("move_var", 20, ddof=1),
            **nb_move("move_var", x, xt, window=20),
            **ta(lambda r: talib.VAR(r, 20)),
        },
        "ts_cov(10)": {
            OURS: (lambda: K["ts_cov"](x, y, 10, 10), cells),
            "pandas wide": (lambda: wide.rolling(10).cov(wide_y), cells),
            LONG: (grouped_cov, n_cells_long),
            **nb_move("move_cov", x, y, xt, yt, window=10),
        },
        "ts_median(20)": {
            OURS: (lambda: K["ts_median"](x, 20, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).median(), cells),
            LONG: (lambda: by.rolling(20).median(), n_cells_long),
            **bn_move("move_median", 20),
        },
        "ts_quantile(20)": {
            OURS: (lambda: K["ts_quantile"](x, 20, 0.3, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).quantile(0.3), cells),
            LONG: (lambda: by.rolling(20).quantile(0.3), n_cells_long),
        },
        "ts_skew(20)": {
            OURS: (lambda: K["ts_skew"](x, 20, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).skew(), cells),
            LONG: (lambda: by.rolling(20).skew(), n_cells_long),
        },
        "ts_kurt(20)": {
            OURS: (lambda: K["ts_kurt"](x, 20, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).kurt(), cells),
            LONG: (lambda: by.rolling(20).kurt(), n_cells_long),
        },
        "ts_slope(20)": {
            OURS: (lambda: K["ts_slope"](x, 20, 20), cells),
            "pandas wide": (lambda: slow.rolling(20).apply(slope, raw=True), n_cells_slow),
            LONG: (lambda: by.rolling(20).apply(slope, raw=True), n_cells_long),
            **ta(lambda r: talib.LINEARREG_SLOPE(r, 20)),
        },
        "decay_linear(20)": {
            OURS: (lambda: K["decay_linear"](x, 20, 20), cells),
            "pandas wide": (lambda: slow.rolling(20).apply(wma, raw=True), n_cells_slow),
            LONG: (lambda: by.rolling(20).apply(wma, raw=True), n_cells_long),
            **ta(lambda r: talib.WMA(r, 20)),
        },
        "ts_count(20)": {
            OURS: (lambda: K["ts_count"](x, 20, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).count(), cells),
            LONG: (lambda: by.rolling(20).count(), n_cells_long),
        },
        "ts_argmin(20)": {
            OURS: (lambda: K["ts_argmin"](x, 20, 20), cells),
            "ours extreme (block)": (lambda: extreme.ts_argmin(x, 20, 20), cells),
            "pandas wide": (lambda: slow.rolling(20).apply(np.argmin, raw=True), n_cells_slow),
            LONG: (lambda: by.rolling(20).apply(np.argmin, raw=True), n_cells_long),
            **bn_move("move_argmin", 20),
            **ta(lambda r: talib.MININDEX(r, 20)),
        },
        "delay(20)": {
            OURS: (lambda: K["delay"](x, 20), cells),
            "numpy shift": (lambda: shift(x, 20), cells),
            "pandas wide": (lambda: wide.shift(20), cells),
            LONG: (lambda: by.shift(20), n_cells_long),
        },
        "delta(20)": {
            OURS: (lambda: K["delta"](x, 20), cells),
            "numpy diff": (lambda: diff(x, 20), cells),
            "pandas wide": (lambda: wide.diff(20), cells),
            LONG: (lambda: by.diff(20), n_cells_long),
        },
        "ema(alpha=2/21)": {
            OURS: (lambda: ewm.ema(x, alpha), cells),
            "pandas wide": (lambda: wide.ewm(alpha=alpha, adjust=False).mean(), cells),
            LONG: (lambda: by.transform(lambda s: s.ewm(alpha=alpha).mean()), n_cells_long),
            **nb_move("move_exp_nanmean", x, xt, alpha=alpha),
            **ta(lambda r: talib.EMA(r, 20)),
        },
    }


def run(cases: dict[str, Case], repeat: int, pandas_repeat: int) -> dict[str, dict[str, float]]:
    """Mcells/s per kernel and implementation: median of interleaved repeats."""
    speeds: dict[str, dict[str, float]] = {}
    for name, impls in cases.items():
        times: dict[str, list[float]] = {impl: [] for impl in impls}
        for rnd in range(repeat):
            for impl, (fn, _) in impls.items():
                if impl.startswith("pandas") and rnd >= pandas_repeat:
                    continue
                t0 = time.perf_counter()
                fn()
                times[impl].append(time.perf_counter() - t0)
        speeds[name] = {impl: impls[impl][1] / np.median(ts) / 1e6 for impl, ts in times.items()}
        for impl, speed in speeds[name].items():
            print(f"{name:<16} {impl:<34} {speed:>10.1f}", flush=True)
    return speeds


def summary(speeds: dict[str, dict[str, float]]) -> None:
    print()
    print(
        f"{'kernel':<16} {'ours':>8} {'best same-input peer':>26} {'Mc/s':>8} "
        f"{'ours/best':>9} {'/long':>7}   best peer on its own layout (untimed copies)"
    )
    for name, impl_speeds in speeds.items():
        ours = impl_speeds[OURS]
        same = {
            k: v
            for k, v in impl_speeds.items()
            if not k.startswith("ours") and k != LONG and REFERENCE_ONLY not in k
        }
        best = max(same, key=same.get)
        ref = {k: v for k, v in impl_speeds.items() if REFERENCE_ONLY in k}
        ref_txt = ""
        if ref:
            rbest = max(ref, key=ref.get)
            peer = rbest.replace(REFERENCE_ONLY, "").strip()
            ref_txt = f"{peer} {ref[rbest]:.1f} ({ours / ref[rbest]:.2f}x)"
        print(
            f"{name:<16} {ours:>8.1f} {best:>26} {same[best]:>8.1f} {ours / same[best]:>9.2f} "
            f"{ours / impl_speeds[LONG]:>7.0f}   {ref_txt}"
        )


def warm(x: np.ndarray, y: np.ndarray) -> None:
    """Compile our kernels and numbagg's (both compile lazily)."""
    for module in (rolling, rolling_order, rolling_pair, ewm, extreme):
        module.warmup()
    a, b = x[:50, :50], y[:50, :50]
    for axis, (p, q) in ((0, (a, b)), (-1, (_sym_major(a), _sym_major(b)))):
        numbagg.move_mean(p, window=5, axis=axis)
        numbagg.move_std(p, window=5, axis=axis)
        numbagg.move_corr(p, q, window=5, axis=axis)
        numbagg.move_sum(p, window=5, axis=axis)
        numbagg.move_var(p, window=5, axis=axis)
        numbagg.move_cov(p, q, window=5, axis=axis)
        numbagg.move_exp_nanmean(p, alpha=0.1, axis=axis)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="250 x 500 panel instead")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--pandas-repeat", type=int, default=1, help="rounds for pandas")
    parser.add_argument("--long-symbols", type=int, default=200, help="symbols for pandas long")
    parser.add_argument("--only", default="", help="comma-separated kernel name prefixes")
    args = parser.parse_args(argv)
    T, N = (250, 500) if args.small else (2500, 5000)
    x, y = _panel(T, N)
    warm(x, y)
    cases = _cases(x, y, min(args.long_symbols, N), min(args.long_symbols, N))
    if args.only:
        keep = tuple(args.only.split(","))
        cases = {k: v for k, v in cases.items() if k.startswith(keep)}
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"panel {T} x {N} float64 C-order (dates x symbols), numba threads "
        f"{numba.get_num_threads()}, {os.cpu_count()} CPUs, load average {load}; "
        f"median of {args.repeat} interleaved rounds (pandas {args.pandas_repeat})"
    )
    print(f"{'kernel':<16} {'implementation':<34} {'Mcells/s':>10}")
    speeds = run(cases, args.repeat, args.pandas_repeat)
    summary(speeds)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average at the end: {load}")


if __name__ == "__main__":
    main()
