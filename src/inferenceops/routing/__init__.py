"""Replica choice behind one protocol (``Strategy.pick(deployment, facts, tried)``)."""

from inferenceops.routing.least_outstanding import LeastOutstanding
from inferenceops.routing.protocol import RouteFacts, Router, Strategy
from inferenceops.routing.round_robin import RoundRobin

DEFAULT_STRATEGY = "least_outstanding"
#: Every strategy a deployment's ``routing`` may name.
STRATEGY_NAMES = ("least_outstanding", "round_robin")


def default_router() -> Router:
    """One instance of each strategy (they count this process's in-flight requests)."""
    return Router({"least_outstanding": LeastOutstanding(), "round_robin": RoundRobin()},
                  DEFAULT_STRATEGY)


__all__ = ["DEFAULT_STRATEGY", "STRATEGY_NAMES", "LeastOutstanding", "RouteFacts", "RoundRobin",
           "Router", "Strategy", "default_router"]
