"""The Dask executor equals the single-process evaluation, on a real multi-process cluster."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from engine import compute, evaluate, plan
from engine.plan import UNBOUNDED
from factors import library

MIXED = {
    "mom": "close / delay(close, 20) - 1",
    "pv": "-1 * correlation(rank(open), rank(volume), 10)",
    "z": "rank(ts_mean(returns, 5)) * 2",
    "g": "IndNeutralize(ts_rank(close, 10), IndClass.industry)",
    "nested": "ts_max(ts_mean(close, 5), 7) / ts_min(low, 3)",
    "decay": "decay_linear(rank(volume), 8)",
    "rsi": "rsi(close, 14)",
}


def assert_same(actual: dict, expected: dict, rtol: float = 1e-12) -> None:
    """Equal NaN pattern; values equal to ``rtol`` of the factor's scale.

    Running-sum kernels start their sums at the block's first halo row instead of the
    panel's first row, so the last bits can differ (summation order); a relative tolerance
    on values that cancel to ~0 needs the factor's own scale as the reference.
    """
    assert set(actual) == set(expected)
    for name in expected:
        a, e = actual[name], expected[name]
        assert a.shape == e.shape, name
        np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg=f"NaN pattern of {name}")
        scale = np.nanmax(np.abs(e)) if np.isfinite(e).any() else 1.0
        np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * scale, equal_nan=True, err_msg=name)


def test_plan_shares_subexpressions(small_panel):
    p = plan({"a": "rank(close) + rank(volume)", "b": "rank(close) * 2"}, small_panel)
    # a: add(rank(close), rank(volume)) = 5 nodes; b: mul(rank(close), 2) = 4 nodes
    assert p.nodes_before_sharing == 9
    assert len(p.nodes) == 7  # rank(close) and close shared
    text = p.explain()
    assert "9 before sharing -> 7 distinct" in text
    assert "blocks:" in text and "memory per task" in text


def test_plan_lookbacks_and_halo(small_panel):
    p = plan({"x": "ts_mean(delay(close, 5), 10)", "e": "ema(close, 0.5)"}, small_panel)
    by_op = {n.label: n for n in p.nodes.values()}
    # ts_mean is started on a multiple of w one window early: 2w-1 rows (see BLOCK_ALIGNED)
    assert by_op["ts_mean"].lookback == 19 + 5
    assert by_op["delay"].need == 19
    assert by_op["ema"].lookback >= UNBOUNDED
    assert p.halo >= UNBOUNDED  # ema reads all history


def test_default_blocks_are_the_longest_power_of_two_with_two_per_thread():
    from engine.plan import default_block_rows

    assert default_block_rows(2000, 2) == 512  # 4 blocks: Alpha158 2000 x 200's cold runs
    assert default_block_rows(2048, 2) == 512 and default_block_rows(2049, 2) == 512
    assert default_block_rows(2000, 2, per_thread=3) == 256
    for t in (1, 2, 5, 40, 333, 2000, 2500):
        for threads in (1, 2, 3, 8):
            rows = default_block_rows(t, threads)
            assert rows & (rows - 1) == 0
            blocks = -(-t // rows)
            assert blocks >= min(t, 2 * threads), (t, threads, rows)
            assert rows == 1 or -(-t // (2 * rows)) < 2 * threads  # no longer one would do


@pytest.mark.parametrize("block_rows", [7, 33, None])
def test_compute_equals_evaluate(dask_client, small_panel, block_rows):
    expected = evaluate(MIXED, small_panel)
    result = compute(MIXED, small_panel, dask_client, block_rows=block_rows, progress=False)
    if block_rows:
        assert result.plan.block_rows == block_rows
    assert len(result.plan.blocks) >= 2
    assert_same(result.factors, expected)
    frame = result.to_frame()
    assert list(frame.index.names) == ["date", "asset"]
    assert frame.shape == (small_panel.shape[0] * small_panel.shape[1], len(MIXED))


@pytest.mark.slow
@pytest.mark.parametrize("lib", ["alpha101", "alpha158", "technical"])
def test_libraries_equal_evaluate(dask_client, lib):
    from engine.sources import synthetic

    panel = synthetic(n_symbols=24, n_dates=160, seed=11)
    factors = library.load(lib)
    dialect = "qlib" if lib == "alpha158" else "alpha101"
    expected = evaluate(factors, panel, dialect=dialect)
    # blocks of 25 rows: shorter than the longest lookbacks (Alpha158 has 60-row windows)
    result = compute(factors, panel, dask_client, block_rows=25, progress=False)
    assert result.plan.max_lookback > 25
    assert_same(result.factors, expected)


def test_compute_on_real_sample_equals_evaluate(dask_client):
    from engine.sources import sample

    panel = sample().islice(900, 1100)
    factors = {**MIXED, "a158": "Corr($close, Log($volume+1), 10)"}
    factors.pop("a158")
    expected = evaluate(factors, panel)
    result = compute(factors, panel, dask_client, block_rows=40, progress=False)
    assert_same(result.factors, expected)


@pytest.mark.parametrize("shared_memory", [True, False], ids=["shared-files", "scattered"])
def test_killing_a_worker_mid_run_gives_the_same_result(dask_processes, small_panel, shared_memory):
    """Dask reruns the lost worker's blocks: from the shared input file on one host, or from
    the surviving replica of scattered input (or input sent again, see ``compute``)."""
    from distributed import Client

    client = Client(scheduler_file=str(dask_processes.scheduler_file), timeout=60)
    client.wait_for_workers(2, timeout=120)
    try:
        slow = {f"f{i}": f"ts_rank(ts_corr(close, volume, {5 + i}), 15)" for i in range(12)}
        expected = evaluate(slow, small_panel)
        victim = dask_processes.workers[1]
        killed = threading.Event()

        class KillAfterFirstBlock:
            def on_plan(self, plan):
                pass

            def on_block(self, result, done, total):
                if not killed.is_set():
                    os.kill(victim.pid, signal.SIGKILL)
                    killed.set()

            def on_finish(self, result):
                pass

        result = compute(
            slow,
            small_panel,
            client,
            block_rows=4,
            hooks=[KillAfterFirstBlock()],
            progress=False,
            cache=False,
            shared_memory=shared_memory,
        )
        assert killed.is_set() and victim.wait(timeout=30) is not None
        assert_same(result.factors, expected)
    finally:
        client.close()
        # bring the cluster back to two workers for later tests
        dask_processes.workers[1] = dask_processes.add_worker(int(time.time()) % 100000)


def test_window_with_origin_equals_whole_history_bit_for_bit(dask_client, small_panel):
    """A window that starts later, with enough history, gives the whole run's bits."""
    factors = {"m": "ts_mean(close, 7)", "c": "rank(correlation(close, volume, 9))"}
    whole = evaluate(factors, small_panel)
    p = plan(factors, small_panel)
    h0 = 37
    window = small_panel.islice(h0, None)
    result = compute(factors, window, dask_client, block_rows=16, origin=h0, progress=False)
    first_exact = p.max_lookback  # rows of the window before its values are whole-history exact
    for name in factors:
        np.testing.assert_array_equal(result[name][first_exact:], whole[name][h0 + first_exact :])
    assert [b for b in result.plan.blocks][:2] == [(0, 11), (11, 27)]  # grid anchored at 0


