"""Dask worker preload: start loading the numba kernels as soon as a worker process starts.

Loading every kernel from numba's on-disk cache takes about a second per process (one process
per host at a time, see ``engine.kernels._jit``). Done in a background thread from worker
start-up, it overlaps with the cluster starting and the client planning and scattering, instead
of delaying the first block task. The embedded LocalCluster uses it; a deployed worker gets it
with ``dask worker --preload cluster.worker <scheduler>``.
"""

from __future__ import annotations

from typing import Any


def dask_setup(worker: Any) -> None:
    """Dask's preload hook: called once in each worker process before it takes tasks."""
    from engine.execute import warm_in_background

    warm_in_background()
