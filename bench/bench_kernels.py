"""Run both kernel benchmarks: time-series (bench_kernels_ts) then cross-section (bench_kernels_cs).

    PYTHONPATH=. python bench/bench_kernels.py [--small] [--repeat 5]

Arguments are passed to both (``--small``, ``--repeat``); see each script for its own options.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_kernels_cs  # noqa: E402
import bench_kernels_ts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    common = ["--repeat", str(args.repeat)] + (["--small"] if args.small else [])
    print("== time-series kernels ==", flush=True)
    bench_kernels_ts.main(common)
    print("\n== cross-section, group and technical kernels ==", flush=True)
    bench_kernels_cs.main(common)


if __name__ == "__main__":
    main()
