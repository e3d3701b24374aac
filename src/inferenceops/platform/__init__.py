"""Domain types of the platform: pure data, no I/O, imports nothing of ours."""

from inferenceops.platform.catalog import (
    Adapter,
    Catalog,
    Deployment,
    Endpoint,
    Model,
    QueueSettings,
    Replica,
    Timeouts,
)
from inferenceops.platform.identity import ApiKey, Identity, Principal
from inferenceops.platform.keys import KeyHasher
from inferenceops.platform.snapshot import Snapshot

__all__ = ["Adapter", "ApiKey", "Catalog", "Deployment", "Endpoint", "Identity", "KeyHasher", "Model",
           "Principal", "QueueSettings", "Replica", "Snapshot", "Timeouts"]
