"""Compare alphaforge's alpha158 library with real Qlib on the same panels; print the result.

For each panel (the synthetic one and/or the bundled real sample):

1. the panel's bars (open high low close volume vwap; vwap is (h+l+c)/3 where the data has
   none) are written as a long parquet table, rounded to float32 -- Qlib stores float32 --
   so both sides read identical inputs;
2. ``scripts/qlib_reference.py`` runs in Qlib's own environment (``--qlib-python``, default
   ``/work/qlibvenv/bin/python``) and returns Qlib's 158 features;
3. alphaforge evaluates ``factors.library.load("alpha158")`` on the same rounded panel
   (``engine.evaluate``), and the pandas transcription of Qlib's semantics
   (``tests/factors/oracles/qlib_pandas.py``, mode "qlib") is computed too;
4. per feature it prints NaN-pattern mismatches and the largest absolute and relative
   differences (relative where |Qlib| > 1e-3), for alphaforge vs Qlib and oracle vs Qlib.

Differences between alphaforge and Qlib come from (a) Qlib's arithmetic in float32 on
float32 data versus alphaforge's float64, and (b) the NaN conventions alphaforge chose (a
comparison with a NaN side is NaN, not False; ts_argmax skips NaN; x/0 is NaN, not inf; no
per-instrument date span), which the oracle's "qlib" mode reproduces and its "alphaforge"
mode removes.

    PYTHONPATH=. python scripts/compare_qlib.py [--panel synthetic|sample|both]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from engine.evaluate import evaluate
from engine.panel import Panel
from engine.sources import sample, synthetic
from factors import library

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "factors"))
from oracles import qlib_pandas  # noqa: E402

BAR_FIELDS = ("open", "high", "low", "close", "volume", "vwap")


def float32_panel(panel: Panel) -> Panel:
    """The panel's bars rounded to float32 (what Qlib's binary store keeps)."""
    fields = {f: np.asarray(panel[f]).astype(np.float32).astype(np.float64) for f in BAR_FIELDS}
    return Panel(panel.dates, panel.symbols, fields, panel.groups, panel.group_labels)


def long_bars(panel: Panel) -> pd.DataFrame:
    """One row per (date, symbol) with any bar value: the stock's own rows, as Qlib sees them."""
    stacked = {
        f: pd.DataFrame(panel[f], panel.dates, panel.symbols).stack(future_stack=True)
        for f in BAR_FIELDS
    }
    bars = pd.concat(stacked, axis=1)
    bars.index.names = ["date", "symbol"]
    bars = bars[bars[list(BAR_FIELDS[:5])].notna().any(axis=1)]
    return bars.reset_index()


def run_qlib(panel: Panel, qlib_python: str, workdir: Path) -> dict[str, np.ndarray]:
    """Qlib's own Alpha158 on ``panel``: feature -> (T, N) float64 array."""
    bars_path, out_path = workdir / "bars.parquet", workdir / "qlib_alpha158.parquet"
    long_bars(panel).to_parquet(bars_path, index=False)
    cmd = [qlib_python, str(REPO / "scripts" / "qlib_reference.py")]
    cmd += ["--bars", str(bars_path), "--out", str(out_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"qlib_reference.py failed:\n{done.stdout}\n{done.stderr}")
    print("  " + done.stdout.strip().splitlines()[-1])
    frame = pd.read_parquet(out_path).set_index(["date", "symbol"])
    full = pd.MultiIndex.from_product([panel.dates, panel.symbols], names=["date", "symbol"])
    frame = frame.reindex(full)
    t, n = panel.shape
    return {c: frame[c].to_numpy(dtype=np.float64).reshape(t, n) for c in frame.columns}


def differences(ours: np.ndarray, ref: np.ndarray) -> tuple[int, int, float, float]:
    """(ours NaN where ref has a value, ours a value where ref is NaN, max |d|, max rel)."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    a_nan, b_nan = ~np.isfinite(a), ~np.isfinite(b)
    both = ~a_nan & ~b_nan
    d = np.abs(a[both] - b[both])
    big = np.abs(b[both]) > 1e-3
    rel = d[big] / np.abs(b[both][big])
    return (
        int((a_nan & ~b_nan).sum()),
        int((~a_nan & b_nan).sum()),
        float(d.max()) if d.size else 0.0,
        float(rel.max()) if rel.size else 0.0,
    )


def compare(label: str, panel: Panel, qlib_python: str) -> pd.DataFrame:
    print(f"\n== {label}: {panel.shape[0]} dates x {panel.shape[1]} symbols")
    panel = float32_panel(panel)
    with tempfile.TemporaryDirectory(prefix="compare_qlib_") as tmp:
        theirs = run_qlib(panel, qlib_python, Path(tmp))
    ours = evaluate(library.load("alpha158"), panel)
    wide = {f: pd.DataFrame(panel[f], panel.dates, panel.symbols) for f in BAR_FIELDS}
    oracle = qlib_pandas.alpha158(wide, mode="qlib")
    rows = []
    for name in library.formulas("alpha158"):
        o = differences(ours[name], theirs[name])
        q = differences(oracle[name].to_numpy(), theirs[name])
        rows.append((name, *o, *q))
    cols = ["feature", "nan_ours", "nan_qlib", "max_abs", "max_rel"]
    cols += ["oracle_nan_ours", "oracle_nan_qlib", "oracle_max_abs", "oracle_max_rel"]
    table = pd.DataFrame(rows, columns=cols).set_index("feature")
    with pd.option_context("display.max_rows", 200, "display.width", 140):
        print(table.to_string(float_format=lambda v: f"{v:.2e}"))
    mism = table[(table.nan_ours > 0) | (table.nan_qlib > 0)]
    print(
        f"\n  alphaforge vs Qlib: {len(table) - len(mism)}/{len(table)} features with the same "
        f"NaN pattern; max abs diff {table.max_abs.max():.2e} "
        f"({table.max_abs.idxmax()}); features with max rel diff > 1e-4: "
        f"{int((table.max_rel > 1e-4).sum())}"
    )
    if len(mism):
        print(f"  NaN-pattern mismatches: {', '.join(mism.index)}")
    omism = table[(table.oracle_nan_ours > 0) | (table.oracle_nan_qlib > 0)]
    print(
        f"  oracle(qlib mode) vs Qlib: {len(table) - len(omism)}/{len(table)} same NaN "
        f"pattern; max abs diff {table.oracle_max_abs.max():.2e}; "
        f"features with max rel diff > 1e-4: {int((table.oracle_max_rel > 1e-4).sum())}"
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--panel", choices=("synthetic", "sample", "both"), default="both")
    parser.add_argument("--qlib-python", default="/work/qlibvenv/bin/python")
    parser.add_argument("--csv", type=Path, help="also write the per-feature table(s) here")
    args = parser.parse_args(argv)
    panels = []
    if args.panel in ("synthetic", "both"):
        panels.append(("synthetic(n_symbols=40, n_dates=300, seed=7)", synthetic(40, 300, 7)))
    if args.panel in ("sample", "both"):
        panels.append(("sample()", sample()))
    tables = [compare(label, p, args.qlib_python).assign(panel=label) for label, p in panels]
    if args.csv:
        pd.concat(tables).to_csv(args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
