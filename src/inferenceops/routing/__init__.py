"""Choosing a replica for each request. Pure decisions over in-memory state; no I/O."""

from inferenceops.routing.balancer import LeastOutstanding

__all__ = ["LeastOutstanding"]
