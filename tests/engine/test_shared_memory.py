"""The panel and the results cross shared-memory files on one host: what workers read and
write there equals the network path, files never outlive a run, and failures fall back."""

from __future__ import annotations

import operator
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from engine import compute, evaluate, plan
from engine.execute import BlockData, CacheConfig, run_block

FACTORS = {
    "mom": "close / delay(close, 20) - 1",
    "g": "IndNeutralize(ts_rank(close, 10), IndClass.industry)",
    "m": "ts_mean(volume, 5)",
    "r": "rank(open)",
    "c": "correlation(close, volume, 9)",
    "d": "decay_linear(rank(volume), 8)",
}


def _shm_files() -> set[Path]:
    """This process's input and result files in /dev/shm (others may run alphaforge too)."""
    pid = os.getpid()
    return {
        *Path("/dev/shm").glob(f"alphaforge-in-{pid}-*"),
        *Path("/dev/shm").glob(f"alphaforge-{pid}-*"),
    }


def _mappings_of(path: str) -> int:
    with open("/proc/self/maps") as fh:
        return sum(path in line for line in fh)


def test_shared_input_round_trips_fields_and_groups_copy_on_write(tmp_path):
    """Fields (float64) and group codes (int64) read back exactly; the arrays are writable
    (numba sees the types it compiled for) but a store changes neither the file nor a fresh
    mapping of it; nothing is created where there is no room or no directory."""
    import gc

    from engine import shared_input

    rng = np.random.default_rng(3)
    close, volume = rng.normal(size=(7, 4)), rng.normal(size=(7, 4))
    industry = rng.integers(0, 5, size=(7, 4))
    spec = shared_input.create({"close": close, "volume": volume}, {"ind": industry}, tmp_path)
    assert spec is not None and spec.nbytes == 3 * 7 * 4 * 8
    fields, groups = spec.arrays()
    np.testing.assert_array_equal(fields["close"], close)
    np.testing.assert_array_equal(fields["volume"], volume)
    assert groups["ind"].dtype == np.int64
    np.testing.assert_array_equal(groups["ind"], industry)
    assert fields["close"].flags.writeable
    fields["close"][0, 0] = 1e9  # copy-on-write: this process's page only
    on_disk = np.fromfile(spec.path, dtype=np.float64, count=7 * 4).reshape(7, 4)
    np.testing.assert_array_equal(on_disk, close)
    del fields, groups
    gc.collect()
    np.testing.assert_array_equal(spec.arrays()[0]["close"], close)  # a new mapping
    spec.unlink()
    assert not list(tmp_path.iterdir())
    assert spec.arrays() is None
    assert shared_input.create({"close": close}, {}, tmp_path / "missing") is None
    assert shared_input.create({"close": close, "bad": close[:3]}, {}, tmp_path) is None
    assert not list(tmp_path.iterdir())


def test_compute_maps_the_panel_on_one_host_and_scatters_it_otherwise(
    dask_client, small_panel, monkeypatch
):
    """On one host the panel goes to the workers through a shared file (only the plan is
    scattered) and the file is gone after the run; when a worker cannot read the file the
    panel is scattered in chunks instead; both equal ``evaluate``."""
    from engine import execute

    scatters: list[int] = []
    real_scatter = dask_client.scatter

    def counting(data, *args, **kwargs):
        scatters.append(len(data))
        return real_scatter(data, *args, **kwargs)

    monkeypatch.setattr(dask_client, "scatter", counting)
    before = _shm_files()
    expected = evaluate(FACTORS, small_panel)
    mapped = compute(FACTORS, small_panel, dask_client, block_rows=16, progress=False)
    assert scatters == [1], "only the plan should be scattered"
    assert _shm_files() == before, "input or result files not removed"

    scatters.clear()
    monkeypatch.setattr(execute, "can_read", operator.not_)  # every worker says no
    scattered = compute(FACTORS, small_panel, dask_client, block_rows=16, progress=False)
    assert len(scatters) >= 2 and sum(scatters) > len(small_panel.dates) // 16
    assert _shm_files() == before, "unused input file (or result files) not removed"
    for name in FACTORS:
        np.testing.assert_array_equal(mapped[name], scattered[name], err_msg=name)
        np.testing.assert_allclose(
            mapped[name], expected[name], rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=name
        )


