"""Pipeline specs: a production pipeline as a TOML file.

```toml
[pipeline]
name = "production"          # runs are recorded under this name
dialect = "alpha101"         # for the formulas below
[source]                     # kind = parquet | csv | sql | sample | synthetic
kind = "parquet"
path = "/data/bars.parquet"  # relative paths are relative to the spec file
[universe]
screen = "volume > 0"        # optional; rows where it is false/NaN are not written
top = 500                    # optional: per date, the 500 largest by top_by (after screen)
top_by = "adv20"
[factors]
libraries = ["alpha101", "alpha158"]
[factors.formulas]
mom_20 = "close / delay(close, 20) - 1"
[store]
url = "postgresql://alphaforge@db/alphaforge"   # default: settings / DATABASE_URL
[cache]
redis_url = "redis://cache:6379/0"                  # default: settings / REDIS_URL
warm_days = 120
[cluster]
address = "tcp://scheduler:8786"                    # default: a LocalCluster
block_rows = 64
```

Unknown sections or keys are errors that name them, so a typo never silently changes a
production run.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cluster.config import Settings, load_settings
from engine.errors import ConfigError
from engine.panel import Panel
from factors import library, parse
from factors.expr import Expr

_ALLOWED = {
    "pipeline": {"name", "dialect"},
    "source": {"kind", "path", "url", "table", "n_symbols", "n_dates", "seed", "on_bad_rows"},
    "universe": {"screen", "top", "top_by"},
    "factors": {"libraries", "formulas", "exclude"},
    "store": {"url"},
    "cache": {"redis_url", "warm_days"},
    "cluster": {"address", "block_rows", "n_workers", "retries"},
}


@dataclasses.dataclass
class Source:
    """Where bars come from; loads only a date range when asked."""

    kind: str
    path: Path | None = None
    url: str | None = None
    table: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    panel: Panel | None = None

    def load(self, start: Any = None, end: Any = None) -> Panel:
        """A validated Panel of the dates in ``[start, end]`` (None: open-ended)."""
        from engine import sources

        bad = self.options.get("on_bad_rows", "drop")
        if self.kind == "panel":
            assert self.panel is not None
            return self.panel.sel(start, end)
        if self.kind == "sample":
            return sources.sample(start, end)
        if self.kind == "synthetic":
            opts = {k: int(v) for k, v in self.options.items() if k != "on_bad_rows"}
            return sources.synthetic(**opts).sel(start, end)
        if self.kind == "parquet":
            return sources.read_parquet(self.path, start=start, end=end, on_bad_rows=bad)
        if self.kind == "csv":
            return sources.read_csv(self.path, on_bad_rows=bad).sel(start, end)
        if self.kind == "sql":
            return sources.read_sql(self.table, self.url, start=start, end=end, on_bad_rows=bad)
        raise ConfigError(f"unknown source kind {self.kind!r}")

    def spans(self, end: Any = None) -> pd.DataFrame:
        """Per symbol, its first and last date with a valid close up to ``end`` (the listing
        span Qlib's instruments file holds), read from the whole source, not a window."""
        if self.kind in {"parquet", "sample"}:
            import contextlib

            from engine.sources.sample import sample_path

            ctx = sample_path() if self.kind == "sample" else contextlib.nullcontext(self.path)
            with ctx as path:
                bars = pd.read_parquet(path, columns=["symbol", "date", "close"])
            bars["date"] = pd.to_datetime(bars["date"])
            bars = bars[bars["close"].notna() & (bars["close"] > 0)]
        else:
            frame = self.load(None, end).to_frame(["close"]).reset_index()
            bars = frame.rename(columns={"asset": "symbol"}).dropna(subset=["close"])
        if end is not None:
            bars = bars[bars["date"] <= pd.Timestamp(end)]
        return bars.groupby("symbol")["date"].agg(["min", "max"])

    def calendar(self) -> pd.DatetimeIndex:
        """All trading dates of the source (reads only the date column where it can)."""
        if self.kind == "panel":
            assert self.panel is not None
            return self.panel.dates
        if self.kind == "parquet":
            dates = pd.read_parquet(self.path, columns=["date"])["date"]
            return pd.DatetimeIndex(np.unique(pd.to_datetime(dates).values))
        if self.kind == "sample":
            from engine.sources.sample import sample_path

            with sample_path() as path:
                dates = pd.read_parquet(path, columns=["date"])["date"]
            return pd.DatetimeIndex(np.unique(pd.to_datetime(dates).values))
        return self.load().dates


@dataclasses.dataclass
class Spec:
    """A parsed pipeline spec (see the module docstring)."""

    name: str
    source: Source
    factors: dict[str, Expr]
    libraries: dict[str, str]
    screen: Expr | None
    settings: Settings
    top: tuple[Expr, int] | None = None
    warm_days: int = 120
    path: Path | None = None

    @classmethod
    def from_toml(cls, path: str | Path, settings: Settings | None = None) -> Spec:
        """Read and validate a spec file."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"spec file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        return cls.from_dict(data, base=path.parent, settings=settings, path=path)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        base: Path = Path("."),
        settings: Settings | None = None,
        path: Path | None = None,
    ) -> Spec:
        where = str(path or "spec")
        for section, body in data.items():
            if section not in _ALLOWED:
                raise ConfigError(f"{where}: unknown section [{section}]")
            if not isinstance(body, Mapping):
                raise ConfigError(f"{where}: [{section}] must be a table")
            unknown = set(body) - _ALLOWED[section]
            if unknown:
                raise ConfigError(f"{where}: unknown key(s) in [{section}]: {sorted(unknown)}")
        pipe = data.get("pipeline", {})
        name = str(pipe.get("name") or (path.stem if path else "pipeline"))
        dialect = str(pipe.get("dialect", "alpha101"))

        src = dict(data.get("source", {"kind": "sample"}))
        kind = src.pop("kind", "sample")
        p = src.pop("path", None)
        source = Source(
            kind=kind,
            path=(base / p) if p else None,
            url=src.pop("url", None),
            table=src.pop("table", None),
            options=src,
        )
        if kind in {"parquet", "csv"} and source.path is None:
            raise ConfigError(f"{where}: [source] kind={kind!r} needs a path")
        if kind == "sql" and not (source.url and source.table):
            raise ConfigError(f"{where}: [source] kind='sql' needs url and table")
        if kind not in {"parquet", "csv", "sql", "sample", "synthetic"}:
            raise ConfigError(f"{where}: [source] unknown kind {kind!r}")

        fac = data.get("factors", {})
        factors: dict[str, Expr] = {}
        libs: dict[str, str] = {}
        for lib in fac.get("libraries", []):
            if lib not in library.names():
                raise ConfigError(
                    f"{where}: unknown factor library {lib!r}; known: {library.names()}"
                )
            for k, e in library.load(lib).items():
                factors[k] = e
                libs[k] = lib
        for k in fac.get("exclude", []):
            if k not in factors:
                raise ConfigError(f"{where}: [factors] exclude names unknown factor {k!r}")
            del factors[k], libs[k]
        for k, text in fac.get("formulas", {}).items():
            if k in factors:
                raise ConfigError(f"{where}: factor {k!r} is defined twice")
            try:
                factors[k] = parse(str(text), dialect)
            except ValueError as exc:
                raise ConfigError(f"{where}: factor {k!r}: {exc}") from None
            libs[k] = "formula"
        if not factors:
            raise ConfigError(f"{where}: [factors] names no libraries and no formulas")
        universe = data.get("universe", {})
        screen = parse(universe["screen"], dialect) if universe.get("screen") else None
        top = None
        if "top" in universe or "top_by" in universe:
            if not ("top" in universe and "top_by" in universe):
                raise ConfigError(f"{where}: [universe] top and top_by go together")
            top = (parse(str(universe["top_by"]), dialect), int(universe["top"]))

        cl = data.get("cluster", {})
        settings = (settings or load_settings()).replace(
            database_url=data.get("store", {}).get("url"),
            redis_url=data.get("cache", {}).get("redis_url"),
            scheduler_address=cl.get("address"),
            block_rows=cl.get("block_rows"),
            n_workers=cl.get("n_workers"),
            retries=cl.get("retries"),
        )
        warm_days = int(data.get("cache", {}).get("warm_days", 120))
        return cls(name, source, factors, libs, screen, settings, top, warm_days, path)
