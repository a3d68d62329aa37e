"""Benchmark: time-series kernels vs pandas, bottleneck, numbagg and TA-Lib.

Prints Mcells/s (million panel cells per second, best of a few repeats, numba compilation
excluded by a warm-up) for each implementation, and the ratio of ours to the fastest peer
measured in the same run. Peers:

* pandas wide: ``DataFrame.rolling`` on the (dates, symbols) frame;
* pandas long: ``groupby(symbol).rolling`` on the stacked frame, the way a long-format factor
  pipeline computes it; slow, so it runs on the first ``--long-symbols`` symbols and is scaled
  to Mcells/s;
* bottleneck ``move_*`` along axis 0 of the panel as it is, and on a symbol-major copy along
  axis 1 (the transposing copy is not timed);
* numbagg ``move_*`` along axis 0 (it runs its own parallel gufuncs);
* TA-Lib once per symbol on contiguous symbol-major rows (copy not timed; TA-Lib has no NaN
  handling, so it gets a gap-free panel; its STDDEV divides by n, same cost).

Semantics differ slightly among peers (NaN handling, ddof, seeding); the point is the cost of
computing the same statistic. The machine is shared: numbers are noisy.

    PYTHONPATH=. python bench/bench_kernels_ts.py [--small] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import bottleneck as bn
import numba
import numbagg
import numpy as np
import pandas as pd
import talib

from engine.kernels import ewm, rolling, rolling_order, rolling_pair


def _best(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of `repeat` calls, in seconds."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _panel(T: int, N: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A price-like and a volume-like panel with ~2% missing cells."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    volume = np.round(1e7 * rng.lognormal(0, 0.5, (T, N)), -2)
    close[rng.random((T, N)) < 0.02] = np.nan
    volume[rng.random((T, N)) < 0.02] = np.nan
    return close, volume


def _per_symbol(fn: Callable[..., np.ndarray], *rows: np.ndarray) -> None:
    """TA-Lib over each symbol (TA-Lib is 1-D only); `rows` are symbol-major."""
    for j in range(rows[0].shape[0]):
        fn(*(r[j] for r in rows))


def _long(x: np.ndarray, n_symbols: int) -> pd.DataFrame:
    """The first n_symbols symbols of x stacked to a long frame (date, symbol, x, y)."""
    T = x.shape[0]
    return pd.DataFrame(
        {
            "date": np.repeat(np.arange(T), n_symbols),
            "symbol": np.tile(np.arange(n_symbols), T),
            "x": x[:, :n_symbols].ravel(),
        }
    )


def _cases(
    x: np.ndarray, y: np.ndarray, n_long: int
) -> dict[str, dict[str, tuple[Callable[[], object], int]]]:
    """name -> implementation -> (callable, cells it computes)."""
    cells = x.size
    xt = np.ascontiguousarray(x.T)
    filled = pd.DataFrame(x).ffill().bfill().to_numpy()
    ft = np.ascontiguousarray(filled.T)
    gt = np.ascontiguousarray(pd.DataFrame(y).ffill().bfill().to_numpy().T)
    wide, wide_y = pd.DataFrame(x), pd.DataFrame(y)
    long = _long(x, n_long)
    long["y"] = y[:, :n_long].ravel()
    by = long.groupby("symbol")["x"]
    long_cells = long.shape[0]
    alpha = 2.0 / 21.0

    def grouped_corr() -> object:
        return long.groupby("symbol")[["x", "y"]].rolling(10).corr()

    return {
        "mean(20)": {
            "ours": (lambda: rolling.ts_mean(x, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).mean(), cells),
            "pandas long": (lambda: by.rolling(20).mean(), long_cells),
            "bottleneck": (lambda: bn.move_mean(x, 20, axis=0), cells),
            "bottleneck sym-major": (lambda: bn.move_mean(xt, 20, axis=1), cells),
            "numbagg": (lambda: numbagg.move_mean(x, window=20, axis=0), cells),
            "talib": (lambda: _per_symbol(lambda r: talib.SMA(r, 20), ft), cells),
        },
        "std(20)": {
            "ours": (lambda: rolling.ts_std(x, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).std(), cells),
            "pandas long": (lambda: by.rolling(20).std(), long_cells),
            "bottleneck": (lambda: bn.move_std(x, 20, axis=0, ddof=1), cells),
            "bottleneck sym-major": (lambda: bn.move_std(xt, 20, axis=1, ddof=1), cells),
            "numbagg": (lambda: numbagg.move_std(x, window=20, axis=0), cells),
            "talib": (lambda: _per_symbol(lambda r: talib.STDDEV(r, 20), ft), cells),
        },
        "max(20)": {
            "ours": (lambda: rolling_order.ts_max(x, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).max(), cells),
            "pandas long": (lambda: by.rolling(20).max(), long_cells),
            "bottleneck": (lambda: bn.move_max(x, 20, axis=0), cells),
            "bottleneck sym-major": (lambda: bn.move_max(xt, 20, axis=1), cells),
            "talib": (lambda: _per_symbol(lambda r: talib.MAX(r, 20), ft), cells),
        },
        "min(20)": {
            "ours": (lambda: rolling_order.ts_min(x, 20), cells),
            "pandas wide": (lambda: wide.rolling(20).min(), cells),
            "pandas long": (lambda: by.rolling(20).min(), long_cells),
            "bottleneck": (lambda: bn.move_min(x, 20, axis=0), cells),
            "bottleneck sym-major": (lambda: bn.move_min(xt, 20, axis=1), cells),
            "talib": (lambda: _per_symbol(lambda r: talib.MIN(r, 20), ft), cells),
        },
        "ts_rank(10)": {
            "ours": (lambda: rolling_order.ts_rank(x, 10), cells),
            "pandas wide": (lambda: wide.rolling(10).rank(pct=True), cells),
            "pandas long": (lambda: by.rolling(10).rank(pct=True), long_cells),
            "bottleneck": (lambda: bn.move_rank(x, 10, axis=0), cells),
            "bottleneck sym-major": (lambda: bn.move_rank(xt, 10, axis=1), cells),
        },
        "corr(10)": {
            "ours": (lambda: rolling_pair.ts_corr(x, y, 10), cells),
            "pandas wide": (lambda: wide.rolling(10).corr(wide_y), cells),
            "pandas long": (grouped_corr, long_cells),
            "numbagg": (lambda: numbagg.move_corr(x, y, window=10, axis=0), cells),
            "talib": (lambda: _per_symbol(lambda a, b: talib.CORREL(a, b, 10), ft, gt), cells),
        },
        "ema(alpha=2/21)": {
            "ours": (lambda: ewm.ema(x, alpha), cells),
            "pandas wide": (lambda: wide.ewm(alpha=alpha, adjust=False).mean(), cells),
            "pandas long": (lambda: by.transform(lambda s: s.ewm(alpha=alpha).mean()), long_cells),
            "numbagg": (lambda: numbagg.move_exp_nanmean(x, alpha=alpha, axis=0), cells),
            "talib": (lambda: _per_symbol(lambda r: talib.EMA(r, 20), ft), cells),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="250 x 500 panel instead")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--long-symbols", type=int, default=200, help="symbols for pandas long")
    args = parser.parse_args()
    T, N = (250, 500) if args.small else (2500, 5000)
    x, y = _panel(T, N)
    for warm in (rolling.warmup, rolling_order.warmup, rolling_pair.warmup, ewm.warmup):
        warm()
    numbagg.move_mean(x[:50, :50], window=5, axis=0)  # numbagg compiles lazily too
    numbagg.move_std(x[:50, :50], window=5, axis=0)
    numbagg.move_corr(x[:50, :50], y[:50, :50], window=5, axis=0)
    numbagg.move_exp_nanmean(x[:50, :50], alpha=0.1, axis=0)
    print(f"panel {T} x {N}, numba threads {numba.get_num_threads()}, best of {args.repeat}")
    print(f"{'kernel':<16} {'implementation':<22} {'Mcells/s':>10}")
    summary = []
    for name, impls in _cases(x, y, min(args.long_symbols, N)).items():
        speeds = {}
        for impl, (fn, cells) in impls.items():
            repeat = 1 if impl.startswith("pandas") else args.repeat
            speeds[impl] = cells / _best(fn, repeat) / 1e6
            print(f"{name:<16} {impl:<22} {speeds[impl]:>10.1f}", flush=True)
        peers = {k: v for k, v in speeds.items() if k != "ours"}
        best = max(peers, key=peers.get)
        long_ratio = speeds["ours"] / speeds["pandas long"]
        summary.append((name, speeds["ours"], best, peers[best], long_ratio))
    print()
    print(f"{'kernel':<16} {'ours':>8} {'best peer':>22} {'Mc/s':>8} {'ours/best':>9} {'/long':>7}")
    for name, ours, best, speed, long_ratio in summary:
        print(
            f"{name:<16} {ours:>8.1f} {best:>22} {speed:>8.1f} {ours / speed:>9.2f} "
            f"{long_ratio:>7.0f}"
        )


if __name__ == "__main__":
    main()
