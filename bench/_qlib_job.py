"""Qlib's side of ``bench/bench_engine.py``: run in Qlib's own environment (not alphaforge's).

    /work/qlibvenv/bin/python bench/_qlib_job.py --bars bars.parquet --out out.parquet \
        --store DIR --kernels 2

Writes Qlib's binary store with ``scripts/qlib_reference.dump_bin`` (not timed as compute),
then, in this fresh process with Qlib's expression and dataset caches off, times one
``D.features`` call for the 158 Alpha158 expressions: wall seconds and CPU seconds of this
process plus its (reaped) worker processes, and prints one JSON line with the timings.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from qlib_reference import dump_bin  # noqa: E402


def cpu_seconds() -> tuple[float, float]:
    """(user + system, system) CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    system = own.ru_stime + kids.ru_stime
    return own.ru_utime + kids.ru_utime + system, system


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--kernels", type=int, default=2)
    args = ap.parse_args()

    bars = pd.read_parquet(args.bars)
    t0 = time.perf_counter()
    codes = dump_bin(bars, args.store)
    dump_s = time.perf_counter() - t0
    dates = pd.to_datetime(bars["date"])

    import qlib
    from qlib.contrib.data.loader import Alpha158DL
    from qlib.data import D

    t0 = time.perf_counter()
    qlib.init(
        provider_uri=str(args.store),
        region="us",
        expression_cache=None,
        dataset_cache=None,
        kernels=args.kernels,
        logging_level="WARNING",
    )
    init_s = time.perf_counter() - t0
    expressions, names = Alpha158DL.get_feature_config()
    c0, w0 = cpu_seconds(), time.perf_counter()
    frame = D.features(
        D.instruments("all"), expressions, start_time=dates.min(), end_time=dates.max(), freq="day"
    )
    wall = time.perf_counter() - w0
    c1 = cpu_seconds()
    cpu, sys_cpu = c1[0] - c0[0], c1[1] - c0[1]
    frame.columns = names
    original = {str(s).upper(): s for s in bars["symbol"].unique()}
    out = frame.reset_index().rename(columns={"instrument": "symbol", "datetime": "date"})
    out["symbol"] = out["symbol"].map(original)
    out.to_parquet(args.out, index=False)
    print(
        json.dumps(
            {
                "qlib": qlib.__version__,
                "instruments": len(codes),
                "features": len(names),
                "rows": len(out),
                "dump_s": dump_s,
                "init_s": init_s,
                "wall_s": wall,
                "cpu_s": cpu,
                "sys_s": sys_cpu,
                "kernels": args.kernels,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
