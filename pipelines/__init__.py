"""Pipelines: what a quant or the nightly batch asks for (Pipeline API, CLI)."""

from pipelines.pipeline import Pipeline, as_source
from pipelines.spec import Source, Spec

__all__ = ["Pipeline", "Source", "Spec", "as_source"]
