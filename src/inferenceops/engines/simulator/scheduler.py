"""The simulator's timing model: one engine loop doing continuous batching over a KV budget.

The model, in the order one engine step runs (a simplified vLLM v1 scheduler):

1. **Running first, oldest first.** Every running sequence gets its next
   tokens computed: a decoding sequence 1 token, a sequence still prefilling a
   chunk of its prompt. Chunks share a per-step token budget
   (``max_num_batched_tokens``), so a long prompt is prefilled over several
   steps while others keep decoding (chunked prefill).
2. **KV blocks.** A sequence holds ``ceil(len / block_size)`` blocks of a
   ``kv_cache_tokens`` budget, ``len`` = prompt + generated tokens. When a
   decoding sequence needs a new block and none is free, the *newest* running
   sequence is preempted: its blocks are freed and it goes back to the head
   of the waiting queue, to be recomputed (prompt + already generated tokens)
   when readmitted — vLLM's recompute preemption.
   Under ``scheduling_policy: priority`` (vLLM's ``--scheduling-policy
   priority``) the victim is instead the running sequence of the lowest
   priority (highest ``priority`` value), newest among equals.
3. **Admission, FIFO.** If nothing was preempted, waiting sequences are
   admitted in arrival order (under ``priority``: by (priority, arrival), a
   preempted sequence going back to its place by that key) while fewer than ``max_num_seqs`` run, budget
   remains and ``ceil(len / block_size) + 1`` blocks are free (the first that
   does not fit stops admission: head-of-line, like vLLM FCFS). A sequence on
   a LoRA adapter that cannot get a slot is skipped and keeps its place.
   On admission the prefix cache is queried: leading cached blocks are not
   prefilled again (at least one token always is).
4. **Step time** = ``decode_step_ms_base + decode_step_ms_per_seq × scheduled
   + decode_step_ms_per_1k_context_tokens × context tokens of decoders / 1000
   + prefill tokens / prefill_tokens_per_s + lora_load_ms × adapters swapped in``,
   times ``time_scale``. The loop sleeps that long (against a running deadline,
   so small sleep overshoots do not accumulate), then applies the results:
   every sequence whose prompt is fully computed emits one token (the first
   token comes out of the step that finishes the prefill, so TTFT = queueing +
   prefill); sequences reaching their target finish and free their blocks.

Handlers talk to the engine only through :meth:`Engine.submit` and
:meth:`Engine.abort`, and wait on ``Sequence.event``. The loop starts lazily on
the first submit, one per engine, and is rebuilt if used from another event
loop. No I/O here beyond asyncio sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import Counter, deque

from .lora import LoraSlots
from .metrics import EngineCounters, Gauges
from .prefix_cache import PrefixCache
from .profile import SimulatorProfile

__all__ = ["Engine", "SeqState", "Sequence"]

_log = logging.getLogger(__name__)

# When the loop falls this far behind its deadline (a stalled event loop), it
# resets the clock instead of racing through steps to "catch up".
_MAX_LAG_S = 0.02


class SeqState(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"


class Sequence:
    """One request's progress through the engine; read by its handler, written by the loop."""

    __slots__ = (
        "prompt_len",
        "hashes",
        "target",
        "finish_reason",
        "lora",
        "stream",
        "generated",
        "num_computed",
        "blocks",
        "state",
        "cached_tokens",
        "admitted",
        "prompt_done",
        "arrival",
        "first_token_at",
        "failed",
        "event",
        "priority",
    )

    def __init__(
        self,
        prompt_len: int,
        hashes: list[int],
        target: int,
        finish_reason: str,
        *,
        lora: str | None = None,
        stream: bool = False,
        priority: int = 0,
    ) -> None:
        self.prompt_len = prompt_len
        self.hashes = hashes
        self.target = target  # tokens to generate; 0 for embeddings
        self.finish_reason = finish_reason
        self.lora = lora
        self.stream = stream  # notify per step, not only at the end
        self.generated = 0
        self.num_computed = 0
        self.blocks = 0
        self.state = SeqState.WAITING
        self.cached_tokens = 0
        self.admitted = False
        self.prompt_done = False
        self.arrival = 0.0
        self.first_token_at: float | None = None
        self.failed = False  # aborted because the engine loop crashed
        self.event = asyncio.Event()
        self.priority = priority  # lower first, under priority scheduling

    @property
    def done(self) -> bool:
        return self.state is SeqState.FINISHED or self.state is SeqState.ABORTED


