"""engine.kernels: the merged registry and the process warm-up."""

from __future__ import annotations

import pytest

import engine.kernels as kernels


def test_registry_merges_every_module_without_duplicates():
    total = sum(len(m.KERNELS) for m in kernels.MODULES)
    assert len(kernels.KERNELS) == total
    for module in kernels.MODULES:
        for name, fn in module.KERNELS.items():
            assert kernels.KERNELS[name] is fn


def test_duplicate_registration_is_an_error():
    class A:
        __name__ = "a"
        KERNELS = {"x": abs}

    class B:
        __name__ = "b"
        KERNELS = {"x": abs}

    with pytest.raises(RuntimeError, match="kernel 'x' is registered twice"):
        kernels._merge((A, B))


def test_warmup_calls_every_module(monkeypatch):
    called = []
    for module in kernels.MODULES:
        monkeypatch.setattr(module, "warmup", lambda m=module: called.append(m.__name__))
    kernels.warmup()
    assert called == [m.__name__ for m in kernels.MODULES]
