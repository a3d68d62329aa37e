"""The cache: wire format, L1 bounds, and L2 behaviour against a real Redis."""

from __future__ import annotations

import pickle
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import redis

from engine import compute, evaluate
from engine.cache import MAGIC, CacheError, MemoryLRU, decode, encode
from engine.sources import synthetic

FACTORS = {
    "a": "rank(ts_mean(close, 5)) - rank(volume)",
    "b": "ts_corr(close, volume, 8)",
    "c": "IndNeutralize(delta(close, 3), IndClass.industry)",
}


@pytest.fixture(scope="module")
def panel():
    return synthetic(n_symbols=20, n_dates=90, seed=5)


def test_roundtrip_keeps_bits_and_compute_time():
    a = np.random.default_rng(0).normal(size=(7, 5))
    a[2, 3] = np.nan
    a[0, 0] = -0.0
    for compress in (True, False):
        back, seconds = decode(encode(a, 1.25, compress=compress))
        assert back.tobytes() == a.tobytes()
        assert seconds == 1.25


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"", "too short"),
        (pickle.dumps(np.zeros((2, 2))), "bad magic"),
        (MAGIC + b"\xff\xff\x00\x00" + b"{}", "bad header length"),
        (MAGIC + (2).to_bytes(4, "little") + b"{]", "unreadable header"),
    ],
)
def test_decode_rejects_what_it_did_not_write(blob, message):
    with pytest.raises(CacheError, match=message):
        decode(blob)


def test_decode_rejects_corrupt_payload():
    blob = bytearray(encode(np.arange(12.0).reshape(3, 4), compress=False))
    blob[-3] ^= 0xFF
    with pytest.raises(CacheError, match="checksum"):
        decode(bytes(blob))


def test_lru_is_bounded_in_bytes_and_evicts_oldest():
    lru = MemoryLRU(max_bytes=3 * 800)
    for i in range(5):
        lru.put(f"k{i}", np.full((10, 10), float(i)), 0.0)  # 800 bytes each
    assert lru.nbytes <= 3 * 800 and len(lru) == 3
    assert lru.get("k0") is None and lru.get("k4") is not None
    hit, _ = lru.get("k3")
    assert not hit.flags.writeable


def test_lru_keeps_a_runs_own_entries_so_a_too_long_scan_still_hits_next_time():
    """A run that stores more than the cache holds keeps its first cache-full (plain LRU would
    keep its last, which the next run in the same order evicts before reaching them, so no
    run would ever hit); every repeat hits those; views of a larger buffer count the whole
    buffer."""
    block = np.zeros((10, 10))  # 800 bytes
    lru = MemoryLRU(max_bytes=3 * 800)
    for i in range(6):
        lru.put(f"k{i}", block + i, 0.0, run="r1")
    assert [k for k in ("k0", "k1", "k2", "k3", "k4", "k5") if lru.get(k)] == ["k0", "k1", "k2"]
    assert lru.refused == 3 and lru.nbytes == 3 * 800
    # every repeat in the same order hits k0..k2 (a hit makes the entry the new run's own)
    # and does not admit k3..k5
    for run in ("r2", "r3"):
        hits = 0
        for i in range(6):
            if lru.get(f"k{i}", run) is not None:
                hits += 1
            else:
                lru.put(f"k{i}", block + i, 0.0, run=run)
        assert hits == 3 and len(lru) == 3 and lru.nbytes <= 3 * 800
    # a run with other keys (new data) replaces entries no run has used since
    for i in range(3):
        lru.put(f"n{i}", block + i, 0.0, run="r4")
    assert all(lru.get(f"n{i}") is not None for i in range(3)) and lru.get("k0") is None
    # entries without a run are evicted as in a plain LRU
    plain = MemoryLRU(max_bytes=2 * 800)
    for i in range(4):
        plain.put(f"p{i}", block + i, 0.0)
    assert plain.get("p0") is None and plain.get("p3") is not None
    # a view is kept without a copy and counts the buffer it keeps alive, unless that buffer
    # is more than twice its size
    base = np.zeros((20, 10))  # 1600 bytes
    big = MemoryLRU(max_bytes=10_000)
    big.put("v", base[10:], 0.0, run="r")
    assert big.nbytes == 1600 and np.shares_memory(big.get("v")[0], base)
    big.put("w", base[15:], 0.0, run="r")
    assert big.nbytes == 1600 + 400 and not np.shares_memory(big.get("w")[0], base)