def test_a_block_that_cannot_write_every_output_sends_the_rest_back(
    small_panel, tmp_path, monkeypatch
):
    """Outputs are written one by one as they are computed; once a write fails (a full
    tmpfs, here a file of the wrong size), that output and every later one come back in the
    task's values, the earlier ones are in the files (and held by the memory cache as views),
    and together they equal ``evaluate``."""
    from engine import execute, shared_output
    from engine.cache import process_l1
    from engine.execute import row_digests

    monkeypatch.setattr(shared_output, "SHARDS", 3)
    monkeypatch.setattr(execute, "MIN_SHARED_FILE", 0)
    p = plan(FACTORS, small_panel, block_rows=40)
    t, n = small_panel.shape
    spec, arrays = shared_output.create(list(p.outputs), t, n, directory=tmp_path)
    b0, b1 = p.blocks[1]
    order = [spec.names[i] for i in spec.order(b0, b1)]
    assert order[0] == spec.names[spec._bounds(1)[0]]  # block 1 starts at file 1
    with open(spec.paths[2], "r+b") as fh:  # this file is no longer the run's
        fh.truncate(spec.file_bytes(2) + 8)
    lost = order.index(spec.names[spec._bounds(2)[0]])
    lru = process_l1(64 << 20)
    lru.clear()
    data = BlockData(0, {f: small_panel[f] for f in p.fields}, dict(small_panel.groups), n)
    cache = CacheConfig(namespace="shm-partial", run="partial", l1_bytes=64 << 20)
    res = run_block(p, data, b0, b1, row_digests(small_panel, p.fields), cache, shared=spec)
    assert set(res.values) == set(order[lost:])
    expected = evaluate(FACTORS, small_panel)
    for name in order[:lost]:
        np.testing.assert_allclose(arrays[name][b0:b1], expected[name][b0:b1], rtol=1e-12)
    for name in order[lost:]:
        np.testing.assert_allclose(res.values[name], expected[name][b0:b1], rtol=1e-12)
    views = list(spec.mapped().values())
    assert len(lru._backing) == lost  # the written outputs, as views of the files
    for k in lru._backing:
        assert any(np.shares_memory(lru._data[k][0], v) for v in views)
    assert not spec.write(b0, b1, res.values)  # the client cannot write them either
    spec.unlink()
    lru.clear()


def test_a_block_holds_one_output_at_a_time_when_it_writes_the_result_files(tmp_path):
    """Writing each output as soon as it is computed keeps a block's peak memory near one
    output's rows, where keeping them all for the end holds every output at once."""
    from engine import shared_output
    from engine.sources import synthetic

    panel = synthetic(n_symbols=400, n_dates=256, seed=5)
    factors = {f"m{w}": f"ts_mean(close, {w}) / close" for w in range(2, 18)}
    p = plan(factors, panel, block_rows=128)
    t, n = panel.shape
    data = BlockData(0, {f: panel[f] for f in p.fields}, {}, n)
    off = CacheConfig(enabled=False)
    b0, b1 = p.blocks[1]
    one_output = (b1 - b0) * n * 8
    run_block(p, data, b0, b1, {}, off)  # kernels loaded before anything is measured

    def peak(shared):
        tracemalloc.start()
        try:
            res = run_block(p, data, b0, b1, {}, off, shared=shared)
            return tracemalloc.get_traced_memory()[1], res
        finally:
            tracemalloc.stop()

    kept, res_kept = peak(None)
    spec, arrays = shared_output.create(list(p.outputs), t, n, directory=tmp_path)
    streamed, res_streamed = peak(spec)
    assert res_streamed.values is None and len(res_kept.values) == len(factors)
    for name in factors:
        np.testing.assert_array_equal(arrays[name][b0:b1], res_kept.values[name])
    assert kept - streamed > (len(factors) - 4) * one_output, (kept, streamed, one_output)
    spec.unlink()


