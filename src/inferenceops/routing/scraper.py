"""The engine-metrics scraper: a supervised service that keeps ``EngineBoard`` fresh.

Every ``interval_s`` it reads the catalog the process serves now, and for
each replica of a deployment whose strategy reads engine state (``scraped``:
``engine_load``) it GETs ``<replica root>/metrics`` — a replica's ``base_url``
ends at the API root (``…/v1``), vLLM and SGLang serve ``/metrics`` at the
server root, so a trailing ``/v1`` is dropped — parses the gauges
(``routing.engine_metrics``) and records them on the board. All replicas are
scraped at once, each within ``timeout_s`` (connect, send, read), so one hung
engine delays nothing else and the next round starts on time; a failed scrape
records nothing, and once a replica's last good scrape is older than the
board's ``stale_after_s`` the strategies fall back to this process's own
in-flight count for it.

One small keep-alive pool per replica (``engines.http1.Pool``, one
connection; the loop and pools are ``routing.replica_poller``'s), separate from
the request pools so a scrape never waits behind generation traffic. No request
path waits on any of this. What it must not do:
block the event loop (the only CPU work is parsing a few lines of text), or
raise out of ``run`` for an engine's misbehaviour (each failure is counted and
logged once per change).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Iterable
from urllib.parse import urlsplit, urlunsplit

from inferenceops import __version__
from inferenceops.engines.http1 import HTTPClientError, Pool
from inferenceops.platform import Deployment, Replica
from inferenceops.routing.engine_board import EngineBoard
from inferenceops.routing.engine_metrics import EngineLoad, parse_engine_metrics
from inferenceops.routing.replica_poller import ReplicaPoller

log = logging.getLogger("inferenceops.routing.scraper")

#: A ``/metrics`` page larger than this is cut off and counted as a failed scrape (real vLLM: ~60 KB).
MAX_METRICS_BYTES = 4 * 1024 * 1024


class ScrapeFailed(Exception):
    """One replica's ``/metrics`` could not be read or held no load gauges."""


def metrics_url(base_url: str) -> str:
    """``http://h:p/v1`` → ``http://h:p/metrics``; ``http://h:p/_sim/x/v1`` → ``…/_sim/x/metrics``."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    return urlunsplit((parts.scheme, parts.netloc, f"{path}/metrics", "", ""))


class _Target:
    __slots__ = ("url", "pool", "head")

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.pool = Pool(url, max_connections=1, connect_timeout_s=timeout_s)
        path = urlsplit(url).path
        self.head = (f"GET {path} HTTP/1.1\r\nHost: {self.pool.host_header}\r\n"
                     f"User-Agent: inferenceops/{__version__}\r\nAccept: text/plain\r\n"
                     "Accept-Encoding: identity\r\n\r\n").encode("latin-1")


class EngineScraper(ReplicaPoller[_Target]):
    """Scrapes the engines of engine-aware deployments into ``board`` (a supervised service)."""

    def __init__(self, deployments: Callable[[], Iterable[Deployment]], board: EngineBoard, *,
                 scraped: frozenset[str], interval_s: float = 1.0, timeout_s: float = 0.5,
                 name: str = "engine-metrics") -> None:
        super().__init__(deployments, interval_s=interval_s, timeout_s=timeout_s, name=name,
                         what="scrape")
        self.board = board
        self.scraped = scraped
        self.failures: dict[str, int] = {}  # replica id → consecutive failed scrapes

    def polled(self, deployment: Deployment) -> bool:
        return deployment.routing in self.scraped

    def target_key(self, deployment: Deployment, replica: Replica) -> Hashable:
        return metrics_url(replica.base_url)

    def target(self, deployment: Deployment, replica: Replica) -> _Target:
        return _Target(metrics_url(replica.base_url), self.timeout_s)

    async def poll_once(self) -> dict[str, EngineLoad | None]:
        return await self.scrape_once()

    async def scrape_once(self) -> dict[str, EngineLoad | None]:
        """Scrape every target once, at the same time; what each gave (None: it failed)."""
        targets, _ = self.sync_targets()
        self.board.forget(set(targets))
        out: dict[str, EngineLoad | None] = {}
        for replica_id, result in (await self.ask_all(targets, self._scrape)).items():
            if isinstance(result, EngineLoad):
                self.board.record(replica_id, result)
                if self.failures.pop(replica_id, 0):
                    log.info("engine metrics of replica %s readable again", replica_id)
                out[replica_id] = result
                continue
            count = self.failures.get(replica_id, 0) + 1
            self.failures[replica_id] = count
            if count == 1:
                log.warning("engine metrics of replica %s unreadable (%s); its load falls back "
                            "to this process's in-flight count once the last scrape is older "
                            "than %gs", replica_id, result, self.board.stale_after_s)
            out[replica_id] = None
        return out

    async def _scrape(self, target: _Target) -> EngineLoad:
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = await target.pool.request(target.head)
                if conn.status != 200:
                    conn.abort()
                    raise ScrapeFailed(f"/metrics answered {conn.status}")
                body, whole = await conn.read_body(MAX_METRICS_BYTES)
                if not whole:
                    raise ScrapeFailed(f"/metrics is larger than {MAX_METRICS_BYTES} bytes")
        except TimeoutError:
            raise ScrapeFailed(f"no answer within {self.timeout_s:g}s") from None
        except HTTPClientError as exc:
            raise ScrapeFailed(str(exc)) from None
        load = parse_engine_metrics(body)
        if load is None:
            raise ScrapeFailed("/metrics holds none of the load gauges")
        return load
