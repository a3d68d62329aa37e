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

The qlib dialect reproduces Qlib's semantics (instrument spans via the ``listed`` field,
NaN compares False, IdxMax lands on a NaN, IEEE +-inf, pandas rolling reading +-inf as NaN,
Corr/Rsquare's absolute std test), so what remains is Qlib's float32 arithmetic against
alphaforge's float64: "equal at float32 precision" is judged by ``within_float32``. The
synthetic panel has listings, delistings, halts and, added here, zero-volume days (single
days and runs, so that both x/0 = inf and 0/0 = NaN occur) and a few zero opens.

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
# "float32 precision" (see within_float32): relative 1e-4 of the value, plus 1e-5 of the
# feature's largest magnitude for values near 0 (where float32 cancellation is absolute).
RTOL, ATOL = 1e-4, 1e-5


def float32_panel(panel: Panel) -> Panel:
    """The panel's bars rounded to float32 (what Qlib's binary store keeps)."""
    fields = {f: np.asarray(panel[f]).astype(np.float32).astype(np.float64) for f in BAR_FIELDS}
    return Panel(panel.dates, panel.symbols, fields, panel.groups, panel.group_labels)


def with_zero_volumes(panel: Panel, fraction: float = 0.004, seed: int = 0) -> Panel:
    """``panel`` with zero volume on a random ``fraction`` of its traded cells, half of them
    followed by a second zero-volume day (a run: 0/0 next to x/0), and a zero open on a
    tenth as many (KMID & co. divide by the open: +-inf in the output)."""
    rng = np.random.default_rng(seed)
    volume = np.array(panel["volume"], dtype=np.float64)
    traded = np.argwhere(~np.isnan(volume[:-1]))
    pick = traded[rng.random(len(traded)) < fraction]
    volume[pick[:, 0], pick[:, 1]] = 0.0
    run = pick[: len(pick) // 2]
    nxt = volume[run[:, 0] + 1, run[:, 1]]
    volume[run[:, 0] + 1, run[:, 1]] = np.where(np.isnan(nxt), np.nan, 0.0)
    fields = {f: panel[f] for f in BAR_FIELDS}
    fields["volume"] = volume
    fields["open"] = np.array(panel["open"], dtype=np.float64)
    zero_open = traded[rng.random(len(traded)) < fraction / 10]
    fields["open"][zero_open[:, 0], zero_open[:, 1]] = 0.0
    return Panel(panel.dates, panel.symbols, fields, panel.groups, panel.group_labels)


def long_bars(panel: Panel) -> pd.DataFrame:
    """One row per (date, symbol) with any bar value within the symbol's ``listed`` span (its
    first..last valid close): the stock's own rows, so that Qlib's instrument span
    (``instruments/all.txt``, first..last row) is exactly the panel's ``listed`` field."""
    stacked = {
        f: pd.DataFrame(panel[f], panel.dates, panel.symbols).stack(future_stack=True)
        for f in (*BAR_FIELDS, "listed")
    }
    bars = pd.concat(stacked, axis=1)
    bars.index.names = ["date", "symbol"]
    bars = bars[bars[list(BAR_FIELDS[:5])].notna().any(axis=1) & bars["listed"].notna()]
    return bars.drop(columns="listed").reset_index()


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


def differences(ours: np.ndarray, ref: np.ndarray) -> tuple[int, int, int, float, float]:
    """(ours NaN where ref is not, ours not NaN where ref is, cells where one side is +-inf and
    the other is not the same value, max |d| and max |d| / |ref| over cells finite on both
    sides; relative where |ref| > 1e-3)."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    a_nan, b_nan = np.isnan(a), np.isnan(b)
    inf = (np.isinf(a) | np.isinf(b)) & ~a_nan & ~b_nan & (a != b)
    both = np.isfinite(a) & np.isfinite(b)
    d = np.abs(a[both] - b[both])
    big = np.abs(b[both]) > 1e-3
    rel = d[big] / np.abs(b[both][big])
    return (
        int((a_nan & ~b_nan).sum()),
        int((~a_nan & b_nan).sum()),
        int(inf.sum()),
        float(d.max()) if d.size else 0.0,
        float(rel.max()) if rel.size else 0.0,
    )


def max_ulps(ours: np.ndarray, ref: np.ndarray) -> int:
    """Largest distance in float32 units in the last place between ``ours`` cast to float32
    (Qlib casts its output so) and Qlib's values, over cells finite on both sides with
    |Qlib| > 1e-3 (as ``max_rel``: near 0 a last-place unit is no measure of precision)."""
    a = np.asarray(ours, dtype=np.float64).astype(np.float32)
    b = np.asarray(ref, dtype=np.float64).astype(np.float32)
    both = np.isfinite(a) & np.isfinite(b) & (np.abs(b) > 1e-3)
    if not both.any():
        return 0
    ia, ib = a[both].view(np.int32).astype(np.int64), b[both].view(np.int32).astype(np.int64)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)  # sign-magnitude -> a monotone integer line
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return int(np.abs(ia - ib).max())


def within_float32(ours: np.ndarray, ref: np.ndarray) -> bool:
    """Equal at float32 precision: same NaN and +-inf cells, and elsewhere
    |ours - ref| <= RTOL * |ref| + ATOL * scale, scale = the feature's largest finite |ref|
    (Qlib computes in float32: ~6e-8 relative per operation, amplified by cancellation,
    e.g. a correlation of float32 ratios close to 1)."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    inf = np.isinf(a) | np.isinf(b)
    if not np.array_equal(a[inf], b[inf]):
        return False
    fin = np.isfinite(b)
    if not fin.any():
        return True
    scale = np.abs(b[fin]).max()
    return bool(np.all(np.abs(a[fin] - b[fin]) <= RTOL * np.abs(b[fin]) + ATOL * scale))


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
        ok = within_float32(ours[name], theirs[name])
        rows.append((name, *o, max_ulps(ours[name], theirs[name]), ok, *q))
    cols = ["feature", "nan_ours", "nan_qlib", "inf_diff", "max_abs", "max_rel", "max_ulp"]
    cols += ["f32_equal"]
    cols += ["oracle_nan_ours", "oracle_nan_qlib", "oracle_inf_diff", "oracle_max_abs"]
    cols += ["oracle_max_rel"]
    table = pd.DataFrame(rows, columns=cols).set_index("feature")
    with pd.option_context("display.max_rows", 200, "display.width", 160):
        print(table.to_string(float_format=lambda v: f"{v:.2e}"))
    n_inf = int(sum(np.isinf(theirs[c]).sum() for c in table.index))
    mism = table[(table.nan_ours > 0) | (table.nan_qlib > 0) | (table.inf_diff > 0)]
    print(
        f"\n  alphaforge vs Qlib: {len(table) - len(mism)}/{len(table)} features with the same "
        f"NaN/inf pattern ({n_inf} +-inf cells in Qlib's output); max abs diff "
        f"{table.max_abs.max():.2e} ({table.max_abs.idxmax()}); max rel diff "
        f"{table.max_rel.max():.2e} ({table.max_rel.idxmax()}); "
        f"{int(table.f32_equal.sum())}/{len(table)} equal at float32 precision "
        f"(rtol {RTOL:g}, atol {ATOL:g} x the feature's max |value|)"
    )
    exact = int((table.max_ulp == 0).sum())
    print(
        f"  cast to float32 as Qlib casts: {exact}/{len(table)} features bit-identical to "
        f"Qlib's; largest distance {int(table.max_ulp.max())} ulp ({table.max_ulp.idxmax()}); "
        f"features > 1 ulp: {', '.join(table.index[table.max_ulp > 1]) or 'none'}"
    )
    if len(mism):
        print(f"  NaN-pattern mismatches: {', '.join(mism.index)}")
    if not table.f32_equal.all():
        print(f"  beyond float32 tolerance: {', '.join(table.index[~table.f32_equal])}")
    omism = table[
        (table.oracle_nan_ours > 0) | (table.oracle_nan_qlib > 0) | (table.oracle_inf_diff > 0)
    ]
    print(
        f"  oracle(qlib mode) vs Qlib: {len(table) - len(omism)}/{len(table)} same NaN/inf "
        f"pattern; max abs diff {table.oracle_max_abs.max():.2e}; max rel diff "
        f"{table.oracle_max_rel.max():.2e}"
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
        label = "synthetic(n_symbols=60, n_dates=500, seed=7) + zero volumes"
        panels.append((label, with_zero_volumes(synthetic(60, 500, 7))))
    if args.panel in ("sample", "both"):
        panels.append(("sample()", sample()))
    tables = [compare(label, p, args.qlib_python).assign(panel=label) for label, p in panels]
    if args.csv:
        pd.concat(tables).to_csv(args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
