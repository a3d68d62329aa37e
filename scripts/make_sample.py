"""Write the bundled real sample engine/data/sp500_sample.parquet from the shared data.

Picks up to 8 stocks per GICS sector (all of a sector with fewer), always including a few
stocks with known defect rows (NaN opens/highs/lows, zero volume, high/low not bracketing
open/close, gaps, late listing) so that `engine.sources.sample()` exercises quarantine.
Deterministic: the same input gives the same file. Usage:

    python scripts/make_sample.py [--source PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "sp500_daily_2013_2018.parquet"
DEFAULT_OUT = ROOT / "engine" / "data" / "sp500_sample.parquet"
# defect carriers: AOS/LNT/O/WRK/UA/DHR (high/low not bracketing), DHR/O/ES/WRK/BHF (NaN
# opens), O/UA (zero volume), DHR/O/ES (gaps), BHF (listed 2017)
FORCED = ("AOS", "BHF", "DHR", "ES", "LNT", "O", "UA", "WRK")
PER_SECTOR = 8
SEED = 20180207


def choose(df: pd.DataFrame) -> list[str]:
    """Forced defect carriers plus a seeded pick per sector, up to PER_SECTOR each."""
    rng = np.random.default_rng(SEED)
    sector_of = df.groupby("symbol")["industry"].first()
    chosen: list[str] = []
    for _, members in sector_of.groupby(sector_of):
        names = sorted(members.index)
        forced = [s for s in names if s in FORCED]
        rest = [s for s in names if s not in FORCED]
        k = max(0, min(len(rest), PER_SECTOR - len(forced)))
        picks = rng.choice(len(rest), size=k, replace=False) if k else []
        chosen += forced + [rest[i] for i in sorted(picks)]
    return sorted(chosen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    df = pd.read_parquet(args.source)
    symbols = choose(df)
    out = df[df["symbol"].isin(symbols)].sort_values(["symbol", "date"]).reset_index(drop=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(args.out, compression="zstd", index=False)
    size = args.out.stat().st_size
    print(
        f"wrote {args.out}: {len(out)} rows, {len(symbols)} symbols, "
        f"{out['industry'].nunique()} sectors, {size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
