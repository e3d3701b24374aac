"""Domain types of the platform: pure data, no I/O, imports nothing of ours."""

from inferenceops.platform.catalog import (
    Deployment,
    Endpoint,
    Model,
    Replica,
    Snapshot,
    Timeouts,
)
from inferenceops.platform.identity import Principal

__all__ = ["Deployment", "Endpoint", "Model", "Principal", "Replica", "Snapshot", "Timeouts"]
