"""The batch executor: a supervised service that runs batch lines and finishes batches.

What one round (``step``) does — ``run`` does the same continuously, keeping ``concurrency``
lines in flight and finishing due batches every ``poll_s``:

1. finish the batches that are due (``batch_finish.due_batches``: every line recorded,
   cancelled with nothing left running, or past their window) — ``finalize``; and check
   the batches stored ``validating`` (``batch.validation``: the running service does it in
   a task of its own, so a check of a large file never holds up its lines);
2. claim up to ``claim`` lines under a lease of ``lease_s`` (``repo.batches.claim_lines``:
   ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of executors in any number of
   processes share the queue; SQLite's single writer elsewhere);
3. run them, at most ``concurrency`` at once, through the pipeline (``line_run``) and record
   each outcome under the lease — or put the line back with backoff when it was refused for
   now (limits, overload). While lines run, ``run`` renews its leases every third of
   ``lease_s`` (a heartbeat), so a lease ends only when its executor is gone; a line still
   gets at most ``lease_s * 0.8`` (a stuck line is retried, not held forever).

Delivery is at least once: an executor that dies mid-line loses its lease and the line is
claimed again; the dead executor's answer, should it arrive, is refused by the lease guard,
so the line is written once. Cancelling a batch stops claims at once (only ``in_progress``
batches' lines are claimed); lines already running finish and are kept.

``drain`` runs rounds until nothing is left to do: the ``burst`` mode for tests.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.batch.dispatch import Dispatcher
from inferenceops.batch.dispatch_feed import LoadReader, item_of
from inferenceops.batch.files import FileStore
from inferenceops.batch.finalize import LeaseLost, finalize
from inferenceops.batch.line_run import Outcome, backoff_s, failed, run_line
from inferenceops.batch.service import stored_name
from inferenceops.batch.validation import Validator
from inferenceops.pipeline.kernel import Pipeline
from inferenceops.platform import ApiKey, Identity, Snapshot
from inferenceops.routing.engine_board import EngineBoard
from inferenceops.routing.health import label_value
from inferenceops.store import Database
from inferenceops.store.records import ClaimedLine
from inferenceops.store.repo import batch_finish as finish
from inferenceops.store.repo import batches as repo

log = logging.getLogger("inferenceops.batch")
#: How often the running service updates the dispatch windows (engine-sourced ones only when a
#: new scrape arrived) and looks again for lines it may send.
TICK_S = 0.25
#: How often a window's growth in progress is let go (a line or two at a time).
PACE_S = 0.02
#: How often each deployment's window is logged (info) while lines are dispatched.
TELL_S = 10.0


class BatchExecutor:
    """Claims, runs and records batch lines; finishes batches (see the module doc)."""

    name = "batch-executor"

    def __init__(self, url: str, files: FileStore, pipeline: Pipeline,
                 snapshot: Callable[[], Snapshot], *, lease_s: float = 300.0,
                 concurrency: int = 8, claim: int = 16, poll_s: float = 1.0,
                 max_attempts: int = 8, board: EngineBoard | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._url = url
        self._db: Database | None = None
        self.files = files
        self.pipeline = pipeline
        self._snapshot = snapshot
        self.lease_s = lease_s
        self.concurrency = concurrency
        self.claim = claim
        self.poll_s = poll_s
        self.max_attempts = max_attempts
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._keys: tuple[Identity | None, dict[str, ApiKey]] = (None, {})
        self.ran = 0  # lines run by this executor (a test's and a log's measure)
        self.rounds = 0  # rounds of the running service (looked for due batches and lines)
        # What runs when, per deployment (batch.dispatch): at most ``concurrency`` on any one.
        self.dispatcher: Dispatcher[tuple[ClaimedLine, bytes | None]] = Dispatcher(concurrency)
        self.loads = LoadReader(board, pipeline.admission, self.dispatcher.maxima)
        self._seen_scrape: dict[str, float | None] = {}
        self._told: dict[str, float] = {}  # deployment → when its window was last logged
        self.validator = Validator(self._session, files, snapshot, self._key, self.owner, clock,
                                   lease_s)

    # ---- the service ---------------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to get ready: the store is opened on the first round."""

    async def run(self) -> None:
        """Keep lines in flight as the dispatcher allows (``batch.dispatch``): per deployment
        only what its spare capacity lets go, earliest deadline first, fair between teams,
        prefixes together; a slot that frees is refilled at once, so one slow line never holds
        up the others (``step`` waits for its whole claim; tests use it). Lines still running
        or held when the service is stopped are abandoned to their leases."""
        loop = asyncio.get_running_loop()
        inflight: dict[asyncio.Task[bool], tuple[str, str]] = {}  # task → deployment, batch
        gate = asyncio.Semaphore(self.concurrency)
        dispatch = self.dispatcher
        checked = ticked = 0.0
        renewed = loop.time()
        validating: asyncio.Task[int] | None = None
        try:
            while True:
                loop_now = loop.time()
                if loop_now - checked >= self.poll_s:
                    checked = loop_now
                    await self._finish_due()
                    validating = self._validate_beside(validating)
                if (inflight or dispatch.held) and loop_now - renewed >= self.lease_s / 3:
                    renewed = loop_now
                    async with self._session(True) as s:
                        await repo.renew_leases(s, self.owner, self.clock(), self.lease_s)
                if loop_now - ticked >= TICK_S:
                    ticked = loop_now
                    self._observe(loop_now)
                want = min(self.claim - dispatch.held,
                           self.concurrency - len(inflight) - dispatch.held)
                if want > 0 and (dispatch.room() > 0 or not dispatch.held):
                    await self._hold(await self._claim(want))
                for item in dispatch.take(time.time(), loop_now):
                    line, raw = item.payload
                    inflight[asyncio.create_task(self._run_one(line, gate, raw))] = \
                        (item.deployment, item.batch)
                for batch in dispatch.just_promoted:
                    log.info("batch %s promoted: its deadline is at risk (its lines go first)",
                             batch)
                dispatch.just_promoted = []
                self.rounds += 1
                # A window releasing its growth line by line (``dispatch.RAMP_S``) is looked at
                # again within PACE_S, whether or not a line ends meanwhile.
                wait_s = PACE_S if dispatch.ramping(loop.time()) else min(self.poll_s, TICK_S)
                if not inflight:
                    await asyncio.sleep(wait_s if dispatch.held else self.poll_s)
                    continue
                done, _ = await asyncio.wait(inflight, timeout=wait_s,
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    deployment, batch = inflight.pop(task)
                    refused = False
                    if (error := task.exception()) is not None:  # its lease returns the line
                        log.error("batch line failed in the executor", exc_info=error)
                        batch = ""
                    else:
                        refused = task.result()
                    dispatch.done(deployment, refused=refused, now=loop.time(), batch=batch,
                                  wall=time.time())
        finally:
            tasks: list[asyncio.Task[bool] | asyncio.Task[int]] = [*inflight]
            if validating is not None:
                tasks.append(validating)
            for pending in tasks:
                pending.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _validate_beside(self, task: asyncio.Task[int] | None) -> asyncio.Task[int]:
        """The validating batches' check as a task beside the lines (one at a time): a
        50,000-line file takes seconds to check and write, which the loop must not wait on."""
        if task is not None and not task.done():
            return task
        if task is not None and not task.cancelled() and (error := task.exception()) is not None:
            log.error("batch validation failed (the batch is checked again)", exc_info=error)
        return asyncio.create_task(self.validator.due())

    async def _hold(self, lines: list[ClaimedLine]) -> None:
        """Give claimed lines to the dispatcher, with their bytes (read in one thread hop)."""
        if not lines:
            return
        raws = await asyncio.to_thread(_read_all, self.files, lines)
        snapshot = self._snapshot()
        for line, raw in zip(lines, raws, strict=True):
            self.dispatcher.add(item_of(line, raw or b"", self._key(snapshot, line.key_id),
                                        snapshot, (line, raw)))

    def _observe(self, now: float) -> None:
        """Update every deployment's window from its load: engine-sourced ones once per new
        scrape (between scrapes the engines' numbers have not moved), the others every tick."""
        deployments = self._snapshot().catalog.deployments
        for name in self.dispatcher.deployments:
            deployment = deployments.get(name)
            load = self.loads.load(deployment)
            if load.source == "engine" and deployment is not None:
                at = self.loads.scraped_at(deployment)
                if self._seen_scrape.get(name) == at:
                    continue
                self._seen_scrape[name] = at
            self.dispatcher.observe(name, load, now)
            if now - self._told.get(name, -math.inf) >= TELL_S:
                self._told[name] = now
                log.info("batch dispatch %s: window %d, in flight %d, held %d (%s load: busy "
                         "%.0f of %s, queued %.0f)", name or "(no deployment)",
                         self.dispatcher.window(name).allowed, self.dispatcher.in_flight(name),
                         self.dispatcher.held, load.source, load.busy,
                         "?" if load.slots is None else f"{load.slots:.0f}", load.queued)

    def render_metrics(self) -> str:
        """Promotions of batches whose deadline was at risk (``batch.dispatch.DeadlineWatch``),
        by deployment, for the ``/metrics`` of a process that runs this executor."""
        watch = self.dispatcher.deadlines
        lines = ["# HELP inferenceops_batch_promoted_total Batches this process's executor "
                 "promoted because their deadline was at risk, by deployment.",
                 "# TYPE inferenceops_batch_promoted_total counter"]
        lines += [f'inferenceops_batch_promoted_total{{deployment="{label_value(d)}"}} {n}'
                  for d, n in sorted(watch.promotions.items())]
        lines += ["# HELP inferenceops_batch_promoted Batches promoted now (their lines go "
                  "first until done), by deployment.", "# TYPE inferenceops_batch_promoted gauge"]
        lines += [f'inferenceops_batch_promoted{{deployment="{label_value(d)}"}} {n}'
                  for d, n in sorted(watch.promoted_now().items())]
        return "\n".join(lines) + "\n"

    async def stop(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def drain(self) -> None:
        """Rounds until there is nothing left to do (lines waiting for a retry excepted)."""
        while await self.step():
            pass

    # ---- one round ---------------------------------------------------------------------------

    @asynccontextmanager
    async def _session(self, write: bool) -> AsyncIterator[AsyncSession]:
        if self._db is None:
            self._db = Database(self._url, pool_size=self.concurrency + 2)
        context = self._db.transaction("batch executor") if write else self._db.read("batches")
        async with context as session:
            yield session

    async def step(self) -> int:
        """One round; how many batches finished and lines ran (0: idle)."""
        done = await self._finish_due()
        done += await self.validator.due()
        lines = await self._claim(self.claim)
        if lines:
            gate = asyncio.Semaphore(self.concurrency)
            await asyncio.gather(*(self._run_one(line, gate) for line in lines))
        return done + len(lines)

    async def _finish_due(self) -> int:
        """Finish every batch that is due; how many this executor finished."""
        done = 0
        async with self._session(False) as s:
            due = await finish.due_batches(s, self.clock())
        for batch_id, status, target in due:
            try:
                if await finalize(self._session, self.files, batch_id, self.owner, self.clock(),
                                  self.lease_s, status, target):
                    log.info("batch %s is %s", batch_id, target)
                    done += 1
            except LeaseLost:
                log.warning("batch %s: another executor took it over while it was finalised",
                            batch_id)
        return done

    async def _claim(self, count: int) -> list[ClaimedLine]:
        """Claim ``count`` lines; batches due in the same deadline bucket share it by weight."""
        policy = self._snapshot().policy
        async with self._session(True) as s:
            return await repo.claim_lines(s, self.owner, self.clock(), self.lease_s, count,
                                          share_within=timedelta(seconds=self.dispatcher.bucket_s),
                                          weight=lambda team: float(policy.weight(team)))

    def _key(self, snapshot: Snapshot, key_id: str) -> ApiKey | None:
        """The key by id in this snapshot (indexed once per identity; a revoked key is absent)."""
        identity, index = self._keys
        if identity is not snapshot.identity:
            index = {k.id: k for k in snapshot.identity.keys()}  # noqa: SIM118 (not a dict)
            self._keys = (snapshot.identity, index)
        return index.get(key_id)

    async def _run_one(self, line: ClaimedLine, gate: asyncio.Semaphore,
                       raw: bytes | None = None) -> bool:
        """Run and record ``line``; True when it was put back to retry (refused for now)."""
        async with gate:
            outcome = await self._outcome(line, raw)
            self.ran += 1
            async with self._session(True) as s:
                if outcome.retry:
                    later = self.clock() + timedelta(seconds=backoff_s(line.attempts))
                    kept = await repo.retry_line(s, line.id, self.owner, later)
                else:
                    kept = await repo.record_line(s, line.id, self.owner, ok=outcome.ok,
                                                  status_code=outcome.status_code,
                                                  result=outcome.line.decode(),
                                                  usage=outcome.usage)
            if outcome.retry and outcome.usage is not None:
                self.pipeline.outbox.put(outcome.usage)  # a refused attempt: it used nothing
            if not kept:
                log.info("batch %s line %d: the lease ended before it was recorded; another "
                         "executor has it (and bills it)", line.batch_id, line.line)
            return outcome.retry

    async def _outcome(self, line: ClaimedLine, raw: bytes | None = None) -> Outcome:
        snapshot = self._snapshot()
        key = self._key(snapshot, line.key_id)
        if key is None:
            return failed(line, "invalid_api_key", "The API key that created this batch was "
                          "revoked.")
        try:
            if raw is None:
                raw = await asyncio.to_thread(_read, self.files, line)
        except FileNotFoundError:
            return failed(line, "input_file_missing", f"The input file {line.input_file_id} is "
                          "gone.")
        return await run_line(self.pipeline, snapshot, key, line, raw,
                              max_attempts=self.max_attempts, timeout_s=self.lease_s * 0.8)


def _read_all(files: FileStore, lines: list[ClaimedLine]) -> list[bytes | None]:
    """Each line's bytes (None: its file is gone; running it says so)."""
    out: list[bytes | None] = []
    for line in lines:
        try:
            out.append(_read(files, line))
        except FileNotFoundError:
            out.append(None)
    return out


def _read(files: FileStore, line: ClaimedLine) -> bytes:
    with files.path_of(stored_name(line.input_file_id)).open("rb") as handle:
        handle.seek(line.byte_offset)
        return handle.read(line.byte_length)