def test_the_collector_is_off_while_planning_and_submitting_and_back_after(
    dask_client, small_panel
):
    """compute() keeps the cyclic garbage collector off from planning to submission (a full
    collection there delays every worker's first task) and on while it waits for results
    and after it returns or fails."""
    import gc

    from engine.errors import PlanError

    seen: dict[str, list[bool]] = {"plan": [], "block": []}

    class Watch:
        def on_plan(self, plan):
            seen["plan"].append(gc.isenabled())

        def on_block(self, result, done, total):
            seen["block"].append(gc.isenabled())

        def on_finish(self, result):
            pass

    assert gc.isenabled()
    compute(MIXED, small_panel, client=dask_client, block_rows=32, progress=False, hooks=[Watch()])
    assert seen["plan"] == [False] and seen["block"] and all(seen["block"])
    assert gc.isenabled()
    with pytest.raises(PlanError):  # fails in planning: the panel has no such field
        compute({"bad": "$nosuchfield + 1"}, small_panel, client=dask_client, progress=False)
    assert gc.isenabled()


def test_results_through_shared_memory_or_the_network_are_identical(dask_client, small_panel):
    """Workers on this host write into the client's shared-memory result file (no values in
    the task results), the file is gone after the run, and the network path (shared memory
    off, or a worker that cannot see the file) gives the same bits."""
    from pathlib import Path

    from engine import shared_output

    class Returned:
        """Records whether each block task sent its values back."""

        def __init__(self):
            self.sent: list[bool] = []

        def on_plan(self, plan):
            pass

        def on_block(self, result, done, total):
            self.sent.append(result.values is not None)

        def on_finish(self, result):
            pass

    mine = f"alphaforge-{os.getpid()}-*"  # other processes may run alphaforge meanwhile
    before = set(Path("/dev/shm").glob(mine))
    shm, net = Returned(), Returned()
    via_shm = compute(
        MIXED, small_panel, client=dask_client, block_rows=16, progress=False, hooks=[shm]
    )
    assert set(Path("/dev/shm").glob(mine)) == before, "result file not removed"
    via_net = compute(
        MIXED,
        small_panel,
        client=dask_client,
        block_rows=16,
        progress=False,
        shared_memory=False,
        hooks=[net],
    )
    assert len(shm.sent) >= 2 and not any(shm.sent), "blocks should write to shared memory"
    assert len(net.sent) == len(shm.sent) and all(net.sent)
    for name in MIXED:
        np.testing.assert_array_equal(via_shm[name], via_net[name], err_msg=name)
    assert_same(via_shm.factors, evaluate(MIXED, small_panel))

    made = shared_output.create(["a", "b"], 4, 3)
    assert made is not None
    spec, arrays = made
    spec.unlink()  # as seen from another host: the file does not exist there
    assert not spec.write(0, 2, {"a": np.ones((2, 3)), "b": np.ones((2, 3))})
    assert arrays["a"].shape == (4, 3)


