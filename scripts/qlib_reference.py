"""Compute Qlib's own Alpha158 features for a table of daily bars (the reference for alpha158).

Run it with a Python that has ``pyqlib`` installed -- kept out of alphaforge's dependencies,
e.g. ``python3 -m venv /work/qlibvenv && /work/qlibvenv/bin/pip install pyqlib``:

    /work/qlibvenv/bin/python scripts/qlib_reference.py --bars bars.parquet --out qlib.parquet

``--bars``: a long parquet table ``date, symbol, open, high, low, close, volume, vwap``, one row
per (date, symbol) where the stock has data (``scripts/compare_qlib.py`` writes it from a
Panel). The script

1. writes Qlib's binary store into a temporary directory, in the format of Qlib's
   ``scripts/dump_bin.py``: ``calendars/day.txt`` (the union of the dates), ``instruments/
   all.txt`` (``SYMBOL<TAB>first<TAB>last``), and ``features/<symbol>/<field>.day.bin``: little-
   endian float32, the first value the calendar index of the symbol's first date, then one value
   per calendar date from its first to its last date (NaN where it has no row). The span
   first..last is what alphaforge's derived field ``listed`` marks (first..last valid close)
   when the bars come from ``scripts/compare_qlib.py`` (it writes the rows within it);
2. runs Qlib's expression engine (``qlib.init(provider_uri=...)`` + ``D.features``) for the 158
   expressions of ``qlib.contrib.data.loader.Alpha158DL``;
3. saves ``date, symbol`` + the 158 feature columns (float32, Qlib's output) to ``--out``.

This script imports nothing from alphaforge (Qlib's environment need not have numba).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

FIELDS = ("open", "high", "low", "close", "volume", "vwap")
_RESERVED = (
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(10)} | {f"LPT{i}" for i in range(10)}
)


def _fname(code: str) -> str:
    """Qlib's ``code_to_fname``: reserved Windows device names get a ``_qlib_`` prefix."""
    return f"_qlib_{code}" if code.upper() in _RESERVED else code


def dump_bin(bars: pd.DataFrame, root: Path) -> list[str]:
    """Write ``bars`` as Qlib's binary store under ``root``; return the instrument codes."""
    bars = bars.assign(date=pd.to_datetime(bars["date"]).dt.normalize())
    calendar = pd.DatetimeIndex(sorted(bars["date"].unique()))
    (root / "calendars").mkdir(parents=True, exist_ok=True)
    (root / "instruments").mkdir(parents=True, exist_ok=True)
    (root / "calendars" / "day.txt").write_text(
        "".join(f"{d:%Y-%m-%d}\n" for d in calendar), encoding="utf-8"
    )
    lines, codes = [], []
    for symbol, rows in bars.groupby("symbol", sort=True):
        rows = rows.set_index("date").sort_index()
        first, last = rows.index.min(), rows.index.max()
        span = calendar[(calendar >= first) & (calendar <= last)]
        rows = rows.reindex(span)
        code = str(symbol).upper()
        codes.append(code)
        lines.append(f"{code}\t{first:%Y-%m-%d}\t{last:%Y-%m-%d}\n")
        folder = root / "features" / _fname(code.lower())
        folder.mkdir(parents=True, exist_ok=True)
        start = float(calendar.get_loc(first))
        for field in FIELDS:
            values = rows[field].to_numpy(dtype=np.float64)
            np.hstack([[start], values]).astype("<f").tofile(folder / f"{field}.day.bin")
    (root / "instruments" / "all.txt").write_text("".join(lines), encoding="utf-8")
    return codes


def qlib_alpha158(root: Path, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Qlib's Alpha158 over the store at ``root``: MultiIndex (instrument, datetime)."""
    import qlib
    from qlib.contrib.data.loader import Alpha158DL
    from qlib.data import D

    qlib.init(
        provider_uri=str(root),
        region="us",
        expression_cache=None,
        dataset_cache=None,
        kernels=1,
        logging_level="WARNING",
    )
    expressions, names = Alpha158DL.get_feature_config()
    frame = D.features(
        D.instruments("all"), expressions, start_time=start, end_time=end, freq="day"
    )
    frame.columns = names
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=Path, required=True, help="long bars parquet")
    parser.add_argument("--out", type=Path, required=True, help="output parquet")
    parser.add_argument("--workdir", type=Path, help="keep Qlib's binary store here")
    args = parser.parse_args(argv)

    bars = pd.read_parquet(args.bars)
    missing = [c for c in ("date", "symbol", *FIELDS) if c not in bars.columns]
    if missing:
        parser.error(f"--bars lacks columns {missing}")
    with tempfile.TemporaryDirectory(prefix="qlib_store_") as tmp:
        root = args.workdir or Path(tmp)
        codes = dump_bin(bars, root)
        dates = pd.to_datetime(bars["date"])
        frame = qlib_alpha158(root, dates.min(), dates.max())
    original = {str(s).upper(): s for s in bars["symbol"].unique()}
    out = frame.reset_index()
    out = out.rename(columns={"instrument": "symbol", "datetime": "date"})
    out["symbol"] = out["symbol"].map(original)
    out = out.sort_values(["date", "symbol"]).reset_index(drop=True)
    out.to_parquet(args.out, index=False)
    print(
        f"qlib {__import__('qlib').__version__}: {out.shape[1] - 2} features, "
        f"{len(codes)} instruments, {out['date'].nunique()} dates -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
