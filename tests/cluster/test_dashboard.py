"""The engine's dashboard page (``/alphaforge``) and Prometheus metrics (``/metrics``).

Real clusters and real HTTP: the embedded LocalCluster of ``cluster.connect`` (worker
processes, scheduler in this process) and an external ``dask scheduler --preload
cluster.dashboard`` process. The page is a bokeh server document, so its contents are read the
way a browser gets them: over the bokeh server's websocket (``bokeh.client.pull_session``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

FACTORS = {"m": "ts_mean(close, 5)", "r": "rank(volume)"}
MORE_FACTORS = {**FACTORS, "s": "ts_std(close, 10)"}


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.read().decode()


def _metrics(base: str) -> dict[str, float]:
    """The ``alphaforge_*`` samples of ``<base>/metrics``: ``{'name{labels}': value}``."""
    status, text = _get(base + "/metrics")
    assert status == 200
    out = {}
    for line in text.splitlines():
        if line.startswith("alphaforge_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after[name] - before.get(name, 0.0)


def _page(base: str) -> dict:
    """What ``/alphaforge`` shows, pulled over the websocket as a browser gets it: the texts
    (``header``, ``slow-title``) and the data sources (``runs``, ``progress``, ``timeline``,
    ``blocks``, ``slow``), by their model names ``alphaforge-<name>``."""
    from bokeh.client import pull_session

    with pull_session(url=base + "/alphaforge") as session:
        doc = session.document
        out = {}
        for name in ("header", "slow-title"):
            out[name] = doc.select_one({"name": f"alphaforge-{name}"}).text
        for name in ("runs", "progress", "timeline", "blocks", "slow"):
            out[name] = dict(doc.select_one({"name": f"alphaforge-{name}"}).data)
    return out


def _base(client) -> str:
    return client.dashboard_link.rsplit("/", 1)[0]


def _run_ids(client) -> list[str]:
    events = client.get_events("alphaforge")
    return [m["run"] for _, m in events if isinstance(m, dict) and m.get("event") == "plan"]


@pytest.fixture(scope="module")
def panel():
    from engine.sources import synthetic

    return synthetic(n_symbols=20, n_dates=80, seed=1)


@pytest.fixture(scope="module")
def local_client():
    """The embedded LocalCluster (processes, dashboard on a free port) from cluster.connect."""
    from cluster.config import load_settings
    from cluster.connect import close_local, connect

    settings = load_settings(env={}, n_workers=1, threads_per_worker=1, progress=False)
    client = connect(settings=settings)
    assert client.cluster is not None, "expected cluster.connect to start a LocalCluster"
    yield client, settings
    close_local()


def test_page_and_metrics_on_the_embedded_cluster(local_client, panel):
    import engine

    client, settings = local_client
    base = _base(client)
    before = _metrics(base)

    first = engine.compute(FACTORS, panel, client=client, settings=settings, block_rows=20)
    second = engine.compute(MORE_FACTORS, panel, client=client, settings=settings, block_rows=20)
    n_blocks = len(first.plan.blocks)
    assert n_blocks == len(second.plan.blocks) == 4
    assert second.stats.l1_hits > 0 and second.stats.misses > 0  # m, r cached; s new
    run1, run2 = _run_ids(client)[-2:]

    # /metrics: the scheduler's Prometheus endpoint carries the engine's counters
    after = _metrics(base)
    assert _delta(after, before, "alphaforge_runs_total") == 2
    assert _delta(after, before, "alphaforge_runs_finished_total") == 2
    assert _delta(after, before, "alphaforge_blocks_total") == 2 * n_blocks
    assert _delta(after, before, "alphaforge_block_seconds_count") == 2 * n_blocks
    assert _delta(after, before, "alphaforge_node_computations_total") == (
        first.computed_nodes + second.computed_nodes
    )
    assert _delta(after, before, 'alphaforge_cache_hits_total{level="l1"}') == (
        first.stats.l1_hits + second.stats.l1_hits
    )
    assert _delta(after, before, 'alphaforge_cache_hits_total{level="l2"}') == 0
    assert _delta(after, before, "alphaforge_cache_misses_total") == (
        first.stats.misses + second.stats.misses
    )
    assert _delta(after, before, "alphaforge_rows_written_total") == 0
    assert (
        after['alphaforge_block_seconds_bucket{le="+Inf"}']
        == (after["alphaforge_block_seconds_count"])
    )

    # /alphaforge: served, linked from the other pages, and showing both runs
    status, html = _get(base + "/alphaforge")
    assert status == 200 and "bokeh" in html
    assert _get(base + "/individual-alphaforge")[0] == 200
    _, status_page = _get(base + "/status")
    assert 'href="alphaforge"' in status_page  # top navigation bar
    assert 'href="individual-alphaforge"' in status_page  # the "More..." menu

    page = _page(base)
    header = page["header"]
    assert f"Current run <b>{run2}</b> (finished)" in header
    assert f"{n_blocks}/{n_blocks} blocks" in header
    runs = page["runs"]
    assert runs["run"][:2] == [run2, run1]
    assert runs["blocks"][:2] == [f"{n_blocks}/{n_blocks}"] * 2
    assert runs["status"][:2] == ["finished", "finished"]
    assert runs["factors"][:2] == [3, 2]
    assert runs["hit_rate"][1] == 0.0
    assert runs["hit_rate"][0] == pytest.approx(second.stats.hit_rate, abs=1e-4)
    blocks = page["blocks"]
    assert blocks["block"] == list(range(1, n_blocks + 1))
    assert sum(blocks["l1"]) == second.stats.l1_hits
    assert sum(blocks["miss"]) == second.stats.misses
    progress = page["progress"]
    assert progress["done"] == progress["total"] == [n_blocks]
    slow = page["slow"]
    assert slow["node"] and all("ts_std" in n for n in slow["node"])  # only s was computed
    assert run2 in page["slow-title"]
    timeline = page["timeline"]
    assert timeline["done"] == list(range(n_blocks + 1))
    assert timeline["t"] == sorted(timeline["t"])


# ------------------------------------------------------------------ external scheduler
@pytest.fixture(scope="module")
def preloaded_scheduler(tmp_path_factory) -> Iterator:
    """``dask scheduler --preload cluster.dashboard`` and one worker, as separate processes."""
    from distributed import Client

    tmp = tmp_path_factory.mktemp("dask-preload")
    dask_bin = str(Path(sys.executable).parent / "dask")
    scheduler_file = tmp / "scheduler.json"
    logs, procs = [], []

    def spawn(name: str, argv: list[str]) -> None:
        log = open(tmp / f"{name}.log", "wb")
        logs.append(log)
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    spawn(
        "scheduler",
        [dask_bin, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
         ":0", "--scheduler-file", str(scheduler_file), "--preload", "cluster.dashboard"],
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not scheduler_file.exists():
        if time.monotonic() > deadline or procs[0].poll() is not None:
            pytest.fail("the dask scheduler did not start:\n" + (tmp / "scheduler.log").read_text())
        time.sleep(0.2)
    spawn(
        "worker",
        [dask_bin, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
         "--no-nanny", "--host", "127.0.0.1", "--memory-limit", "2GiB"],
    )  # fmt: skip
    client = Client(scheduler_file=str(scheduler_file), timeout=60)
    try:
        client.wait_for_workers(1, timeout=120)
        yield client
    finally:
        client.close()
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()


def test_external_scheduler_with_the_preload(preloaded_scheduler, panel):
    import engine
    from cluster.config import load_settings

    client = preloaded_scheduler
    base = _base(client)

    # Before any run: the page renders an empty state and the counters are zero.
    page = _page(base)
    assert "No runs yet" in page["header"]
    assert page["runs"]["run"] == []
    metrics = _metrics(base)
    assert metrics["alphaforge_blocks_total"] == 0
    assert metrics["alphaforge_runs_total"] == 0

    # Malformed events must break neither the page nor the metrics.
    client.log_event("alphaforge", "not a dict")
    client.log_event("alphaforge", {"run": "junk", "event": "block", "seconds": "x", "done": []})

    settings = load_settings(env={}, progress=False)
    result = engine.compute(FACTORS, panel, client=client, settings=settings, block_rows=20)
    n_blocks = len(result.plan.blocks)
    [run] = _run_ids(client)

    metrics = _metrics(base)
    assert metrics["alphaforge_runs_total"] == 1
    assert metrics["alphaforge_runs_finished_total"] == 1
    assert metrics["alphaforge_blocks_total"] == n_blocks + 1  # + the junk block event
    assert metrics["alphaforge_cache_misses_total"] == result.stats.misses > 0
    assert metrics['alphaforge_cache_hits_total{level="l1"}'] == 0
    assert metrics["alphaforge_node_computations_total"] == result.computed_nodes

    page = _page(base)
    assert f"Current run <b>{run}</b> (finished)" in page["header"]
    runs = page["runs"]
    assert run in runs["run"] and "junk" in runs["run"]
    _, status_page = _get(base + "/status")
    assert re.search(r'href="alphaforge"', status_page)


def test_embedded_workers_start_with_the_allocator_settings(local_client):
    """Worker processes are spawned with WORKER_MALLOC_ENV (glibc reads it at start-up), not
    only Dask's MALLOC_TRIM_THRESHOLD_=65536 that makes every block array a fresh mmap."""
    import os

    from cluster.connect import WORKER_MALLOC_ENV

    client, _ = local_client
    seen = client.run(lambda: {k: os.environ.get(k) for k in WORKER_MALLOC_ENV})
    assert seen and all(env == WORKER_MALLOC_ENV for env in seen.values()), seen


