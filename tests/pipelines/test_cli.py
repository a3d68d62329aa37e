"""The ``alphaforge`` command as a new user runs it: each command on the bundled data, against
PostgreSQL + Redis and against the embedded default (SQLite, no Redis)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ALPHAFORGE = str(Path(sys.executable).parent / "alphaforge")


def cli(*args: str, env_extra: dict | None = None, check: bool = True, cwd=None):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(env_extra or {})
    proc = subprocess.run(
        [ALPHAFORGE, *args], capture_output=True, text=True, timeout=900, env=env, cwd=cwd
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"alphaforge {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_lists_every_command():
    out = cli("--help").stdout
    for command in ("demo", "run", "nightly", "backfill", "warm", "runs", "query", "db"):
        assert command in out
    assert "--start" in cli("backfill", "--help").stdout


def test_demo_on_the_embedded_default(tmp_path):
    proc = cli("demo", "--days", "120", cwd=tmp_path)
    assert "read back from the store: identical" in proc.stdout
    assert "Top and bottom 5" in proc.stdout and "sector_mom" in proc.stdout
    assert (tmp_path / "alphaforge-demo.db").exists()


def _spec_commands(spec: str, db: list[str], env: dict, redis: list[str]) -> None:
    """Every spec command in the order a production setup runs them."""
    assert "schema revision" in cli("db", "upgrade", *db).stdout
    run = cli("run", spec, "--start", "2017-10-02", "--end", "2017-12-29", *db, env_extra=env)
    assert "values written" in run.stdout
    chunked = ["--start", "2017-06-01", "--end", "2017-09-29", "--chunk", "40", *db]
    back = cli("backfill", spec, *chunked)
    assert "skipped" not in back.stdout
    again = cli("backfill", spec, *chunked)
    assert again.stdout.count("(done earlier)") == 3 and " 0 values written" in again.stdout
    night = cli("nightly", spec, *db)
    assert "2018-02-07" in night.stdout
    warm = cli("warm", spec, "--days", "32", *db, *redis, env_extra=env, check=bool(redis))
    if redis:
        assert "stored in the shared cache" in warm.stdout
    else:  # the embedded default has no shared cache to warm: a clear refusal
        assert warm.returncode != 0 and "needs a shared cache" in warm.stderr
    runs = cli("runs", *db).stdout
    assert runs.count("succeeded") >= 5 and "cli" in runs
    csv = cli("query", *db, "--factor", "mom_20", "--date", "2018-02-07", "--csv").stdout
    frame = pd.read_csv(io.StringIO(csv), index_col=0)
    assert "mom_20" in frame.columns and len(frame) > 50 and frame["mom_20"].notna().any()
    listing = cli("query", *db, "--list").stdout
    assert "neutral" in listing and "pv" in listing


def test_spec_commands_against_postgres_and_redis(pg_url, redis_url, redis_namespace, small_spec):
    env = {"ALPHAFORGE_CACHE_NAMESPACE": redis_namespace}
    _spec_commands(
        str(small_spec("cli", block_rows=16)), ["--db", pg_url], env, ["--redis", redis_url]
    )


def test_spec_commands_on_the_embedded_default(tmp_path, small_spec):
    spec = str(small_spec("cli", block_rows=16))
    _spec_commands(spec, ["--db", f"sqlite:///{tmp_path / 'store.db'}"], {}, [])


def test_failures_exit_non_zero_with_a_message(tmp_path, small_spec):
    bad = tmp_path / "bad.toml"
    bad.write_text('[factors.formulas]\nx = "ts_rnk(close, 5)"\n[sourse]\nkind = "sample"\n')
    proc = cli("run", str(bad), "--start", "2017-01-03", "--end", "2017-01-31", check=False)
    assert proc.returncode != 0 and "unknown section [sourse]" in proc.stderr
    bad.write_text('[factors.formulas]\nx = "ts_rnk(close, 5)"\n')
    proc = cli("run", str(bad), "--start", "2017-01-03", "--end", "2017-01-31", check=False)
    assert proc.returncode != 0 and "did you mean 'ts_rank'" in proc.stderr
    db = f"sqlite:///{tmp_path / 'x.db'}"
    proc = cli("query", "--db", db, "--factor", "nope", "--date", "2018-01-02", check=False)
    assert proc.returncode != 0 and "nope" in proc.stderr
    proc = cli("runs", "--db", "postgresql://nobody:secret@127.0.0.1:1/none", check=False)
    assert proc.returncode != 0 and "secret" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("command", ["demo", "run", "nightly", "backfill", "warm", "query", "runs"])
def test_every_command_has_help(command):
    assert "usage: alphaforge" in cli(command, "--help").stdout
