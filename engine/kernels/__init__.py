"""The kernel registry: ``KERNELS`` maps every canonical operator name to its kernel.

Each kernel module (rolling, rolling_order, rolling_pair, ewm, elementwise, cross_section,
group, technical) exports its own ``KERNELS`` dict and a ``warmup()``; this module merges
the dicts (a name registered twice is an error) and ``warmup()`` compiles everything once
per process (numba compiles lazily; call it when a worker starts).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np

from engine.kernels import (
    cross_section,
    elementwise,
    ewm,
    fingerprint,
    group,
    rolling,
    rolling_order,
    rolling_pair,
    technical,
)

__all__ = ["BLOCK_ALIGNED", "KERNELS", "MODULES", "MULTI", "warmup", "warmup_locked"]

#: Kernels that keep running sums and recompute them from scratch every ``w`` rows counted
#: from the first row they are given (operator -> name of its window parameter). Their last
#: bits depend on where a computation starts, so the executor starts them on a multiple of
#: ``w`` rows at least one window before the first row it needs: then they recompute at the
#: same rows as a whole-panel evaluation and produce the same bits (tested for every kernel
#: in tests/engine/kernels/test_block_invariance.py).
BLOCK_ALIGNED: dict[str, str] = {
    op: "w"
    for op in (
        "ts_sum",
        "ts_mean",
        "ts_std",
        "ts_var",
        "ts_skew",
        "ts_kurt",
        "ts_product",
        "ts_cov",
        "ts_corr",
        "ts_slope",
        "ts_rsquare",
        "ts_resi",
        "decay_linear",
    )
}

#: Operators of which one pass computes several nodes that differ only in one parameter:
#: operator -> (that parameter, the keyword taking a sequence of its values, a kernel called
#: like the operator's but with that keyword, returning one array per value, each bit for bit
#: the single kernel's). The planner groups such nodes (``Plan.siblings``), the executor
#: computes a group at once. Never an operator of ``BLOCK_ALIGNED``.
MULTI: dict[str, tuple[str, str, Callable[..., list[np.ndarray]]]] = {
    "ts_quantile": ("q", "qs", rolling_order.ts_quantiles),
}

MODULES: tuple[ModuleType, ...] = (
    elementwise,
    rolling,
    rolling_order,
    rolling_pair,
    ewm,
    cross_section,
    group,
    technical,
    fingerprint,
)


def _merge(modules: tuple[ModuleType, ...]) -> dict[str, Callable[..., np.ndarray]]:
    merged: dict[str, Callable[..., np.ndarray]] = {}
    for module in modules:
        for name, fn in module.KERNELS.items():
            if name in merged:
                raise RuntimeError(f"kernel {name!r} is registered twice ({module.__name__})")
            merged[name] = fn
    return merged


KERNELS: dict[str, Callable[..., np.ndarray]] = _merge(MODULES)


def warmup() -> None:
    """Compile every kernel once (call once per worker process before timing anything)."""
    for module in MODULES:
        module.warmup()


def warmup_locked() -> None:
    """``warmup()`` under a per-host file lock: one process builds numba's on-disk cache at a
    time, the others then load it (see ``engine.kernels._jit``)."""
    from engine.kernels._jit import warmup_lock

    with warmup_lock():
        warmup()