def _consistent(lru: MemoryLRU) -> None:
    """The byte accounts match the entries: total and per run, a shared buffer once."""
    per_run: dict[str, int] = {}
    for _, _, size, run in lru._data.values():
        per_run[run] = per_run.get(run, 0) + size
    assert lru.nbytes == sum(per_run.values()) <= lru.max_bytes
    assert {r: b for r, b in per_run.items() if b} == lru._own
    assert all(lru._backing[u] == b for b, users in lru._users.items() for u in users)


def test_lru_shared_buffer_is_charged_once_and_lives_while_its_entries_do():
    """Entries moved onto one shared buffer (a run's result file) release their own arrays,
    charge the buffer once to the run, and take it with them when the last goes; evicting
    the buffer evicts its entries; a buffer over half the cache is refused."""
    file = np.arange(2 * 20 * 10, dtype=np.float64).reshape(2, 20, 10)  # 3200 bytes
    lru = MemoryLRU(max_bytes=8000)
    for i in range(2):
        lru.put(f"a{i}", file[i, :10].copy(), 1.0 + i, run="r1")  # 800 bytes each
    lru.put("other", np.ones((10, 10)), 0.0, run="r0")
    assert lru.nbytes == 2400
    assert lru.share("a0", file[0, :10], "file:x", file.nbytes, run="r1")
    assert lru.share("a1", file[1, :10], "file:x", file.nbytes, run="r1")
    assert lru.nbytes == 3200 + 800 and len(lru) == 3
    _consistent(lru)
    values, seconds = lru.get("a1", "r1")
    assert np.shares_memory(values, file) and seconds == 2.0 and not values.flags.writeable
    assert lru.get("file:x") is None  # the buffer is no entry of its own
    # nothing to share: a missing key, another shape, a buffer over half the cache
    assert not lru.share("missing", file[0, :10], "file:x", file.nbytes)
    assert not lru.share("other", file[0, :5], "file:x", file.nbytes)
    assert not lru.share("other", file[0, :10], "file:big", 5000)
    assert not lru.share("other", file[0, :10], "a0", 3200)  # a plain entry's name
    assert lru.nbytes == 4000
    # the shared buffer goes with its last entry
    lru.put("a0", np.zeros((10, 10)), 0.0, run="r1")  # replaced by a private array
    assert lru.nbytes == 3200 + 800 + 800
    lru.put("a1", np.zeros((10, 10)), 0.0, run="r1")
    assert lru.nbytes == 3 * 800 and not lru._users and not lru._backing
    _consistent(lru)
    # evicting the buffer (least recently used) evicts its entries with it
    small = MemoryLRU(max_bytes=6400)
    small.put("s", file[0, :10].copy(), 0.0, run="r1")
    assert small.share("s", file[0, :10], "file:x", file.nbytes, run="r1")
    small.put("new", np.ones((20, 10)), 0.0, run="r2")
    small.put("newer", np.ones((20, 10)), 0.0, run="r2")  # 3200 + 2 x 1600 fits exactly
    assert small.get("s") is not None
    small.put("newest", np.ones((20, 10)), 0.0, run="r2")
    assert small.get("s") is None and small.nbytes == 3 * 1600 and not small._users
    _consistent(small)
    # a run's own shared buffer is not evicted for it: its next entries are refused instead
    own = MemoryLRU(max_bytes=6400)
    own.put("s", file[0, :10].copy(), 0.0, run="r1")
    assert own.share("s", file[0, :10], "file:x", file.nbytes, run="r1")
    for k in ("t", "u", "v"):
        own.put(k, np.ones((20, 10)), 0.0, run="r1")
    assert own.refused == 1 and own.get("s") is not None and own.get("v") is None
    _consistent(own)


def test_lru_eviction_keeps_accounts_consistent_with_shared_buffers():
    """A random mix of puts, shares, hits and evictions over several runs never loses track
    of a byte and never holds more than its bound."""
    rng = np.random.default_rng(3)
    files = {f"file:{i}": np.zeros((4, 10, 10)) for i in range(3)}  # 3200 bytes each
    lru = MemoryLRU(max_bytes=9000)
    for step in range(2000):
        run = f"r{rng.integers(3)}"
        key = f"k{rng.integers(12)}"
        action = rng.integers(3)
        if action == 0:
            lru.put(key, np.ones((rng.integers(1, 10), 10)), 0.0, run=run)
        elif action == 1:
            name = f"file:{rng.integers(3)}"
            hit = lru.get(key)
            if hit is not None and hit[0].shape[0] <= 10:
                rows = hit[0].shape[0]
                lru.share(key, files[name][rng.integers(4), :rows], name, 3200, run=run)
        else:
            lru.get(key, run)
        _consistent(lru)
        for b, users in lru._users.items():
            assert users, f"step {step}: shared buffer {b} kept without entries"