def test_shared_output_rows_land_in_the_client_arrays(tmp_path):
    from engine import shared_output

    spec, arrays = shared_output.create(["x", "y"], 5, 2, directory=tmp_path)
    assert spec.write(1, 3, {"x": np.full((2, 2), 7.0), "y": np.arange(4.0).reshape(2, 2)})
    np.testing.assert_array_equal(arrays["x"][1:3], 7.0)
    np.testing.assert_array_equal(arrays["y"][1:3], [[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(arrays["x"][0], 0.0)
    spec.unlink()
    np.testing.assert_array_equal(arrays["x"][1:3], 7.0)  # the mapping outlives the file
    assert shared_output.create(["x"], 5, 2, directory=tmp_path / "missing") is None


def _mappings_of(path: str) -> int:
    with open("/proc/self/maps") as fh:
        return sum(path in line for line in fh)


def _open_fds_to(path: str) -> int:
    fds = os.listdir("/proc/self/fd")
    return sum(os.path.realpath(f"/proc/self/fd/{fd}").startswith(path) for fd in fds)


def test_a_process_maps_the_result_files_once_without_keeping_a_descriptor(tmp_path):
    """Views of a result file share one mapping per process (the client's arrays included),
    hold no file descriptor (a Python mmap would keep one per mapping), outlive the file's
    removal, and the mapping goes when the last view does."""
    import gc

    from engine import shared_output

    spec, arrays = shared_output.create(["x", "y"], 6, 3, directory=tmp_path)
    x_file, y_file = spec.paths  # one output per file here
    assert _open_fds_to(str(tmp_path)) == 0
    spec.write(0, 6, {"x": np.arange(18.0).reshape(6, 3), "y": np.ones((6, 3))})
    first = spec.mapped()["x"][2:4]
    second = spec.mapped()["y"]
    assert np.shares_memory(first, arrays["x"])  # the client's mapping, shared
    del arrays
    gc.collect()
    assert not first.flags.writeable
    with pytest.raises(ValueError):
        first.flags.writeable = True  # a store would crash the process
    np.testing.assert_array_equal(first, [[6.0, 7.0, 8.0], [9.0, 10.0, 11.0]])
    assert _mappings_of(x_file) == 1 and _mappings_of(y_file) == 1
    assert _open_fds_to(str(tmp_path)) == 0
    spec.unlink()
    np.testing.assert_array_equal(second, 1.0)
    del first
    gc.collect()
    assert _mappings_of(x_file) == 0 and _mappings_of(y_file) == 1  # `second` holds y's
    del second
    gc.collect()
    assert _mappings_of(y_file) == 0
    assert spec.mapped() is None  # removed: nothing to map


def test_result_files_split_the_outputs_and_every_block_lands_in_place(tmp_path, monkeypatch):
    """Outputs are cut into consecutive groups of almost equal size, one file each; blocks
    written in any order (each starting at another file) land in the client's arrays."""
    from engine import shared_output

    monkeypatch.setattr(shared_output, "SHARDS", 3)
    names = [f"f{i}" for i in range(7)]
    spec, arrays = shared_output.create(names, 12, 2, directory=tmp_path)
    assert len(spec.paths) == 3
    assert [spec.file_bytes(k) // (12 * 2 * 8) for k in range(3)] == [3, 2, 2]
    assert [spec.file_of(i) for i in range(7)] == [0, 0, 0, 1, 1, 2, 2]
    rng = np.random.default_rng(0)
    expected = {name: rng.normal(size=(12, 2)) for name in names}
    for b0 in (8, 0, 4):
        assert spec.write(b0, b0 + 4, {k: v[b0 : b0 + 4] for k, v in expected.items()})
    for name in names:
        np.testing.assert_array_equal(arrays[name], expected[name], err_msg=name)
    spec.unlink()
    assert not list(tmp_path.iterdir())
    assert len(shared_output.create(["a"], 3, 2, directory=tmp_path)[0].paths) == 1


def test_a_thread_reading_a_mapped_view_at_interpreter_exit_does_not_crash(tmp_path):
    """Dask's task threads are daemons: one may still read a cached view of the result file
    while the worker process exits, so the mapping must not be unmapped at exit."""
    import subprocess
    import sys

    script = f"""
import threading, time
import numpy as np
from pathlib import Path
from engine import shared_output
spec, arrays = shared_output.create(["f"], 4096, 64, directory=Path({str(tmp_path)!r}))
del arrays
spec.write(0, 4096, {{"f": np.ones((4096, 64))}})
view = spec.mapped()["f"]
spec.unlink()
def read():
    while True:
        view.sum()
threading.Thread(target=read, daemon=True).start()
time.sleep(0.2)
print("exiting", flush=True)
"""
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert done.returncode == 0 and "exiting" in done.stdout, done


def test_memory_cache_holds_outputs_as_views_of_the_result_file(small_panel, tmp_path, monkeypatch):
    """After a block writes its outputs into the shared result file, the memory cache holds
    them as views of the file's pages (the private arrays are freed), charged once for the
    file in whole pages; a later run of the block hits them with the same values; a cache
    under twice the file's size, or a file under ``MIN_SHARED_FILE``, keeps private arrays."""
    import mmap

    from engine import execute, shared_output
    from engine.cache import process_l1
    from engine.execute import BlockData, CacheConfig, row_digests, run_block

    monkeypatch.setattr(execute, "MIN_SHARED_FILE", 0)  # the test panel's file is small

    factors = {"mom": "close / delay(close, 20) - 1", "m": "ts_mean(volume, 5)", "r": "rank(open)"}
    p = plan(factors, small_panel, block_rows=40)
    t, n = small_panel.shape
    data = BlockData(0, {f: small_panel[f] for f in p.fields}, {}, n)
    digests = row_digests(small_panel, p.fields)
    lru = process_l1(64 << 20)
    lru.clear()
    cache = CacheConfig(namespace=f"shm-l1-{time.time_ns()}", run="first", l1_bytes=64 << 20)
    spec, arrays = shared_output.create(list(p.outputs), t, n, directory=tmp_path)
    b0, b1 = p.blocks[1]
    first = run_block(p, data, b0, b1, digests, cache, shared=spec)
    assert first.values is None and first.stats.stored >= len(factors)
    spec.unlink()
    shared_keys = set(lru._backing)
    assert len(shared_keys) == len(factors)
    assert set(lru._users) == {f"file:{path}" for path in spec.paths}
    sizes = [spec.file_bytes(k) for k in range(len(spec.paths))]
    pages = sum(-(-size // mmap.PAGESIZE) * mmap.PAGESIZE for size in sizes)
    assert pages > spec.nbytes  # the rounding to whole pages is tested
    assert lru.nbytes == pages + sum(
        size for k, (_, _, size, _) in lru._data.items() if k not in lru._users
    )
    views = list(spec.mapped().values())
    for k in shared_keys:
        assert any(np.shares_memory(lru._data[k][0], v) for v in views)
    again = run_block(p, data, b0, b1, digests, dataclasses_replace(cache, run="second"))
    assert again.stats.l1_hits == len(factors) and again.computed == 0
    expected = evaluate(factors, small_panel)
    for name in factors:
        np.testing.assert_array_equal(again.values[name], arrays[name][b0:b1], err_msg=name)
        assert_same({name: again.values[name]}, {name: expected[name][b0:b1]})

    for label, l1_bytes, min_file in (
        ("tight", 2 * min(sizes) - 8, 0),  # a file would take over half the cache
        ("small file", 64 << 20, spec.nbytes + 1),
    ):
        lru.clear()
        monkeypatch.setattr(execute, "MIN_SHARED_FILE", min_file)
        other = dataclasses_replace(cache, l1_bytes=l1_bytes, run=label)
        spec2, _ = shared_output.create(list(p.outputs), t, n, directory=tmp_path)
        run_block(p, data, b0, b1, digests, other, shared=spec2)
        spec2.unlink()
        assert len(lru) > 0 and not lru._users and not lru._backing, label
    lru.clear()


def test_memory_cache_smaller_than_a_run_still_hits_on_the_next_run(dask_client, small_panel):
    """L1 far smaller than what one run caches: every later run still hits it (plain LRU,
    filled in block order and read in block order, can give none), and equals evaluate."""
    from cluster.config import load_settings

    def one_run():
        settings = load_settings(
            env={}, l1_cache_bytes=64 << 10, cache_namespace="l1-scan", progress=False
        )
        return compute(
            MIXED, small_panel, client=dask_client, block_rows=8, settings=settings, redis_url=""
        )

    first, second, third = one_run(), one_run(), one_run()
    assert first.stats.l1_hits == 0 and first.stats.stored > 0
    # every repeat hits part of it (plain LRU measured 28 then 0 hits here: each run's
    # misses evicted the entries the next blocks were about to read)
    for again in (second, third):
        assert 0 < again.stats.l1_hits < first.stats.stored
    assert_same(third.factors, evaluate(MIXED, small_panel))


def dataclasses_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_a_block_cut_by_start_row_is_not_cached_as_its_whole_grid_block(small_panel):
    """A run starting mid-way through a grid block (a nightly run of one date) computes part
    of that block: storing it under the whole block's key gave a later full-block run a
    too-short entry (an empty factor in the store). Neither stored nor looked up, and a
    wrong-shaped entry found under a key is a miss."""
    from engine.cache import process_l1
    from engine.execute import BlockData, CacheConfig, row_digests, run_block

    factors = {"mom": "close / delay(close, 20) - 1", "m": "ts_mean(volume, 5)"}
    p = plan(factors, small_panel, block_rows=40)
    t, n = small_panel.shape
    data = BlockData(0, {f: small_panel[f] for f in p.fields}, {}, n)
    digests = row_digests(small_panel, p.fields)
    cache = CacheConfig(namespace=f"cut-{time.time_ns()}", run="nightly", l1_bytes=64 << 20)
    part = run_block(p, data, 78, 80, digests, cache)  # the last 2 rows of grid block [40, 80)
    assert part.stats.stored == 0 and part.stats.l1_hits == 0
    full = run_block(p, data, 40, 80, digests, dataclasses_replace(cache, run="backfill"))
    assert full.computed > 0 and full.stats.l1_hits == 0 and full.stats.stored == len(factors)
    expected = evaluate(factors, small_panel)
    for name in factors:
        assert_same({name: full.values[name]}, {name: expected[name][40:80]})
        np.testing.assert_array_equal(part.values[name], full.values[name][38:], err_msg=name)
    # an entry of the wrong shape under the block's key (older code, a foreign writer): a miss
    lru = process_l1(cache.l1_bytes)
    for k in [k for k in lru._data if k.startswith(cache.namespace)]:
        lru.put(k, np.zeros((2, n)), 0.0)
    again = run_block(p, data, 40, 80, digests, dataclasses_replace(cache, run="again"))
    assert again.stats.l1_hits == 0 and again.stats.rejected == len(factors)
    assert again.computed == full.computed
    for name in factors:
        np.testing.assert_array_equal(again.values[name], full.values[name], err_msg=name)


def test_chunked_block_data_reads_only_the_rows_asked_for():
    """A task's input chunks read as one: rows inside one chunk are a view of it, rows across
    chunks a copy of just those rows; unknown fields and rows outside the chunks are errors."""
    from engine.errors import PlanError
    from engine.execute import BlockData

    full = np.arange(60.0).reshape(20, 3)
    groups = np.arange(20 * 3).reshape(20, 3) % 4
    parts = [
        BlockData(r, {"close": full[r : r + 5]}, {"industry": groups[r : r + 5]}, 3)
        for r in (10, 0, 15, 5)  # any order
    ]
    data = BlockData.concat(parts)
    inside = data.field("close", 6, 9)
    assert np.shares_memory(inside, parts[3].fields["close"])
    np.testing.assert_array_equal(inside, full[6:9])
    np.testing.assert_array_equal(data.field("close", 3, 17), full[3:17])
    np.testing.assert_array_equal(data.group("industry", 4, 11), groups[4:11])
    with pytest.raises(PlanError, match="unknown field 'open'"):
        data.field("open", 0, 5)
    with pytest.raises(PlanError, match="rows 15..25"):
        data.field("close", 15, 25)
    assert BlockData.concat(parts[:1]) is parts[0]


def test_peak_live_rows_counts_siblings_from_when_they_are_made(small_panel):
    """Two quantiles of one window are made in one pass, with the first: the second is live
    (and counted) while other factors run, until its own factor uses it."""
    factors = {
        "hi": "ts_quantile(close, 5, 0.8)",
        "spread": "ts_mean(close, 5) + ts_std(close, 5)",
        "lo": "ts_quantile(close, 5, 0.2) / close",
    }
    p = plan(factors, small_panel)
    t = small_panel.shape[0]
    assert len(p.siblings) == 2
    # while `spread` is added: close, the 0.2 quantile, the mean, the std and their sum
    assert p.peak_live_rows(t) == 5 * t
    p.siblings = {}
    assert p.peak_live_rows(t) == 4 * t  # the 0.2 quantile only made when `lo` needs it


def test_a_missing_field_fails_before_the_cluster_sees_the_run(dask_client, small_panel):
    """The panel's fields are checked before the plan is broadcast: a bad call sends
    nothing to the workers."""
    from engine.errors import PlanError

    def plans_seen() -> set[str]:
        logs = dask_client.run(lambda dask_worker: [str(r[0]) for r in dask_worker.state.log])
        return {key for log in logs.values() for key in log if key.startswith("Plan-")}

    compute({"x": "rank(close)"}, small_panel, dask_client, progress=False)
    seen = plans_seen()
    assert seen  # a good call's plan shows in the workers' logs under this name
    with pytest.raises(PlanError, match="lacks field.*'pe' \\(needed by x\\)"):
        compute({"x": "rank($pe)"}, small_panel, dask_client, progress=False)
    time.sleep(0.5)  # time for a stray broadcast to arrive
    assert plans_seen() == seen


def test_a_cache_hit_releases_the_inputs_it_did_not_need(small_panel, monkeypatch):
    """An intermediate two outputs use is freed once both are made, also when the second is
    read from the memory cache instead of computed from it (it was held to the block's end)."""
    import weakref

    from engine.cache import process_l1
    from engine.execute import BlockData, CacheConfig, row_digests, run_block
    from engine.kernels import KERNELS

    factors = {
        "a": "ts_mean(close, 5) * 2",
        "b": "ts_mean(close, 5) + 1",
        "c": "ts_std(close, 5)",
    }
    t, n = small_panel.shape
    p = plan(factors, small_panel, block_rows=t)  # one block: the cache's whole grid block
    assert list(p.outputs) == ["a", "b", "c"]  # the order a block makes them in
    data = BlockData(0, {f: small_panel[f] for f in p.fields}, {}, n)
    digests = row_digests(small_panel, p.fields)
    cache = CacheConfig(namespace=f"release-{time.time_ns()}", run="one", l1_bytes=64 << 20)
    first = run_block(p, data, 0, t, digests, cache)  # stores a, b and c (not the mean)
    assert first.stats.stored == 3
    lru = process_l1(cache.l1_bytes)
    for k in [k for k in lru._data if f":{p.outputs['a']}:" in k]:
        lru._remove(k)  # a is computed again, b is a hit

    means: list[weakref.ref] = []
    mean_alive_at_c: list[bool] = []
    ts_mean, ts_std = KERNELS["ts_mean"], KERNELS["ts_std"]

    def recording_mean(*args, **kwargs):
        out = ts_mean(*args, **kwargs)
        means.append(weakref.ref(out))
        return out

    def checking_std(*args, **kwargs):
        mean_alive_at_c.extend(ref() is not None for ref in means)
        return ts_std(*args, **kwargs)

    monkeypatch.setitem(KERNELS, "ts_mean", recording_mean)
    monkeypatch.setitem(KERNELS, "ts_std", checking_std)
    # c is computed too (its entry goes), after b's hit
    for k in [k for k in lru._data if f":{p.outputs['c']}:" in k]:
        lru._remove(k)
    again = run_block(p, data, 0, t, digests, dataclasses_replace(cache, run="two"))
    assert again.stats.l1_hits == 1 and again.computed == 3  # the mean, a and c
    assert means and mean_alive_at_c and not any(mean_alive_at_c)
    expected = evaluate(factors, small_panel)
    assert_same(again.values, expected)
