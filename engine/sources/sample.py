"""The bundled real sample: ~90 S&P 500 stocks, 2013-02-08 .. 2018-02-07, daily bars.

A subset of the shared ``sp500_daily_2013_2018.parquet`` (vendor IEX, via the MIT-licensed
CNuge/kaggle-code repository, credit Cam Nugent; see ``engine/data/README.md``), written by
``scripts/make_sample.py``. It keeps some of the source's known defect rows on purpose, so
`sample()` loads it with ``on_bad_rows="drop"`` and ``panel.quality.quarantine`` shows them.
There is no vwap column: ``panel["vwap"]`` falls back to (high + low + close) / 3.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from typing import Any

from engine.panel import Panel
from engine.sources.files import read_parquet

__all__ = ["SAMPLE_FILE", "sample"]

SAMPLE_FILE = "sp500_sample.parquet"


def sample(start: Any = None, end: Any = None) -> Panel:
    """Load the bundled real sample as a validated Panel (defect rows quarantined).

    ``start``/``end`` (inclusive) load only those dates."""
    with as_file(files("engine").joinpath("data", SAMPLE_FILE)) as path:
        return read_parquet(path, on_bad_rows="drop", start=start, end=end)


def sample_path():
    """A context manager giving the bundled sample's file path."""
    return as_file(files("engine").joinpath("data", SAMPLE_FILE))
