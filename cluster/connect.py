"""Getting a Dask client: an existing scheduler, the caller's default client, or a LocalCluster.

The embedded default is a ``distributed.LocalCluster`` of worker *processes* (numba kernels
hold the GIL only briefly, but separate processes keep one worker's crash from taking the
client down and match how a production cluster behaves).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping

import dask
from distributed import Client, LocalCluster

from cluster.config import Settings, load_settings

log = logging.getLogger(__name__)

_LOCAL: dict[str, Client] = {}

# glibc malloc settings for worker processes, read by glibc when the process starts. Dask sets
# MALLOC_TRIM_THRESHOLD_=65536 so freed memory returns to the OS; setting any such variable
# also freezes glibc's mmap threshold at 128 KiB, so every block-sized array (a few hundred
# KiB and up) is a fresh mmap, page-faulted in and zeroed by the kernel, and unmapped again
# when freed. Measured on Alpha158 over 2000 x 200 (8 blocks, 2 workers): ~500k minor page
# faults and ~1.2 s of system time per worker per run, block time 3x that of the same run
# with the settings below (~0 faults). Arrays up to 4 MiB now come from malloc's heap and are
# reused; larger ones (a full 5000-symbol panel's blocks are ~20 MiB) are still mapped and
# unmapped, so freed memory goes back to the OS and the worker's RSS, which Dask's memory
# monitor pauses the worker on, follows what is live (with a 32 MiB threshold, the full panel's
# run reached 6.7 GiB RSS on an 8 GiB worker, past Dask's 80% pause line, and stalled).
#
# MALLOC_TOP_PAD_: block tasks run in a worker thread, whose allocations come from one of
# glibc's per-thread arenas, built of 64 MiB heaps; glibc unmaps such a heap as soon as it is
# all free (whatever the trim threshold), so each task re-faulted the memory the one before it
# had used (Alpha158 2000 x 200 with caches off: ~57k page faults per worker per run). Keeping
# 64 MiB of padding keeps the heaps: 0-3k faults per run once the first run has grown them.
WORKER_MALLOC_ENV = {
    "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
    "MALLOC_MMAP_THRESHOLD_": str(4 << 20),
    "MALLOC_TOP_PAD_": str(64 << 20),
}


def worker_environ() -> dict[str, object]:
    """Dask's pre-spawn environment for worker processes with :data:`WORKER_MALLOC_ENV`."""
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    env.update(WORKER_MALLOC_ENV)
    return env


@contextlib.contextmanager
def spawning_with(
    env: Mapping[str, object], force: Iterable[str] = tuple(WORKER_MALLOC_ENV)
) -> Iterator[None]:
    """Nannies created inside spawn their workers with the pre-spawn environment ``env``, and
    with ``env``'s values for the ``force`` variables (glibc's: it reads them when the process
    starts) whatever this process's ``os.environ`` holds.

    Dask's nanny takes a variable from this process's ``os.environ`` over its
    ``pre-spawn-environ`` config, and leaves the values it spawned with in ``os.environ``: after
    any other LocalCluster in the same process (a notebook's, a test's), Dask's own
    ``MALLOC_TRIM_THRESHOLD_=65536`` would win over the config. So the ``force`` variables are
    set here for the nannies' start and restored after (a nanny keeps what it read for
    restarts); every other variable follows Dask's rules (the user's ``os.environ`` wins, a
    ``None`` value is not set)."""
    forced = {k: str(env[k]) for k in force if env.get(k) is not None}
    saved = {k: os.environ.get(k) for k in forced}
    os.environ.update(forced)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": dict(env)}):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def connect(address: str | None = None, settings: Settings | None = None) -> Client:
    """Return a client for ``address``; without one, reuse or start the embedded LocalCluster.

    Precedence: the ``address`` argument, ``settings.scheduler_address`` (from config or
    ``DASK_SCHEDULER_ADDRESS``), an already-running default client in this process, then a
    LocalCluster that lives as long as the process.
    """
    settings = settings or load_settings()
    address = address or settings.scheduler_address
    if address:
        log.info("connecting to Dask scheduler at %s", address)
        return Client(address, set_as_default=False)
    try:
        from distributed import default_client

        return default_client()
    except ValueError:
        pass
    key = f"{settings.n_workers}x{settings.threads_per_worker}"
    client = _LOCAL.get(key)
    if client is not None and client.status == "running":
        return client
    with spawning_with(worker_environ()):
        cluster = LocalCluster(
            n_workers=settings.n_workers,
            threads_per_worker=settings.threads_per_worker,
            processes=True,
            memory_limit=settings.worker_memory_limit,
            dashboard_address=os.environ.get("ALPHAFORGE_DASHBOARD", ":0"),
            silence_logs=logging.WARNING,
            # The engine's dashboard page (/alphaforge) and Prometheus metrics: the preload is
            # imported before the scheduler's dashboard starts (see cluster.dashboard).
            scheduler_kwargs={
                "preload": _preloads("distributed.scheduler.preload", "cluster.dashboard")
            },
            # workers start loading the numba kernels at once (see cluster.worker)
            preload=_preloads("distributed.worker.preload", "cluster.worker"),
        )
    client = Client(cluster, set_as_default=False)
    log.info(
        "started LocalCluster (%s workers); dashboard at %s (engine page: %s)",
        key,
        client.dashboard_link,
        client.dashboard_link.replace("/status", "/alphaforge"),
    )
    _LOCAL[key] = client
    return client


def _preloads(config_key: str, *extra: str) -> list[str]:
    """The preloads configured under ``config_key`` (e.g. ``distributed.scheduler.preload``)
    plus ``extra``."""
    configured = dask.config.get(config_key, []) or []
    configured = [configured] if isinstance(configured, str) else list(configured)
    return configured + [p for p in extra if p not in configured]


def close_local() -> None:
    """Shut down the embedded LocalCluster(s) started by :func:`connect`."""
    while _LOCAL:
        _, client = _LOCAL.popitem()
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()