class Engine:
    """The simulated engine state and its single stepping loop."""

    def __init__(self, profile: SimulatorProfile, counters: EngineCounters) -> None:
        self.profile = profile
        self.counters = counters
        self.lora = LoraSlots(profile.max_loras, profile.lora_adapters)
        self.total_blocks = profile.kv_cache_tokens // profile.block_size
        self.by_priority = profile.scheduling_policy == "priority"
        self._reset()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _reset(self) -> None:
        self.running: list[Sequence] = []
        self.waiting: deque[Sequence] = deque()
        self.free_blocks = self.total_blocks
        self.prefix = PrefixCache(self.profile.prefix_cache_blocks)
        self._lora_in_use: Counter[str] = Counter()
        self._wakeup = asyncio.Event()

    # ---- handler-facing API -------------------------------------------------

    def submit(self, seq: Sequence) -> None:
        """Queue ``seq``; starts the loop if needed. Wait on ``seq.event`` afterwards."""
        loop = self._ensure_loop()
        seq.arrival = loop.time()
        self._enqueue(seq)
        self._wakeup.set()

    def _enqueue(self, seq: Sequence) -> None:
        """Into the waiting queue: at the end (FCFS), or by (priority, arrival)."""
        waiting = self.waiting
        if not self.by_priority or not waiting or (
                (waiting[-1].priority, waiting[-1].arrival) <= (seq.priority, seq.arrival)):
            waiting.append(seq)
            return
        at = len(waiting)
        while at > 0 and (waiting[at - 1].priority, waiting[at - 1].arrival) > (seq.priority,
                                                                             seq.arrival):
            at -= 1
        waiting.insert(at, seq)

    def abort(self, seq: Sequence) -> None:
        """Drop ``seq`` wherever it is, freeing its slot and KV blocks. Idempotent."""
        if seq.state is SeqState.WAITING:
            with contextlib.suppress(ValueError):
                self.waiting.remove(seq)
        elif seq.state is SeqState.RUNNING:
            with contextlib.suppress(ValueError):
                self.running.remove(seq)
            self._release(seq)
        else:
            return
        seq.state = SeqState.ABORTED
        seq.event.set()
        self._wakeup.set()

    def gauges(self) -> Gauges:
        used = self.total_blocks - self.free_blocks
        return Gauges(
            running=len(self.running),
            waiting=len(self.waiting),
            kv_usage=used / self.total_blocks,
            running_loras=tuple(sorted({s.lora for s in self.running if s.lora})),
            waiting_loras=tuple(sorted({s.lora for s in self.waiting if s.lora})),
            max_lora=self.profile.max_loras,
        )

    async def close(self) -> None:
        """Stop the loop (lifespan shutdown / tests); pending sequences are aborted."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for seq in [*self.running, *self.waiting]:
            self.abort(seq)

    # ---- the loop -----------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # First use, or reused from a new event loop (tests): old state is dead.
            self._reset()
            self._loop, self._task = loop, None
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="inferenceops-simulator-engine")
        return loop

    async def _run(self) -> None:
        try:
            await self._steps()
        except Exception:  # the loop's supervisor: fail requests rather than hang them
            _log.exception("simulator engine loop crashed")
            for seq in [*self.running, *self.waiting]:
                seq.failed = True
                self.abort(seq)
            raise

    async def _steps(self) -> None:
        loop = asyncio.get_running_loop()
        scale = self.profile.time_scale
        deadline = loop.time()
        while True:
            if not self.running and not self.waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
                deadline = loop.time()
                continue
            batch, step_ms = self._schedule()
            if not batch:  # only LoRA-blocked waiters and nothing running: wait for a change
                self._wakeup.clear()
                await self._wakeup.wait()
                deadline = loop.time()
                continue
            now = loop.time()
            deadline = max(deadline + step_ms * scale / 1000.0, now - _MAX_LAG_S)
            delay = deadline - now
            await asyncio.sleep(delay if delay > 0 else 0)
            self._complete(batch, loop.time())

    def _schedule(self) -> tuple[list[tuple[Sequence, int]], float]:
        """Pick this step's work (mutating KV/queues); return it and its duration in ms."""
        p = self.profile
        bs = p.block_size
        budget = p.max_num_batched_tokens
        batch: list[tuple[Sequence, int]] = []
        prefill_tokens = 0
        context_tokens = 0
        preempted = False
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            total = seq.prompt_len + seq.generated
            n_new = min(total - seq.num_computed, budget)
            need = -(-(seq.num_computed + n_new) // bs) - seq.blocks
            while need > self.free_blocks:
                victim = self._victim()
                at = self.running.index(victim)
                self._preempt(victim)
                preempted = True
                if at < i:  # already scheduled this step (priority only): take it back out
                    i -= 1
                    for k, (done, n) in enumerate(batch):
                        if done is victim:
                            del batch[k]
                            budget += n
                            if n == 1:
                                context_tokens -= victim.prompt_len + victim.generated
                            else:
                                prefill_tokens -= n
                            break
                if victim is seq:
                    break
            if seq.state is not SeqState.RUNNING:
                continue  # preempted itself: running[i] is now the one after it, if any
            if need > 0:
                self.free_blocks -= need
                seq.blocks += need
            batch.append((seq, n_new))
            budget -= n_new
            if n_new == 1:
                context_tokens += total
            else:
                prefill_tokens += n_new
            i += 1
        lora_loads = 0
        if not preempted:
            prefill, lora_loads = self._admit(batch, budget)
            prefill_tokens += prefill
        step_ms = (
            p.decode_step_ms_base
            + p.decode_step_ms_per_seq * len(batch)
            + p.decode_step_ms_per_1k_context_tokens * context_tokens / 1000.0
            + prefill_tokens * 1000.0 / p.prefill_tokens_per_s
            + p.lora_load_ms * lora_loads
        )
        return batch, step_ms

    def _admit(self, batch: list[tuple[Sequence, int]], budget: int) -> tuple[int, int]:
        """Move waiting sequences to running (FIFO); return (prefill tokens, LoRA swaps)."""
        p = self.profile
        bs = p.block_size
        prefill_tokens = 0
        lora_loads = 0
        skipped: list[Sequence] = []
        while self.waiting and budget > 0 and len(self.running) < p.max_num_seqs:
            seq = self.waiting[0]
            if seq.lora is not None and not self.lora.can_run(seq.lora, self._lora_in_use):
                skipped.append(self.waiting.popleft())
                continue
            total = seq.prompt_len + seq.generated
            blocks = -(-total // bs)
            if blocks + 1 > self.free_blocks:
                break
            self.waiting.popleft()
            if seq.lora is not None:
                lora_loads += self.lora.acquire(seq.lora, self._lora_in_use)
                self._lora_in_use[seq.lora] += 1
            hit = min(self.prefix.match(seq.hashes) * bs, total - 1)
            self.counters.prefix_queries += total
            self.counters.prefix_hits += hit
            if not seq.admitted:
                seq.admitted = True
                seq.cached_tokens = hit
            seq.num_computed = hit
            seq.blocks = blocks
            self.free_blocks -= blocks
            seq.state = SeqState.RUNNING
            self.running.append(seq)
            n_new = min(total - hit, budget)
            batch.append((seq, n_new))
            budget -= n_new
            prefill_tokens += n_new
        self.waiting.extendleft(reversed(skipped))
        return prefill_tokens, lora_loads

    def _complete(self, batch: list[tuple[Sequence, int]], now: float) -> None:
        """Apply a finished step: advance computed tokens, emit tokens, finish sequences."""
        counters = self.counters
        finished = False
        for seq, n_new in batch:
            if seq.state is not SeqState.RUNNING:
                continue  # aborted or preempted while the step ran
            seq.num_computed += n_new
            if seq.num_computed < seq.prompt_len + seq.generated:
                continue  # a prefill chunk; the prompt is not done yet
            if not seq.prompt_done:
                seq.prompt_done = True
                self.prefix.insert(seq.hashes)
                counters.prompt_tokens += seq.prompt_len
            if seq.generated < seq.target:
                seq.generated += 1
                counters.generation_tokens += 1
                if seq.first_token_at is None:
                    seq.first_token_at = now
                    counters.ttft.observe(now - seq.arrival)
            if seq.generated >= seq.target:
                self._finish(seq, now)
                finished = True
            elif seq.stream:
                seq.event.set()
        if finished:
            self.running = [s for s in self.running if s.state is SeqState.RUNNING]

    def _finish(self, seq: Sequence, now: float) -> None:
        self._release(seq)
        seq.state = SeqState.FINISHED
        self.counters.success[seq.finish_reason] = self.counters.success.get(seq.finish_reason, 0) + 1
        self.counters.e2e.observe(now - seq.arrival)
        seq.event.set()

    def _victim(self) -> Sequence:
        """Whom to preempt for KV blocks: the newest (FCFS), or the lowest priority, newest
        among equals (priority scheduling, as vLLM's)."""
        if not self.by_priority:
            return self.running[-1]
        return max(self.running, key=lambda s: (s.priority, s.arrival))

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self._release(seq)
        seq.num_computed = 0
        seq.state = SeqState.WAITING
        if self.by_priority:
            self._enqueue(seq)  # back to its place by (priority, arrival)
        else:
            self.waiting.appendleft(seq)
        self.counters.preemptions += 1

    def _release(self, seq: Sequence) -> None:
        self.free_blocks += seq.blocks
        seq.blocks = 0
        if seq.lora is not None and seq.state is SeqState.RUNNING:
            self._lora_in_use[seq.lora] -= 1
