"""The engine: panel data, kernels, reference evaluation, planner, executor, cache, store.

``engine.evaluate`` computes factors in one process (the ground truth); ``engine.compute``
computes the same on a Dask cluster in time blocks; ``engine.plan`` shows how.
"""

from engine.evaluate import evaluate
from engine.execute import ComputeResult, compute, plan
from engine.panel import Panel

__all__ = ["ComputeResult", "Panel", "compute", "evaluate", "plan"]
