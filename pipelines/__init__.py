"""Pipelines: what a quant or the nightly batch asks for (Pipeline API, CLI)."""

from pipelines.pipeline import Pipeline, load_source

__all__ = ["Pipeline", "load_source"]
