"""Benchmark: cross-section, group and technical kernels vs pandas, bottleneck and TA-Lib.

Prints Mcells/s (million panel cells per second, median of interleaved repeats: one round of
every implementation, then the next; compilation excluded) for each implementation and how many
times faster ours is: than the fastest peer (on our row) and than each peer (on the peer's row),
all measured in the same run, plus the load average (the machine may be shared).
Cross-sectional peers work along rows, which is already our (dates, symbols) C-order layout,
so every comparison here is on the same input. Peers: pandas wide (``rank(axis=1)``), pandas
long format (``groupby(date)`` -- how a long-format factor pipeline does it), bottleneck along
axis 1, and TA-Lib called once per symbol (on a contiguous copy of the column, timed) for the
technical indicators.

    PYTHONPATH=. python bench/bench_kernels_cs.py [--small] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import bottleneck as bn
import numba
import numpy as np
import pandas as pd
import talib

from engine.kernels import cross_section, group, technical


def _median_times(impls: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median wall time of each implementation over `repeat` interleaved rounds, in seconds."""
    times: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(repeat):
        for name, fn in impls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(ts)) for name, ts in times.items()}


def _panel(T: int, N: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    close[rng.random((T, N)) < 0.02] = np.nan
    x = np.round(rng.normal(size=(T, N)), 3)  # rounded: realistic ties
    x[rng.random((T, N)) < 0.05] = np.nan  # symbols outside the universe that day
    return {
        "x": x,
        "close": close,
        "high": close * (1 + 0.02 * rng.random((T, N))),
        "low": close * (1 - 0.02 * rng.random((T, N))),
        "industry": rng.integers(0, 11, (T, N)).astype(np.int64),
    }


def _per_symbol(fn: Callable[..., np.ndarray], *arrays: np.ndarray) -> np.ndarray:
    """TA-Lib over each column (TA-Lib is 1-D only)."""
    out = np.empty_like(arrays[0])
    for j in range(arrays[0].shape[1]):
        out[:, j] = fn(*(np.ascontiguousarray(a[:, j]) for a in arrays))
    return out


def _cases(p: dict[str, np.ndarray]) -> dict[str, dict[str, Callable[[], object]]]:
    x, g = p["x"], p["industry"]
    T, N = x.shape
    wide = pd.DataFrame(x)
    long = pd.DataFrame({"date": np.repeat(np.arange(T), N), "ind": g.ravel(), "x": x.ravel()})
    by_date = long.groupby("date")["x"]
    by_date_ind = long.groupby(["date", "ind"])["x"]
    h, lo, c = p["high"], p["low"], p["close"]

    def bn_zscore() -> np.ndarray:
        mean = bn.nanmean(x, axis=1)[:, None]
        return (x - mean) / bn.nanstd(x, axis=1, ddof=1)[:, None]

    return {
        "rank": {
            "ours": lambda: cross_section.rank(x),
            "pandas wide rank(axis=1)": lambda: wide.rank(axis=1, pct=True),
            "pandas long groupby(date).rank": lambda: by_date.rank(pct=True),
            "bottleneck nanrankdata(axis=1)": lambda: bn.nanrankdata(x, axis=1),
        },
        "zscore": {
            "ours": lambda: cross_section.zscore(x),
            "pandas wide": lambda: wide.sub(wide.mean(axis=1), axis=0).div(
                wide.std(axis=1), axis=0
            ),
            "pandas long groupby(date)": lambda: (
                (long["x"] - by_date.transform("mean")) / by_date.transform("std")
            ),
            "bottleneck nanmean/nanstd": bn_zscore,
        },
        "group_neutralize (11 groups)": {
            "ours": lambda: group.group_neutralize(x, g),
            "pandas long groupby(date,ind)": lambda: long["x"] - by_date_ind.transform("mean"),
        },
        "rsi(14)": {
            "ours": lambda: technical.rsi(c, 14),
            "TA-Lib per symbol": lambda: _per_symbol(lambda a: talib.RSI(a, 14), c),
        },
        "atr(14)": {
            "ours": lambda: technical.atr(h, lo, c, 14),
            "TA-Lib per symbol": lambda: _per_symbol(lambda *a: talib.ATR(*a, 14), h, lo, c),
        },
        "cci(20)": {
            "ours": lambda: technical.cci(h, lo, c, 20),
            "TA-Lib per symbol": lambda: _per_symbol(lambda *a: talib.CCI(*a, 20), h, lo, c),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="500 x 1000 instead of 2500 x 5000")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--threads", type=int, default=None, help="numba threads (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        numba.set_num_threads(args.threads)
    T, N = (500, 1000) if args.small else (2500, 5000)
    cells = T * N / 1e6

    for module in (cross_section, group, technical):
        module.warmup()
    cases = _cases(_panel(T, N))

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"panel {T} x {N} ({cells:.1f} Mcells), median of {args.repeat} interleaved rounds, "
        f"numba threads {numba.get_num_threads()} ({numba.threading_layer()}), "
        f"{os.cpu_count()} CPUs, load average {load}"
    )
    print(f"{'kernel':30s} {'implementation':34s} {'Mcells/s':>10s} {'ours/this':>10s}")
    for kernel, impls in cases.items():
        rates = {name: cells / t for name, t in _median_times(impls, args.repeat).items()}
        best_peer = max(v for k, v in rates.items() if k != "ours")
        for name, rate in rates.items():
            label = "ours (vs best peer)" if name == "ours" else name
            ratio = rates["ours"] / (best_peer if name == "ours" else rate)
            print(f"{kernel:30s} {label:34s} {rate:10.1f} {ratio:9.1f}x")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average at the end: {load}")


if __name__ == "__main__":
    main()
