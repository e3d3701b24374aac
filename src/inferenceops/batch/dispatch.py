"""Capacity-aware dispatch of batch lines: how many run per deployment, and which go next.

Batch lines are admitted in the background class, so the deployment gate never lets one
overtake an interactive request inside this gateway; but an engine runs what it is sent
first come first served, so batch lines sent beyond the fleet's spare capacity sit in
the engine's queue in front of the next interactive request (its time to first token).
The executor therefore sends each deployment only what its spare capacity allows, and
keeps the claimed lines it may not send yet here, in order.

**How many: a window per deployment, AIMD** (``Window``). Once a tick the window is
updated from the deployment's ``Load``, taken from the best source there is
(``load_of``):

* ``engine``: the engines' own ``/metrics`` as the fleet scrapes them
  (``routing.EngineBoard``: running and waiting sequences of every replica, everyone's
  traffic included), out of the deployment's ``capacity`` when set (set it to what the
  engines run at once: replicas × ``max_num_seqs``). Engines do not export that maximum,
  so without ``capacity`` it is learned: the most sequences a replica ran while others
  waited in its queue (a lower bound: a prefill backlog queues requests too, so set
  ``capacity`` where it matters);
* ``gateway``: this process's requests in flight against the deployment's ``capacity``,
  and interactive requests waiting in its gate (``admission.DeploymentGate``);
* ``none``: nothing known (no scrape, no capacity): the window is only bounded by the
  executor's ceiling and refusals (a line that came back "retry later").

Then:

* a queue (engine ``waiting`` > 0, interactive requests waiting in the gate, or a refusal)
  is congestion: **multiplicative decrease**, the window is halved (at most once per
  ``cooldown_s``, since the signal lags by a scrape) — except on engines that order their
  queue by priority (``Load.ordered``: interactive requests start before queued batch
  lines), where a queue of batch lines delays no interactive request: the window gives
  back only the overshoot (the queue and what runs above the high-water mark), so the
  slots stay full;
* above the high-water mark (``high_water`` of the slots busy) without a queue yet:
  trimmed by the overshoot, so a rise in interactive load takes the batch's share back
  within a tick;
* otherwise, while the window is in use: **additive increase** — by half the measured
  headroom to the high-water mark (at least one line, at most ``MAX_STEP``: new lines are
  prefill work the engine does before the next interactive request's first token), so the
  fleet fills within seconds and approaches the mark without overshooting it; with slots
  unknown, doubling (slow start, by at most ``MAX_STEP``) until the first queue, then one
  line a tick.

**Growth is let go gradually** (``RAMP_S``): lines a window grows by are released one by
one over the next ``RAMP_S``, not at once when the tick raises it. New lines are new
prompts: thirty landing together make engine steps of hundreds of milliseconds (a step
runs every prefill it holds before any token comes out), and an interactive request that
arrives during one waits for it whole — the worst interactive first tokens of a batch's
start were exactly those steps. Spread out, each step carries a prompt or two. A window
that shrinks does so at once.

The number running follows the window as lines finish (a running line is never
stopped): it backs off within seconds of interactive load rising, and grows again
when it falls. The high-water mark (95%) is the headroom kept for interactive bursts.

**Which next** (``Dispatcher``), per deployment, among the lines it holds:

1. **earliest deadline first**, at the granularity of ``bucket_s`` (an hour): deadlines in
   the same bucket are equally urgent;
2. inside a bucket, **fair between teams by weight** — start-time fair queueing by team,
   as the admission gate's fair queue does (a team's tag moves on by ``1 / weight`` per
   line; a team that becomes backlogged starts at the current virtual time);
3. inside a team, **lines sharing a prompt prefix together** (the group of the line last
   sent first, then the oldest group), so they reach the engine side by side and prefix-
   affinity routing lands them where that prefix is cached; FIFO inside a group.

**Deadlines at risk are promoted** (``DeadlineWatch``): a batch whose deadline is under
``PROMOTE_MARGIN_S`` away, or whose lines left would take more than ``RISK_SHARE`` of the
time left at the pace its deployment recorded lines lately, is promoted once: its held
lines move ahead of every deadline bucket, and while a deployment holds promoted lines it
runs at least ``PROMOTED_SHARE`` of the executor's ceiling whatever its window says —
spare capacity is no longer waited for. Promoted lines are still admitted in the
background class, so inside the gateway interactive requests still go first; what it
costs is engine queueing, bounded by that share. It is not taken back until the batch is
done or expires. It cannot starve another team: a batch not promoted waits behind promoted
lines only until its own deadline is at risk (at the latest ``PROMOTE_MARGIN_S`` before
it), when it is promoted too, and promoted lines are shared between teams by weight like
any bucket's (a newly waiting team starts level), so it gets its share however much
promoted work another team adds.

Pure policy: no I/O, no clock of its own (every call takes ``now``), no asyncio. The
executor (``batch.executor``) reads the loads, claims and runs the lines.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
Source = Literal["engine", "gateway", "none"]

#: Share of the slots the batch may help fill: the rest is kept for interactive bursts.
HIGH_WATER = 0.95
#: What a queue (congestion) leaves of the window.
BETA = 0.5
#: Most lines a window grows by in one tick: a burst of new lines is a burst of prefill, which
#: the engine runs before it can start the next interactive request (its first token waits).
MAX_STEP = 32.0
#: Seconds between two multiplicative decreases (the engine signal lags by a scrape).
COOLDOWN_S = 1.0
#: Seconds over which a window's growth is released, line by line (a scrape interval).
RAMP_S = 0.5
#: Requests waiting on one replica that are not yet a queue (they arrived since its last step).
QUEUE_GRACE = 2.0
#: Deadlines within this many seconds of each other are equally urgent (shared by weight).
BUCKET_S = 3600.0
#: The bucket of promoted lines: before every deadline's.
PROMOTED = -(2**62)
#: A batch whose deadline is this close is at risk whatever its pace.
PROMOTE_MARGIN_S = 600.0
#: ... or whose lines left would take more than this share of the time left at its pace.
RISK_SHARE = 0.8
#: The pace is what the deployment recorded over this long (at most ``RATE_SAMPLES`` lines).
RATE_WINDOW_S = 120.0
RATE_SAMPLES = 2000
#: The share of the executor's ceiling a deployment holding promoted lines runs, at least.
PROMOTED_SHARE = 0.25


@dataclass(frozen=True, slots=True)
class Load:
    """One deployment's load at one tick: ``busy`` running (or in flight), ``queued`` waiting
    (engine queue or interactive waiters in the gate), out of ``slots`` (None: unknown)."""

    source: Source
    busy: float = 0.0
    queued: float = 0.0
    slots: float | None = None
    #: The engines run interactive requests before queued batch lines (the deployment's
    #: ``scheduling_policy: priority``): a queue there is overshoot, not a delay to them.
    ordered: bool = False


class Window:
    """How many batch lines one deployment may have in flight (AIMD; see the module doc)."""

    __slots__ = ("limit", "floor", "ceiling", "high_water", "beta", "cooldown_s", "_cut_at",
                 "slow_start", "max_step", "ramp_s", "_ramp_from", "_ramp_at")

    def __init__(self, ceiling: int, *, floor: int = 1, start: int = 1,
                 high_water: float = HIGH_WATER, beta: float = BETA,
                 cooldown_s: float = COOLDOWN_S, max_step: float = MAX_STEP,
                 ramp_s: float = RAMP_S) -> None:
        self.ceiling = max(1, ceiling)
        self.floor = max(0, min(floor, self.ceiling))
        self.limit = float(min(max(start, self.floor), self.ceiling))
        self.high_water = high_water
        self.beta = beta
        self.cooldown_s = cooldown_s
        self._cut_at = -math.inf
        self.slow_start = True
        self.max_step = max_step
        self.ramp_s = ramp_s
        self._ramp_from = self.limit  # the growth in progress: from this, since _ramp_at
        self._ramp_at = -math.inf

    @property
    def allowed(self) -> int:
        """The window once its growth in progress is all released."""
        return int(self.limit)

    def allowed_at(self, now: float) -> int:
        """The window at ``now``: growth is released line by line over ``ramp_s``."""
        if self.limit <= self._ramp_from or now - self._ramp_at >= self.ramp_s:
            return int(self.limit)
        done = max(0.0, now - self._ramp_at) / self.ramp_s
        return int(self._ramp_from + (self.limit - self._ramp_from) * done)

    def ramping(self, now: float) -> bool:
        return self.allowed_at(now) < self.allowed

    def update(self, load: Load, mine: int, now: float) -> None:
        """One tick: ``load`` of the deployment (everyone's), ``mine`` of it this executor's."""
        before = min(self.limit, float(self.allowed_at(now)))
        self._update(load, mine, now)
        if self.limit > before:  # grown: released from where it stood, over ramp_s
            self._ramp_from, self._ramp_at = before, now

    def _update(self, load: Load, mine: int, now: float) -> None:
        if load.queued > 0:
            if load.ordered and load.slots is not None:
                # The queue is batch lines the engines will start before any interactive
                # request is kept waiting behind them: take back only the overshoot (the queue,
                # and what runs above the mark). Halving would empty the slots for seconds.
                over = load.queued + max(0.0, load.busy - self.high_water * load.slots)
                self._set(min(self.limit, mine) - over)
                return
            self.congested(now, mine)
            return
        if load.slots is not None:
            mark = self.high_water * load.slots
            if load.busy > mark:  # interactive load rose into the headroom: give it back now
                self._set(min(self.limit, mine) - (load.busy - mark))
                return
            room = mark - load.busy
            if mine >= self.allowed - 1 and room >= 1:  # only a window in use grows
                self._set(self.limit + min(self.max_step, max(1.0, room / 2)))
            return
        if mine >= self.allowed - 1:
            grown = min(self.limit * 2, self.limit + self.max_step) if self.slow_start else 1.0
            self._set(grown if self.slow_start else self.limit + grown)

    def congested(self, now: float, mine: int | None = None) -> None:
        """A queue formed (or a line was refused for now): halve, once per cooldown."""
        self.slow_start = False
        if now - self._cut_at < self.cooldown_s:
            return
        self._cut_at = now
        base = self.limit if mine is None else min(self.limit, max(mine, self.floor))
        self._set(base * self.beta)

    def _set(self, value: float) -> None:
        self.limit = min(float(self.ceiling), max(float(self.floor), value))


class EngineMaxima:
    """Each replica's most running sequences seen while others waited: its learned maximum."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def note(self, replica: str, running: float, waiting: float) -> None:
        if waiting > 0 and running > self._seen.get(replica, 0.0):
            self._seen[replica] = running

    def slots(self, replicas: list[str]) -> float | None:
        """The replicas' summed maxima (one not yet seen full counted as the mean of those
        seen: replicas of a deployment run the same engine); None until one was seen full."""
        known = [v for r in replicas if (v := self._seen.get(r)) is not None]
        if not known:
            return None
        return sum(known) + (len(replicas) - len(known)) * sum(known) / len(known)


def engine_load(loads: dict[str, tuple[float, float]], maxima: EngineMaxima) -> Load:
    """``loads``: replica → (running, waiting) from fresh scrapes. Up to ``QUEUE_GRACE``
    waiting on a replica is no queue: a request that arrived since the engine's last step
    waits for the next one even on an idle engine (seen at 4 req/s on an idle simulator)."""
    for replica, (running, waiting) in loads.items():
        maxima.note(replica, running, waiting - QUEUE_GRACE)
    return Load("engine", sum(r for r, _ in loads.values()),
                sum(max(0.0, w - QUEUE_GRACE) for _, w in loads.values()),
                maxima.slots(list(loads)))


# ---- ordering --------------------------------------------------------------------------------

@dataclass(slots=True)
class Item(Generic[T]):
    """A claimed line waiting here: where it goes, how urgent, whose, which prefix."""

    deployment: str
    deadline: float  # epoch seconds (the batch's expires_at)
    team: str
    weight: float
    prefix: int | None
    payload: T
    batch: str = ""  # the batch it belongs to ("": none known: never promoted)
    left: int | None = None  # its batch's lines not yet recorded when it was claimed


@dataclass(slots=True)
class _Team(Generic[T]):
    groups: OrderedDict[int | None, deque[Item[T]]] = field(default_factory=OrderedDict)
    current: int | None = None
    count: int = 0
    tag: float = 0.0


@dataclass(slots=True)
class _Bucket(Generic[T]):
    teams: dict[str, _Team[T]] = field(default_factory=dict)
    vtime: float = 0.0
    count: int = 0


class _Queue(Generic[T]):
    """One deployment's held lines: buckets by deadline, teams fairly, prefixes together."""

    __slots__ = ("buckets", "count", "seq", "bucket_s")

    def __init__(self, bucket_s: float) -> None:
        self.buckets: dict[int, _Bucket[T]] = {}
        self.count = 0
        self.seq = 0
        self.bucket_s = bucket_s

    def add(self, item: Item[T], *, promoted: bool = False) -> None:
        index = PROMOTED if promoted else math.floor(item.deadline / self.bucket_s)
        bucket = self.buckets.setdefault(index, _Bucket())
        team = bucket.teams.get(item.team)
        if team is None:
            team = bucket.teams[item.team] = _Team()
        if not team.count:  # newly backlogged: no credit banked while idle
            team.tag = max(team.tag, bucket.vtime)
        team.groups.setdefault(item.prefix, deque()).append(item)
        team.count += 1
        bucket.count += 1
        self.count += 1

    def pop(self) -> Item[T] | None:
        if not self.count:
            return None
        index = min(i for i, b in self.buckets.items() if b.count)
        bucket = self.buckets[index]
        name, team = min(((n, t) for n, t in bucket.teams.items() if t.count),
                         key=lambda nt: (nt[1].tag, nt[0]))
        group_key = team.current if team.current in team.groups else next(iter(team.groups))
        group = team.groups[group_key]
        item = group.popleft()
        if not group:
            del team.groups[group_key]
        team.current = group_key
        bucket.vtime = team.tag
        team.tag += 1.0 / item.weight
        team.count -= 1
        bucket.count -= 1
        self.count -= 1
        if not bucket.count:
            del self.buckets[index]  # its teams' tags go too: a new bucket starts level
        return item

    def promote(self, batch: str) -> int:
        """Move every held line of ``batch`` to the front (the promoted bucket); how many."""
        moved: list[Item[T]] = []
        for index, bucket in list(self.buckets.items()):
            if index == PROMOTED:
                continue
            for team in bucket.teams.values():
                for key, group in list(team.groups.items()):
                    keep = deque(item for item in group if item.batch != batch)
                    if len(keep) == len(group):
                        continue
                    moved += [item for item in group if item.batch == batch]
                    taken = len(group) - len(keep)
                    team.count -= taken
                    bucket.count -= taken
                    self.count -= taken
                    if keep:
                        team.groups[key] = keep
                    else:
                        del team.groups[key]
            if not bucket.count:
                del self.buckets[index]
        for item in moved:
            self.add(item, promoted=True)
        return len(moved)

    @property
    def promoted(self) -> int:
        bucket = self.buckets.get(PROMOTED)
        return bucket.count if bucket is not None else 0


class DeadlineWatch:
    """Which batches are at risk of missing their deadline, and so promoted (see the module doc).

    A batch is at risk when its deadline is less than ``margin_s`` away, or when the lines it
    has left, at the rate its deployment recorded lines over the last ``RATE_WINDOW_S``, would
    take more than ``RISK_SHARE`` of the time left. Once promoted it stays so until its
    lines are done (or it expires): promotion is never taken back mid-way.
    """

    __slots__ = ("margin_s", "promoted", "_batches", "_recorded", "promotions")

    def __init__(self, margin_s: float = PROMOTE_MARGIN_S) -> None:
        self.margin_s = margin_s
        self.promoted: set[str] = set()
        self._batches: dict[str, tuple[float, int, str]] = {}  # batch → (deadline, left, dep.)
        self._recorded: dict[str, deque[float]] = {}  # deployment → recent record times
        self.promotions: dict[str, int] = {}  # deployment → batches promoted there, ever

    def promoted_now(self) -> dict[str, int]:
        """Deployment → batches promoted there whose lines are not all done yet."""
        now: dict[str, int] = {}
        for batch in self.promoted:
            known = self._batches.get(batch)
            if known is not None:
                now[known[2]] = now.get(known[2], 0) + 1
        return now

    def claimed(self, item: Item[T]) -> None:
        if not item.batch or item.left is None:
            return
        known = self._batches.get(item.batch)
        left = item.left if known is None else min(known[1], item.left)
        self._batches[item.batch] = (item.deadline, left, item.deployment)

    def recorded(self, batch: str, deployment: str, wall: float) -> None:
        times = self._recorded.setdefault(deployment, deque(maxlen=RATE_SAMPLES))
        times.append(wall)
        known = self._batches.get(batch)
        if known is not None:
            deadline, left, where = known
            if left <= 1:
                del self._batches[batch]
                self.promoted.discard(batch)
            else:
                self._batches[batch] = (deadline, left - 1, where)

    def rate(self, deployment: str, wall: float) -> float:
        """Lines per second the deployment recorded lately (0: none)."""
        times = self._recorded.get(deployment)
        if not times:
            return 0.0
        recent = [t for t in times if wall - t <= RATE_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return len(recent) / max(wall - min(recent), 1.0)

    def at_risk(self, wall: float) -> list[str]:
        """The batches newly found at risk now (each promoted once)."""
        found = []
        for batch, (deadline, left, deployment) in list(self._batches.items()):
            if deadline <= wall:  # expired: the executor finalises it
                del self._batches[batch]
                self.promoted.discard(batch)
                continue
            if batch in self.promoted:
                continue
            time_left = deadline - wall
            rate = self.rate(deployment, wall)
            if time_left <= self.margin_s or (rate > 0 and left / rate > RISK_SHARE * time_left):
                self.promoted.add(batch)
                self.promotions[deployment] = self.promotions.get(deployment, 0) + 1
                found.append(batch)
        return found


class Dispatcher(Generic[T]):
    """The held lines and the windows of every deployment (see the module doc)."""

    def __init__(self, ceiling: int, *, bucket_s: float = BUCKET_S,
                 window: Callable[[int], Window] | None = None) -> None:
        self.ceiling = ceiling
        self.bucket_s = bucket_s
        self._window_factory = window or (lambda c: Window(c))
        self._queues: dict[str, _Queue[T]] = {}
        self._windows: dict[str, Window] = {}
        self._in_flight: dict[str, int] = {}
        self.maxima = EngineMaxima()
        self.deadlines = DeadlineWatch()
        #: Most lines a deployment runs while it holds promoted lines, whatever its window.
        self.promoted_floor = max(1, math.ceil(ceiling * PROMOTED_SHARE))
        self.just_promoted: list[str] = []  # what the last ``take`` promoted (to be logged)

    # ---- what the executor tells it --------------------------------------------------------

    def add(self, item: Item[T]) -> None:
        self.deadlines.claimed(item)
        queue = self._queues.setdefault(item.deployment, _Queue(self.bucket_s))
        queue.add(item, promoted=item.batch in self.deadlines.promoted)
        self.window(item.deployment)

    def observe(self, deployment: str, load: Load, now: float) -> None:
        self.window(deployment).update(load, self.in_flight(deployment), now)

    def done(self, deployment: str, *, refused: bool = False, now: float = 0.0,
             batch: str = "", wall: float | None = None) -> None:
        """A line sent to ``deployment`` ended; ``refused``: it came back to be retried later.
        ``batch``/``wall`` (epoch seconds): a recorded line of that batch, for the deadline
        watch's rates."""
        self._in_flight[deployment] = max(0, self._in_flight.get(deployment, 0) - 1)
        if refused:
            self.window(deployment).congested(now)
        elif batch and wall is not None:
            self.deadlines.recorded(batch, deployment, wall)

    def take(self, wall: float | None = None, now: float | None = None) -> Iterator[Item[T]]:
        """Every held line its deployment's window lets go now, each counted in flight.

        With ``wall`` (epoch seconds), batches at risk of missing their deadline are promoted
        first (``DeadlineWatch``): their lines go before every other, and while a deployment
        holds some it runs up to ``promoted_floor`` lines even when its window is smaller.
        With ``now`` (the clock the windows are updated with), a window's growth is let go
        as it is released (``Window.allowed_at``); without, all at once."""
        if wall is not None:
            self.just_promoted = self.deadlines.at_risk(wall)
            for batch in self.just_promoted:
                for queue in self._queues.values():
                    queue.promote(batch)
        for name, queue in self._queues.items():
            window = self.window(name)
            allowed = window.allowed if now is None else window.allowed_at(now)
            while queue.count and self._in_flight.get(name, 0) < (
                    max(allowed, self.promoted_floor) if queue.promoted else allowed):
                item = queue.pop()
                if item is None:
                    break
                self._in_flight[name] = self._in_flight.get(name, 0) + 1
                yield item

    # ---- what it may be asked --------------------------------------------------------------

    def window(self, deployment: str) -> Window:
        window = self._windows.get(deployment)
        if window is None:
            window = self._windows[deployment] = self._window_factory(self.ceiling)
        return window

    def in_flight(self, deployment: str) -> int:
        return self._in_flight.get(deployment, 0)

    @property
    def held(self) -> int:
        return sum(q.count for q in self._queues.values())

    def ramping(self, now: float) -> bool:
        """Whether a window holding lines is releasing growth: ``take`` again soon."""
        return any(q.count and self.window(d).ramping(now) for d, q in self._queues.items())

    @property
    def deployments(self) -> list[str]:
        return list(self._windows)

    def room(self) -> int:
        """Lines the windows would take now beyond what is held for them."""
        return sum(max(0, self.window(d).allowed - self.in_flight(d)
                       - (q.count if (q := self._queues.get(d)) else 0))
                   for d in self._windows)
