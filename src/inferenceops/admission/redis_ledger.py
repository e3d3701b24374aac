"""The admission ledger on Redis: counters shared by every gateway replica.

Semantics are those of ``ledger.py`` and identical to ``MemoryLedger`` (see that
module for the decisions beyond ``ledger.py``); this module only owns the
translation to Redis. Each operation is *one* ``EVALSHA`` of ``lua/ledger.lua``, so
an admission's check-all-then-reserve-all is atomic across replicas, and the
time is the Redis server's ``TIME``, so replicas with skewed clocks agree.

Key layout (``P`` = prefix; every key carries the hash tag ``{P}`` so that one
ledger lives in one Redis Cluster slot and the scripts work there too):

* ``{P}:r:<counter>:w``, ``{P}:t:<counter>:w`` — REQUESTS / TOKENS windows: one
  HASH of at most ``SLOTS + 3`` fields, whatever the request rate: per slot
  (``ceil(window µs / SLOTS)`` µs of server time, numbered from the epoch)
  admitted into, ``<slot index>`` → ``"<amount> <newest admission time µs>"``;
  ``n`` → the total; ``e`` → when the oldest slot leaves. Trimmed by the
  scripts; expires ``window + margin`` after the last admission.
* ``{P}:c:<counter>:z|h`` — CONCURRENCY leases: a ZSET member → lease expiry
  (µs) and a HASH member → amount with the sum under the field ``""``. Expire
  ``lease + margin`` after the longest outstanding lease.
* ``{P}:b:<counter>:z|h`` — BUDGET reservations (leases, same shape) and
  ``{P}:b:<counter>:s`` the spent total (STRING), expiring ``ttl_s`` after its
  last touch, or never when ``ttl_s`` is None.
* ``{P}:q:<request id>`` — the request's ticket: ``"<admission time µs>"``, and when
  it holds leases ``" <instance id>"`` and ``"\0<lease key base>"`` per lease counter
  after it (which counters hold its leases, for the reaper; a NUL because names may
  hold spaces). The time names its slot in each window; the
  ticket makes settle/release act once, and lease members ``<request id>@<time>``
  unique. Deleted by the settle or release; expires ``max(lease, longest window +
  slot) + margin`` after admission otherwise.
* Liveness (``instance.py`` says why): ``{P}:i:<instance id>`` — the instance's
  heartbeat (STRING, TTL ``ttl_s``); ``{P}:o:<instance id>`` — its leased
  requests (ZSET member → lease expiry); ``{P}:instances`` — the registry of
  instance ids (SET); both expire a day after the instance's last heartbeat (a
  lease set created since gets its TTL with the next one); ``{P}:live`` —
  "walked recently" (TTL ``check_s``), so the registry is walked once per
  ``check_s`` per prefix.

Per request, then, only the ticket, its lease members and its member in its
instance's set exist while it is in flight, and nothing once it is settled or
released.

Liveness costs the hot path, per admission that takes leases, one ``MGET`` (its
own heartbeat, and whether the registry was walked recently) and a ``ZADD`` to
its instance's set; per settle a ``ZREM``; all O(1) or O(log n): 52 commands
inside the two scripts of the benchmark's admit+settle pair instead of 49. The
walk itself (O(instances) plus at most ``REAP`` freed leases) runs in one call
per ``check_s``. The script derives the liveness keys (and, when freeing a dead
instance's leases, the counters named in its tickets) from the hash tag rather
than receiving them in KEYS: they are only known inside the script. All carry the
same hash tag, so on Redis Cluster they are in the same slot.

Numbers: Lua computes in doubles, so limits, amounts, totals, spent and
``tokens``/``cost`` must stay below 2**53 (~9.0e15: 9 million currency units of
budget in nano-units per counter); larger values are refused with ValueError
before anything is sent.

The wire: ``resp.py``, our own pipelined RESP2 client (a few connections shared
by every caller), because every inference request pays for one admit and one
settle, and over ``resp.py`` that pair costs 2.5x (one caller) to 5x (64
concurrent callers) less client CPU than over redis-py's asyncio client
(``bench/results/ledger-latest.md``).

Errors: every ``resp`` error (cannot connect, timeout, connection lost,
protocol error, an error reply such as ``WRONGTYPE``) leaves this module as
``LedgerUnavailable`` naming the operation; nothing redis-specific escapes. No
command is ever retried by the client: a retried admit whose first reply was
lost could reserve twice; the caller's fail-open/closed policy decides instead.
A ``NOSCRIPT`` (Redis restarted or flushed its script cache) is answered by
loading the script and calling again, which is safe because ``NOSCRIPT`` means
the script did not run; likewise an admission the script refused because this
instance's heartbeat key was gone (Redis restarted or failed over) while the
client had a recent heartbeat: the ledger beats and calls again, once.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inferenceops.admission.instance import Liveness, new_instance_id
from inferenceops.admission.ledger import (
    Admitted,
    Check,
    CheckKind,
    CounterState,
    HeartbeatLost,
    LedgerUnavailable,
    Refused,
)
from inferenceops.admission.memory_ledger import EXPIRY_MARGIN_S, ticket_life_s
from inferenceops.admission.resp import ReplyError, RespClient, RespError

SCRIPT = (Path(__file__).parent / "lua" / "ledger.lua").read_bytes()
SCRIPT_SHA = hashlib.sha1(SCRIPT).hexdigest()
EXACT_BOUND = 2**53
_LETTER = {CheckKind.REQUESTS: "r", CheckKind.TOKENS: "t", CheckKind.CONCURRENCY: "c",
           CheckKind.BUDGET: "b"}
_LEASED = (CheckKind.CONCURRENCY, CheckKind.BUDGET)
_MARGIN_MS = math.ceil(EXPIRY_MARGIN_S * 1000)
_NOT_LIVE = -2  # the script's answer to an admission from an instance without a heartbeat key


def _seconds(us: int) -> float:
    """Script durations are integer µs; -1 means "never" (a budget without ttl)."""
    return math.inf if us < 0 else us / 1e6


class RedisLedger:
    """A few pipelined connections to one Redis (or one Cluster slot) for the whole process.

    ``timeout_s`` bounds each call and each connect; ``connections`` is how many
    connections the calls are spread over (each carries many calls at once).

    The ledger is one *instance* (``instance_id``, random per object): its leases are
    freed by other replicas once its heartbeat is gone (``instance.py``). Until
    ``supervise()`` (called by ``InstanceHeartbeat``, which then beats every
    ``liveness.interval_s``), a ledger that has no recent heartbeat registers itself
    before an admission that takes leases — a tool or a test needs no heartbeat task,
    but its leases are only safe for ``ttl_s`` after its last admission. Supervised, a
    lapsed heartbeat refuses such admissions with ``HeartbeatLost`` instead.
    """

    def __init__(self, url: str, *, prefix: str = "inferenceops", timeout_s: float = 0.5,
                 connections: int = 2, liveness: Liveness | None = None) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be non-empty and brace-free (it becomes the hash tag): {prefix!r}")
        self._tag = "{" + prefix + "}"
        self._client = RespClient(url, timeout_s=timeout_s, connections=connections)
        self.liveness = liveness or Liveness()
        self.instance_id = new_instance_id()
        self._live_until = 0.0  # monotonic: the last heartbeat sent that got through + ttl_s
        self._supervised = False
        self._instance_arg = f"{self.instance_id} {math.ceil(self.liveness.check_every_s * 1000)}"
        self._beat_keys = [f"{self._tag}:i:{self.instance_id}", f"{self._tag}:instances",
                           f"{self._tag}:o:{self.instance_id}"]
        self._beat_args = ["beat", self.instance_id, max(1, math.ceil(self.liveness.ttl_s * 1000))]

    @property
    def live(self) -> bool:
        """This instance's heartbeat got through less than ``ttl_s`` ago (so Redis still has it)."""
        return time.monotonic() < self._live_until

    def supervise(self) -> None:
        """From now on a heartbeat task keeps this instance live; a lapse refuses admissions."""
        self._supervised = True

    async def beat(self) -> None:
        """Prove this instance alive for ``ttl_s`` more (and (re)register it): one ``EVALSHA``."""
        sent = time.monotonic()
        await self._call("heartbeat", self._beat_keys, self._beat_args)
        self._live_until = max(self._live_until, sent + self.liveness.ttl_s)

    async def leave(self) -> None:
        """This instance stops: delete its heartbeat, so its remaining leases are freed at once."""
        self._live_until = 0.0
        try:
            await self._client.call("DEL", self._beat_keys[0])
        except RespError as error:
            raise LedgerUnavailable(f"redis ledger leave failed: {type(error).__name__}: {error}") from error

    async def admit(self, request_id: str, checks: Sequence[Check], lease_s: float) -> Admitted | Refused:
        if not checks:
            return Admitted(request_id, ())
        leased = False
        for check in checks:
            if not (0 <= check.amount < EXACT_BOUND and check.limit < EXACT_BOUND):
                raise ValueError(f"{check.label}: limit and amount must be in [0, 2**53)")
            if check.kind in _LEASED:
                leased = True
        keys, args = self._frame("admit", request_id, checks, round(lease_s * 1e6),
                                 math.ceil(ticket_life_s(checks, lease_s) * 1000), _MARGIN_MS)
        if leased:
            if time.monotonic() >= self._live_until:
                await self._lapsed()
            args.append(self._instance_arg)
        reply = await self._call("admit", keys, args)
        if reply[0] == _NOT_LIVE:  # Redis lost our key (restart, failover) though we beat recently
            await self.beat()
            reply = await self._call("admit", keys, args)
            if reply[0] == _NOT_LIVE:
                raise HeartbeatLost(f"redis ledger admit: instance {self.instance_id} is not live "
                                    "in Redis right after a heartbeat")
        if reply[0] == -1:
            raise ValueError(f"request id {request_id!r} is already admitted and not yet settled")
        if reply[0] == 0:
            index = reply[1] - 1
            return Refused(index, None if reply[2] < 0 else reply[2] / 1e6,
                           CounterState(checks[index].limit, reply[3], _seconds(reply[4])))
        n = len(checks)
        states = tuple(CounterState(checks[i].limit, reply[1 + 2 * i], _seconds(reply[2 + 2 * i]))
                       for i in range(n))
        return Admitted(request_id, states, tuple(i - 1 for i in reply[1 + 2 * n:]))

    async def _lapsed(self) -> None:
        if self._supervised:
            raise HeartbeatLost(f"admission instance {self.instance_id} has had no heartbeat through "
                                f"to Redis for {self.liveness.ttl_s:g}s; its leases may be freed")
        await self.beat()

    async def settle(self, request_id: str, checks: Sequence[Check], tokens: int, cost: int) -> None:
        if not (0 <= tokens < EXACT_BOUND and 0 <= cost < EXACT_BOUND):
            raise ValueError("tokens and cost must be in [0, 2**53)")
        if checks:
            await self._call("settle", *self._frame("settle", request_id, checks, tokens, cost, 0))

    async def release(self, request_id: str, checks: Sequence[Check]) -> None:
        if checks:
            await self._call("release", *self._frame("release", request_id, checks, 0, 0, 0))

    async def read(self, checks: Sequence[Check]) -> tuple[CounterState, ...]:
        if not checks:
            return ()
        keys, args = self._frame("read", "", checks, 0, 0, 0)
        args.append(self._instance_arg)  # leases of dead instances are freed before reading
        reply = await self._call("read", keys, args)
        return tuple(CounterState(check.limit, reply[2 * i], _seconds(reply[2 * i + 1]))
                     for i, check in enumerate(checks))

    async def budget_totals(self, counter: str) -> tuple[int, int]:
        base = f"{self._tag}:b:{counter}"
        keys = [self._ticket(""), base + ":z", base + ":h", base + ":s"]
        spent, reserved = await self._call("budget_totals", keys,
                                           ["totals", "", 0, 0, 0, 0, "", self._instance_arg])
        return spent, reserved

    async def close(self) -> None:
        await self._client.close()

    async def ping(self) -> None:
        """One plain round trip: a readiness probe, and the benchmark's baseline."""
        try:
            await self._client.call("PING")
        except RespError as error:
            raise LedgerUnavailable(f"redis ledger ping failed: {type(error).__name__}: {error}") from error

    def _ticket(self, request_id: str) -> str:
        return f"{self._tag}:q:{request_id}"

    def _frame(self, op: str, request_id: str, checks: Sequence[Check], a: int, b: int,
               c: int) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV in the layout ``lua/ledger.lua`` documents."""
        tag = self._tag
        keys = [self._ticket(request_id)]
        spec = []
        for check in checks:
            letter = _LETTER[check.kind]
            base = f"{tag}:{letter}:{check.counter}"
            if letter == "r" or letter == "t":
                keys.append(base + ":w")
            else:
                keys.append(base + ":z")
                keys.append(base + ":h")
                if letter == "b":
                    keys.append(base + ":s")
            ttl = -1 if check.ttl_s is None else max(1, math.ceil(check.ttl_s * 1000))
            spec.append(f"{letter} {check.limit} {check.amount} {round(check.window_s * 1e6)} "
                        f"{1 if check.hard else 0} {ttl}")
        return keys, [op, request_id, a, b, c, len(checks), " ".join(spec)]

    async def _call(self, what: str, keys: list[str], args: list[Any]) -> Any:
        client = self._client
        try:
            try:
                return await client.call("EVALSHA", SCRIPT_SHA, len(keys), *keys, *args)
            except ReplyError as error:
                if error.code != "NOSCRIPT":
                    raise
            await client.call("SCRIPT", "LOAD", SCRIPT)
            return await client.call("EVALSHA", SCRIPT_SHA, len(keys), *keys, *args)
        except RespError as error:
            raise LedgerUnavailable(f"redis ledger {what} failed: {type(error).__name__}: {error}") from error
