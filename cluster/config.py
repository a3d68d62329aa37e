"""Configuration in one place: built-in defaults, a TOML file, then environment variables.

Later sources override earlier ones. The TOML file is ``$ALPHAFORGE_CONFIG`` or
``./alphaforge.toml`` when present; its keys are the field names of :class:`Settings`
(top level or under an ``[alphaforge]`` table). Environment variables: ``DATABASE_URL``,
``REDIS_URL``, ``DASK_SCHEDULER_ADDRESS`` and ``ALPHAFORGE_<FIELD>`` for every field.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

_ALIASES = {
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "scheduler_address": "DASK_SCHEDULER_ADDRESS",
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting the engine, store and cluster read."""

    database_url: str = "sqlite:///alphaforge.db"
    redis_url: str | None = None
    scheduler_address: str | None = None
    # The embedded LocalCluster: one worker process whose numba kernels use every core
    # (prange), so its memory cache sees every block; production clusters set their own.
    n_workers: int = 1
    threads_per_worker: int = 1
    worker_memory_limit: str = "auto"  # Dask's auto: the machine's memory / workers
    retries: int = 2
    block_rows: int | None = None
    task_memory_bytes: int | None = None  # None: 40% of a worker's memory per thread
    l1_cache_bytes: int | None = None  # None: 20% of a worker's memory limit
    redis_ttl_seconds: int = 7 * 24 * 3600
    # Bytes one run may write to Redis (its blocks share it equally); 0: no limit. A full
    # 2500 x 5000 run of alpha101 + alpha158 has ~39 GiB of cacheable node values.
    redis_max_bytes_per_run: int = 4 << 30
    redis_timeout_seconds: float = 2.0
    cache_namespace: str = "alphaforge"
    # "outputs": a run holds nothing beyond its results; "shared"/"all" also keep intermediate
    # nodes (see engine.plan) at the cost of memory and Redis bytes
    cache_nodes: str = "outputs"
    progress: bool = True

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _coerce(name: str, raw: Any, default: Any, annotation: str) -> Any:
    if raw is None or (isinstance(raw, str) and raw == "" and "None" in annotation):
        return None
    try:
        if annotation.startswith("int"):
            return int(raw)
        if annotation.startswith("float"):
            return float(raw)
        if annotation.startswith("bool"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r} must be {annotation}, got {raw!r}") from None


def load_settings(
    path: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Read defaults, then the TOML file, then the environment, then ``overrides``."""
    env = os.environ if env is None else env
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}

    toml_path = Path(path) if path else Path(env.get("ALPHAFORGE_CONFIG", "alphaforge.toml"))
    if path and not toml_path.is_file():
        raise ConfigError(f"configuration file not found: {toml_path}")
    if toml_path.is_file():
        try:
            data = tomllib.loads(toml_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{toml_path}: invalid TOML: {exc}") from None
        data = data.get("alphaforge", data)
        for key, raw in data.items():
            if key in fields:
                values[key] = raw

    for name in fields:
        for var in (f"ALPHAFORGE_{name.upper()}", _ALIASES.get(name)):
            if var and var in env:
                values[name] = env[var]

    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    coerced = {
        name: _coerce(name, raw, fields[name].default, str(fields[name].type))
        for name, raw in values.items()
    }
    settings = Settings(**coerced)
    if settings.cache_nodes not in {"outputs", "shared", "all"}:
        raise ConfigError("setting 'cache_nodes' must be one of outputs, shared, all")
    if settings.retries < 0:
        raise ConfigError("setting 'retries' must be >= 0")
    return settings
