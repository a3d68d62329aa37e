"""Data sources: every way daily bars become a validated `engine.panel.Panel`.

Parquet and CSV files (`files`), SQL tables or queries (`sql`), the seeded synthetic market
(`synthetic`) and the bundled real sample (`sample`). All of them go through the same
validation (`validate`) and attach a data-quality report (`quality`) as ``panel.quality``.
"""

from engine.sources.files import read_csv, read_parquet
from engine.sources.quality import QualityReport, quality_report
from engine.sources.sample import sample
from engine.sources.sql import read_sql
from engine.sources.synthetic import synthetic
from engine.sources.validate import check_arrays, validate_bars

__all__ = [
    "QualityReport",
    "check_arrays",
    "quality_report",
    "read_csv",
    "read_parquet",
    "read_sql",
    "sample",
    "synthetic",
    "validate_bars",
]
