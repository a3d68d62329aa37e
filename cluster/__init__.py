"""Cluster: where work runs (Dask clusters, configuration)."""

from cluster.config import Settings, load_settings
from cluster.connect import close_local, connect

__all__ = ["Settings", "close_local", "connect", "load_settings"]
