"""Reference evaluation: compute named factors over a whole panel in one process.

This is the ground truth the parallel executor must reproduce exactly. The algorithm:

1. Parse formula strings (``factors.parse`` in the given dialect; the panel's own field
   names may be written bare).
2. Walk all factor graphs together, children before parents, visiting each distinct node
   (by ``expr.key``) once: identical sub-expressions of different factors are computed once.
3. Per node: a field is read from ``panel[name]``, a constant is broadcast to the panel's
   (T, N) shape, a call runs ``engine.kernels.KERNELS[op](*arrays, **params)``. A group
   operator gets the int64 label array of its group field (see ``resolve_group``).
4. Free an intermediate as soon as its last parent has used it (reference counts), so peak
   memory follows the graph's width, not its size.

It knows nothing about blocks, halos, caches or Dask; the planner and executor do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from engine.errors import PlanError
from factors import parse
from factors.expr import GROUP_FIELDS, Call, Const, Expr, Field

__all__ = ["as_expressions", "evaluate", "group_level", "resolve_group"]

# When a panel lacks the group level a formula names (IndClass.sector|industry|subindustry),
# use the first level it has, in this order (the real S&P 500 sample has only 'industry').
GROUP_FALLBACK = ("industry", "sector", "subindustry")


def group_level(groups: Mapping[str, Any], name: str) -> str:
    """The group field the panel uses for ``name``: ``sector``, ``industry`` and
    ``subindustry`` fall back to whichever of the three it has (``GROUP_FALLBACK`` order)."""
    if name in GROUP_FIELDS and name not in groups:
        return next((g for g in GROUP_FALLBACK if g in groups), name)
    return name


def resolve_group(panel: Any, name: str) -> np.ndarray:
    """The int64 (T, N) label array of group field ``name`` (-1 = no label)."""
    groups: Mapping[str, np.ndarray] = getattr(panel, "groups", {}) or {}
    level = group_level(groups, name)
    if level in groups:
        return groups[level]
    known = ", ".join(groups) or "none"
    raise PlanError(f"unknown group field {name!r}; the panel's group fields: {known}")


def _panel_shape(panel: Any, names: set[str]) -> tuple[int, int]:
    shape = getattr(panel, "shape", None)
    if shape is not None:
        return tuple(shape)  # type: ignore[return-value]
    for name in sorted(names) or ["close"]:
        try:
            return np.shape(panel[name])  # type: ignore[return-value]
        except (KeyError, ValueError):
            continue
    raise PlanError("cannot tell the panel's shape: it has no .shape and no readable field")


def as_expressions(factors: Mapping[str, Expr | str], panel: Any, dialect: str) -> dict[str, Expr]:
    """Parse formula strings (the panel's own field names may be written bare)."""
    if not factors:
        raise ValueError("no factors given")
    known = list(getattr(panel, "field_names", ()) or ())
    out: dict[str, Expr] = {}
    for name, f in factors.items():
        if isinstance(f, str):
            out[name] = parse(f, dialect, fields=known)
        elif isinstance(f, Expr):
            out[name] = f
        else:
            raise TypeError(f"factor {name!r} must be an Expr or a formula string, got {f!r}")
    return out


def evaluate(
    factors: Mapping[str, Expr | str],
    panel: Any,
    *,
    dialect: str = "alpha101",
    kernels: Mapping[str, Callable[..., np.ndarray]] | None = None,
) -> dict[str, np.ndarray]:
    """Compute every factor over the whole ``panel``; returns name -> float64 (T, N) array.

    ``panel`` is an ``engine.panel.Panel`` or any object with ``__getitem__(name)`` returning
    (T, N) float64 arrays (and ``.groups`` for group operators). ``kernels`` defaults to
    ``engine.kernels.KERNELS``.
    """
    if kernels is None:
        from engine.kernels import KERNELS as kernels  # noqa: N811 - numba import on demand
    exprs = as_expressions(factors, panel, dialect)

    # Distinct nodes in dependency order, and how many parents (and outputs) use each.
    order: list[Expr] = []
    seen: set[str] = set()
    for e in exprs.values():
        for node in e.walk():
            if node.key not in seen:
                seen.add(node.key)
                order.append(node)
    uses: dict[str, int] = {}
    for node in order:
        for c in node.children:
            uses[c.key] = uses.get(c.key, 0) + 1
    for e in exprs.values():
        uses[e.key] = uses.get(e.key, 0) + 1  # outputs are never freed

    shape = _panel_shape(panel, {f for e in exprs.values() for f in e.fields})
    memo: dict[str, np.ndarray] = {}

    def value(node: Expr) -> np.ndarray:
        if node.key in memo:
            return memo[node.key]
        if isinstance(node, Field):
            try:
                arr = panel[node.name]
            except KeyError as exc:
                raise PlanError(f"unknown field {node.name!r}: {exc}") from None
            arr = np.asarray(arr, dtype=np.float64)
        elif isinstance(node, Const):
            arr = np.full(shape, node.value)
        else:  # pragma: no cover - calls are computed in order below
            raise AssertionError(node)
        memo[node.key] = arr
        return arr

    def release(node: Expr) -> None:
        uses[node.key] -= 1
        if uses[node.key] == 0:
            memo.pop(node.key, None)

    for node in order:
        if not isinstance(node, Call):
            continue
        spec = node.spec
        arrays = []
        for i, child in enumerate(node.args):
            if spec.kind == "group" and i == len(node.args) - 1:
                assert isinstance(child, Field)
                arrays.append(resolve_group(panel, child.name))
            else:
                arrays.append(value(child))
        try:
            fn = kernels[node.op]
        except KeyError:
            raise PlanError(f"no kernel registered for operator {node.op!r}") from None
        try:
            memo[node.key] = fn(*arrays, **dict(node.params))
        except ValueError as exc:
            exc.add_note(f"while computing {node!r}")
            raise
        for child in node.args:
            release(child)

    results: dict[str, np.ndarray] = {}
    handed_out: set[int] = set()
    for name, e in exprs.items():
        arr = memo[e.key] if e.key in memo else value(e)
        if isinstance(e, Field) or id(arr) in handed_out:
            arr = arr.copy()  # never alias the panel's data or another result
        handed_out.add(id(arr))
        results[name] = arr
    return results