def test_block_writer_refuses_after_its_first_failure(tmp_path):
    """A writer stops at its first failed write, so a block never leaves a later output in
    the file after an earlier one was sent back."""
    from engine import shared_output

    spec, arrays = shared_output.create(["a", "b", "c"], 4, 3, directory=tmp_path)
    assert len(spec.paths) == 3
    with spec.writer(0) as w:
        assert w.put(0, np.ones((2, 3)))
        Path(spec.paths[1]).unlink()  # as if the file vanished (or the tmpfs filled)
        assert not w.put(1, np.ones((2, 3)))
        assert not w.put(2, np.ones((2, 3)))  # its file is fine, but it comes too late
    np.testing.assert_array_equal(arrays["a"][:2], 1.0)
    np.testing.assert_array_equal(arrays["c"][:2], 0.0)
    spec.unlink()


def test_a_full_tmpfs_result_is_copied_out_without_reading_unwritten_rows():
    """When the shared files fill up, the client moves the result to private memory reading
    only the rows that were written: in a full tmpfs, reading a hole allocates a page and,
    failing that, kills the client with SIGBUS. (Here the tmpfs has room; the test checks
    that no page was added to the files, which reading a hole would do.)"""
    import os

    from engine import shared_output
    from engine.execute import BlockResult, CacheStats, _private_result

    t, n, names = 96, 64, ["a", "b", "c"]
    blocks = [(16, 48), (48, 80), (80, 96)]  # rows before 16: history, written by the client
    made = shared_output.create(names, t, n)  # /dev/shm: a tmpfs, where holes matter
    assert made is not None, "the shared-memory path needs /dev/shm (a tmpfs) with room"
    spec, arrays = made
    try:
        rng = np.random.default_rng(2)
        truth = {name: rng.normal(size=(t, n)) for name in names}
        assert spec.write(0, 16, {k: v[:16] for k, v in truth.items()})
        assert spec.write(16, 48, {k: v[16:48] for k, v in truth.items()})
        assert spec.write(48, 80, {"b": truth["b"][48:80]})  # a and c came back
        sent = [
            BlockResult(
                48, 80, {k: truth[k][48:80] for k in ("a", "c")}, CacheStats(), 0, 0.0, {}, []
            ),
            BlockResult(
                80, 96, {k: v[80:] for k, v in truth.items()}, CacheStats(), 0, 0.0, {}, []
            ),
        ]
        pages = sum(os.stat(p).st_blocks for p in spec.paths)
        private = _private_result(arrays, blocks, sent)
        assert sum(os.stat(p).st_blocks for p in spec.paths) == pages, "a hole was read"
        for name in names:
            np.testing.assert_array_equal(private[name], truth[name], err_msg=name)
            assert not np.shares_memory(private[name], arrays[name])
    finally:
        spec.unlink()


def test_an_interrupt_while_result_files_are_made_leaves_none_behind(tmp_path, monkeypatch):
    """Ctrl-C in a notebook while ``create`` makes the files (or maps them) goes on up, and
    removes the files made so far."""
    from engine import shared_output

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(shared_output.SharedOutput, "mapped", interrupted)
    with pytest.raises(KeyboardInterrupt):
        shared_output.create([f"f{i}" for i in range(5)], 8, 2, directory=tmp_path)
    assert not list(tmp_path.iterdir())


def test_an_interrupt_while_workers_check_the_input_file_removes_it(
    dask_client, small_panel, monkeypatch
):
    """Ctrl-C while compute asks the workers whether they can read the input file goes on
    up and leaves no file in /dev/shm."""
    before = _shm_files()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dask_client, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compute(FACTORS, small_panel, dask_client, block_rows=16, progress=False)
    assert _shm_files() == before


def test_a_block_lets_go_of_the_input_file_when_it_returns(small_panel):
    """Nothing of a finished block keeps the run's input mapping alive, even with the cyclic
    collector off: the file's pages are freed as soon as the run unlinks it."""
    import gc

    from engine import shared_input

    p = plan(FACTORS, small_panel, block_rows=40)
    fields = {f: small_panel[f] for f in p.fields if f not in small_panel.groups}
    spec = shared_input.create(fields, dict(small_panel.groups))
    assert spec is not None
    gc.collect()
    gc.disable()
    try:
        b0, b1 = p.blocks[1]
        res = run_block(p, spec, b0, b1, {}, CacheConfig(enabled=False))
        assert set(res.values) == set(FACTORS)
        assert _mappings_of(spec.path) == 0
    finally:
        gc.enable()
        spec.unlink()