def _fresh_cluster():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    return Client(cluster), cluster


def test_second_run_by_new_client_hits_l2_for_every_block(redis_url, redis_namespace, panel):
    from cluster.config import load_settings

    settings = load_settings(cache_namespace=redis_namespace, redis_url=redis_url)
    expected = evaluate(FACTORS, panel)
    client, cluster = _fresh_cluster()
    with client, cluster:
        first = compute(FACTORS, panel, client, block_rows=15, settings=settings, progress=False)
    assert first.stats.l2_hits == 0 and first.stats.stored > 0
    client, cluster = _fresh_cluster()  # new worker processes: empty L1
    with client, cluster:
        second = compute(FACTORS, panel, client, block_rows=15, settings=settings, progress=False)
    n_blocks = len(second.plan.blocks)
    assert second.stats.l2_hits == n_blocks * len(FACTORS)
    assert second.stats.misses == 0 and second.computed_nodes == 0
    assert second.stats.l2_saved_s > 0
    for name in FACTORS:
        np.testing.assert_array_equal(second[name], first[name])
        np.testing.assert_allclose(second[name], expected[name], rtol=1e-12, equal_nan=True)


def test_a_runs_redis_writes_stay_within_its_byte_budget(redis_url, redis_namespace, panel):
    """redis_max_bytes_per_run: each block writes at most its share; what did not fit is
    counted, the Redis keys hold no more than the budget, and the run's values are unchanged."""
    from cluster.config import load_settings

    r = redis.Redis.from_url(redis_url)
    unlimited = load_settings(
        cache_namespace=redis_namespace + "-free", redis_url=redis_url, redis_max_bytes_per_run=0
    )
    client, cluster = _fresh_cluster()
    with client, cluster:
        free = compute(FACTORS, panel, client, block_rows=15, settings=unlimited, progress=False)
    for key in r.scan_iter(match=f"{redis_namespace}-free:*"):
        r.delete(key)
    full = free.stats.l2_stored_bytes
    assert full > 0 and free.stats.l2_over_budget == 0
    budget = full // 3
    settings = load_settings(
        cache_namespace=redis_namespace, redis_url=redis_url, redis_max_bytes_per_run=budget
    )
    client, cluster = _fresh_cluster()
    with client, cluster:
        run = compute(FACTORS, panel, client, block_rows=15, settings=settings, progress=False)
    assert 0 < run.stats.l2_stored_bytes <= budget
    assert run.stats.l2_over_budget > 0 and "not sent to L2" in run.stats.summary()
    in_redis = sum(r.strlen(k) for k in r.scan_iter(match=f"{redis_namespace}:*"))
    assert in_redis == run.stats.l2_stored_bytes
    for name in FACTORS:
        np.testing.assert_array_equal(run[name], free[name])


def test_changing_one_factor_recomputes_only_its_nodes(redis_url, redis_namespace, panel):
    from cluster.config import load_settings

    settings = load_settings(
        cache_namespace=redis_namespace, redis_url=redis_url, cache_nodes="all"
    )
    client, cluster = _fresh_cluster()
    with client, cluster:
        compute(FACTORS, panel, client, block_rows=15, settings=settings, progress=False)
        changed = dict(FACTORS, b="ts_corr(close, volume, 8) * 2")  # one new node: mul
        again = compute(changed, panel, client, block_rows=15, settings=settings, progress=False)
    n_blocks = len(again.plan.blocks)
    assert again.computed_nodes == n_blocks  # the new mul node, once per block
    expected = evaluate(changed, panel)
    np.testing.assert_allclose(again["b"], expected["b"], rtol=1e-12, equal_nan=True)