def test_embedded_workers_load_the_kernels_from_start_up(local_client):
    """The worker preload (cluster.worker) loads the kernels in a background thread before any
    task asks for them."""
    client, _ = local_client
    preloads = client.run(lambda dask_worker: [p.name for p in dask_worker.preloads])
    assert preloads and all("cluster.worker" in names for names in preloads.values()), preloads

    def warmed() -> bool:
        import engine.execute

        return engine.execute._WARMED

    deadline = time.monotonic() + 120
    while not all(client.run(warmed).values()):
        assert time.monotonic() < deadline, "kernels not loaded two minutes after start-up"
        time.sleep(0.2)


def test_workers_get_the_allocator_settings_after_another_cluster(monkeypatch):
    """Dask's nanny prefers this process's os.environ over its pre-spawn config and leaves
    MALLOC_TRIM_THRESHOLD_=65536 there after any plain LocalCluster: a cluster started under
    cluster.connect.spawning_with (as the embedded one is) must still give its workers
    WORKER_MALLOC_ENV, and leave os.environ as it was."""
    import os

    from distributed import Client, LocalCluster

    from cluster.connect import WORKER_MALLOC_ENV, spawning_with, worker_environ

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # what a plain LocalCluster leaves
    monkeypatch.delenv("MALLOC_TOP_PAD_", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own: still wins, as with Dask
    monkeypatch.delenv("ALPHAFORGE_TEST_UNSET", raising=False)
    env = {**worker_environ(), "OMP_NUM_THREADS": 1, "ALPHAFORGE_TEST_UNSET": None}
    with spawning_with(env):
        cluster = LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    client = Client(cluster, set_as_default=False)
    try:
        seen = client.run(lambda: {k: os.environ.get(k) for k in WORKER_MALLOC_ENV})
        other = client.run(
            lambda: (os.environ.get("OMP_NUM_THREADS"), os.environ.get("ALPHAFORGE_TEST_UNSET"))
        )
    finally:
        client.close()
        cluster.close()
    assert seen and all(env == WORKER_MALLOC_ENV for env in seen.values()), seen
    assert set(other.values()) == {("3", None)}, other  # None: not set (not "None")
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"
    assert "MALLOC_TOP_PAD_" not in os.environ
