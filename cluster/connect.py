"""Getting a Dask client: an existing scheduler, the caller's default client, or a LocalCluster.

The embedded default is a ``distributed.LocalCluster`` of worker *processes* (numba kernels
hold the GIL only briefly, but separate processes keep one worker's crash from taking the
client down and match how a production cluster behaves).
"""

from __future__ import annotations

import logging
import os

import dask
from distributed import Client, LocalCluster

from cluster.config import Settings, load_settings

log = logging.getLogger(__name__)

_LOCAL: dict[str, Client] = {}


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
    cluster = LocalCluster(
        n_workers=settings.n_workers,
        threads_per_worker=settings.threads_per_worker,
        processes=True,
        memory_limit=settings.worker_memory_limit,
        dashboard_address=os.environ.get("ALPHAFORGE_DASHBOARD", ":0"),
        silence_logs=logging.WARNING,
        # The engine's dashboard page (/alphaforge) and Prometheus metrics: the preload is
        # imported before the scheduler's dashboard starts (see cluster.dashboard).
        scheduler_kwargs={"preload": _preloads("cluster.dashboard")},
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


def _preloads(*extra: str) -> list[str]:
    """The configured scheduler preloads (``distributed.scheduler.preload``) plus ``extra``."""
    configured = dask.config.get("distributed.scheduler.preload", []) or []
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