def test_sibling_quantiles_share_a_pass_and_a_changed_one_recomputes_alone(
    redis_url, redis_namespace, panel
):
    """QTLU/QTLD-style siblings (one ts_quantile pass, engine.kernels.MULTI) give evaluate's
    values; changing one of them recomputes only its own nodes: its unchanged sibling is read
    from the cache, not recomputed with it."""
    from cluster.config import load_settings
    from engine import plan

    factors = {
        "hi": "ts_quantile(close, 5, 0.8) / close",
        "lo": "ts_quantile(close, 5, 0.2) / close",
        "mid": "ts_quantile(close, 10, 0.5)",
    }
    p = plan(factors, panel)
    (group,) = set(p.siblings.values())  # window 10 has one quantile: no group
    assert sorted(p.nodes[k].expr.param_dict["q"] for k in group) == [0.2, 0.8]
    assert "computed together: 2 nodes in 1 groups" in p.explain()
    settings = load_settings(
        cache_namespace=redis_namespace, redis_url=redis_url, cache_nodes="all"
    )
    client, cluster = _fresh_cluster()
    with client, cluster:
        first = compute(factors, panel, client, block_rows=15, settings=settings, progress=False)
        changed = dict(factors, hi="ts_quantile(close, 5, 0.9) / close")
        again = compute(changed, panel, client, block_rows=15, settings=settings, progress=False)
    n_blocks = len(first.plan.blocks)
    quantiles = sum(n.label == "ts_quantile" for n in first.plan.nodes.values())
    assert first.computed_nodes == n_blocks * (quantiles + 2)  # + the two divisions
    hi_q, lo_q = (first.node_seconds[k] for k in group)
    assert hi_q == lo_q > 0  # one pass per block, its time split between the two
    assert again.computed_nodes == 2 * n_blocks  # ts_quantile(.., 0.9) and its division
    for result, factors_run in ((first, factors), (again, changed)):
        expected = evaluate(factors_run, panel)
        for name in factors_run:
            np.testing.assert_array_equal(result[name], expected[name], err_msg=name)


def test_planted_pickle_is_rejected_and_never_unpickled(
    redis_url, redis_namespace, panel, tmp_path
):
    from cluster.config import load_settings

    settings = load_settings(cache_namespace=redis_namespace, redis_url=redis_url)
    marker = tmp_path / "unpickled"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    client, cluster = _fresh_cluster()
    with client, cluster:
        compute(FACTORS, panel, client, block_rows=15, settings=settings, progress=False)
    r = redis.Redis.from_url(redis_url)
    keys = sorted(k.decode() for k in r.scan_iter(f"{redis_namespace}:*"))
    assert keys, "the first run stored nothing in Redis"
    r.set(keys[0], pickle.dumps(Exploit()))
    good = encode(np.zeros((3, 3)))
    r.set(keys[1], good[:4] + b"\x10\x00\x00\x00" + good[8:])  # corrupt header length
    client, cluster = _fresh_cluster()
    with client, cluster, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = compute(FACTORS, panel, client, block_rows=15, settings=settings, progress=False)
    assert again.stats.rejected == 2
    assert any("rejected cached value" in str(w.message) for w in caught)
    assert not marker.exists()
    expected = evaluate(FACTORS, panel)
    for name in FACTORS:
        np.testing.assert_allclose(again[name], expected[name], rtol=1e-12, equal_nan=True)
    r.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_killed_mid_run_finishes_on_l1_with_a_warning(tmp_path, panel):
    from cluster.config import load_settings

    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (scripts/test installs it)"
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    settings = load_settings(redis_url=url, redis_timeout_seconds=0.5)

    class KillRedisAfterFirstBlock:
        def on_plan(self, plan):
            pass

        def on_block(self, result, done, total):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

        def on_finish(self, result):
            pass

    many = {f"f{i}": f"ts_rank(ts_corr(close, volume, {4 + i}), 9)" for i in range(8)}
    client, cluster = _fresh_cluster()
    try:
        with client, cluster, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = compute(
                many,
                panel,
                client,
                block_rows=5,
                settings=settings,
                hooks=[KillRedisAfterFirstBlock()],
                progress=False,
            )
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result.stats.l2_errors > 0
    assert any("Redis cache unavailable" in str(w.message) for w in caught)
    expected = evaluate(many, panel)
    for name in many:
        np.testing.assert_allclose(result[name], expected[name], rtol=1e-12, equal_nan=True)


def test_keys_depend_on_the_universe_even_for_constant_nodes(redis_url, redis_namespace, panel):
    """Two panels with different symbols never share a cached value, even for a node that
    reads no field (regression: a constant expression's block came back with the other
    panel's width)."""
    from cluster.config import load_settings

    settings = load_settings(
        cache_namespace=redis_namespace, redis_url=redis_url, cache_nodes="all"
    )
    factors = {"k": "close * 0 + (abs(-2) + 1)", "c": "where(close > 0, close, abs(-2))"}
    narrow = panel.sel(symbols=list(panel.symbols[:12]))
    client, cluster = _fresh_cluster()
    with client, cluster:
        compute(factors, panel, client, block_rows=15, settings=settings, progress=False)
        again = compute(factors, narrow, client, block_rows=15, settings=settings, progress=False)
    expected = evaluate(factors, narrow)
    for name in factors:
        assert again[name].shape == narrow.shape
        np.testing.assert_array_equal(again[name], expected[name])
