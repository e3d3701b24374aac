"""Replica choice behind one protocol (``Strategy.pick(deployment, facts, tried)``)."""

from inferenceops.routing.affinity import BoundedLoadAffinity, prefix_affinity, session_affinity
from inferenceops.routing.engine_board import EngineBoard
from inferenceops.routing.engine_load import EngineLoadStrategy
from inferenceops.routing.least_outstanding import LeastOutstanding
from inferenceops.routing.protocol import RouteFacts, Router, Strategy
from inferenceops.routing.round_robin import RoundRobin

DEFAULT_STRATEGY = "least_outstanding"
#: Every strategy a deployment's ``routing`` may name.
STRATEGY_NAMES = ("least_outstanding", "round_robin", "engine_load", "prefix_affinity",
                  "session_affinity")
#: Strategies that read engine metrics: the scraper scrapes the replicas of their deployments.
SCRAPED_STRATEGIES = frozenset({"engine_load"})


def default_router(board: EngineBoard | None = None) -> Router:
    """One instance of each strategy (they count this process's in-flight requests).

    The engine-aware ones share ``board`` (a fresh one if not given), which the
    engine-metrics scraper (``routing.scraper.EngineScraper``) keeps up to date.
    """
    board = board if board is not None else EngineBoard()
    return Router({"least_outstanding": LeastOutstanding(), "round_robin": RoundRobin(),
                   "engine_load": EngineLoadStrategy(board),
                   "prefix_affinity": prefix_affinity(board),
                   "session_affinity": session_affinity(board)},
                  DEFAULT_STRATEGY)


__all__ = ["DEFAULT_STRATEGY", "SCRAPED_STRATEGIES", "STRATEGY_NAMES", "BoundedLoadAffinity",
           "EngineBoard", "EngineLoadStrategy", "LeastOutstanding", "RouteFacts", "RoundRobin",
           "Router", "Strategy", "default_router"]
