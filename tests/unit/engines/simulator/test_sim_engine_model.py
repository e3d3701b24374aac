"""The timing model in isolation: step durations, chunked prefill, preemption, caches.

These drive ``Engine._schedule``/``_complete`` directly (no sleeping), so the
numbers are exact.
"""

from __future__ import annotations

from collections import Counter

import pytest

from inferenceops.engines.simulator import load_profile
from inferenceops.engines.simulator.lora import LoraSlots
from inferenceops.engines.simulator.metrics import EngineCounters
from inferenceops.engines.simulator.prefix_cache import PrefixCache, block_hashes
from inferenceops.engines.simulator.scheduler import Engine, SeqState, Sequence
from inferenceops.engines.simulator.text import FillerText, count_tokens, tokenize


def _engine(name: str = "llama-3.1-8b-h100", **overrides: object) -> Engine:
    profile = load_profile(name)
    if overrides:
        profile = profile.override(**overrides)
    return Engine(profile, EngineCounters())


def _seq(prompt_len: int, target: int = 100, **kw: object) -> Sequence:
    return Sequence(prompt_len, [], target, "length", **kw)  # type: ignore[arg-type]


def test_h100_single_stream_timing() -> None:
    engine = _engine()
    engine.waiting.append(_seq(1000))
    batch, prefill_ms = engine._schedule()
    # 1000 tokens at 16k tokens/s = 62.5 ms, plus one 7 ms step with one sequence.
    assert prefill_ms == pytest.approx(62.5 + 7.0 + 0.04)
    engine._complete(batch, 0.0)
    batch, decode_ms = engine._schedule()
    assert batch[0][1] == 1
    assert decode_ms == pytest.approx(7.0 + 0.04 + 0.046 * 1.001)


def test_h100_decode_slows_with_batch() -> None:
    engine = _engine()
    for _ in range(256):
        engine.waiting.append(_seq(1000))
    while engine.waiting:  # admit everything (8192-token prefill budget per step)
        batch, _ = engine._schedule()
        engine._complete(batch, 0.0)
    batch, step_ms = engine._schedule()
    assert len(batch) == 256 and all(n == 1 for _, n in batch)
    assert 25.0 < step_ms < 35.0  # ~9k output tokens/s at batch 256, 1k contexts
    assert engine.gauges().running == 256


def test_chunked_prefill_spreads_a_long_prompt() -> None:
    engine = _engine()
    engine.waiting.append(_seq(20_000, target=1))
    steps = 0
    while engine.running or engine.waiting:
        batch, _ = engine._schedule()
        assert sum(n for _, n in batch) <= 8192
        engine._complete(batch, 0.0)
        steps += 1
    assert steps == 3  # 8192 + 8192 + 3616 tokens, first token out of the last chunk


def test_admission_needs_kv_and_preemption_recomputes() -> None:
    engine = _engine("test-fast", max_model_len=1024, kv_cache_tokens=1280, max_num_seqs=4)
    seqs = [_seq(400, target=200) for _ in range(4)]
    engine.waiting.extend(seqs)
    batch, _ = engine._schedule()
    assert [s for s, _ in batch] == seqs[:3]  # 4 x 26 blocks > 80
    assert engine.free_blocks == 80 - 75
    preempted = None
    for _ in range(200):
        engine._complete(batch, 0.0)
        batch, _ = engine._schedule()
        if seqs[2].state is SeqState.WAITING:
            preempted = seqs[2]
            break
    assert preempted is seqs[2]  # the newest running sequence is the victim
    assert engine.waiting[0] is seqs[2] and preempted.num_computed == 0
    assert engine.counters.preemptions == 1
    generated = preempted.generated
    assert generated > 0
    # Run to the end: everyone finishes, KV is returned, the preempted one kept its tokens.
    while engine.running or engine.waiting:
        engine._complete(batch, 0.0)
        batch, _ = engine._schedule()
    assert all(s.state is SeqState.FINISHED and s.generated == 200 for s in seqs)
    assert engine.free_blocks == engine.total_blocks


def test_prefix_cache_chain_and_lru() -> None:
    a = block_hashes(list(range(64)), 16)
    b = block_hashes([*range(32), 999, *range(33, 64)], 16)
    assert len(a) == 4 and a[:2] == b[:2] and a[2] != b[2] and a[3] != b[3]
    assert block_hashes(list(range(15)), 16) == []
    cache = PrefixCache(capacity_blocks=4)
    cache.insert(a)
    assert cache.match(b) == 2 and cache.match(a) == 4
    cache.insert(b[2:])  # evicts the least recently used blocks
    assert len(cache) == 4
    assert cache.match(a) == 2


def test_lora_slots_lru_and_in_use() -> None:
    slots = LoraSlots(max_loras=2)
    in_use: Counter[str] = Counter()
    assert slots.acquire("a", in_use) is True
    assert slots.acquire("b", in_use) is True
    assert slots.acquire("a", in_use) is False  # resident: no swap, now most recent
    in_use["a"] = 1
    in_use["b"] = 1
    assert not slots.can_run("c", in_use)
    in_use["b"] = 0
    assert slots.can_run("c", in_use)
    assert slots.acquire("c", in_use) is True
    assert slots.resident() == ["a", "c"]


def test_tokenizer_and_filler_agree() -> None:
    assert tokenize("Hello, world!") == tokenize("Hello, world!")
    assert len(tokenize("Hello, world!")) == 4
    filler = FillerText("k")
    text = filler.take(7) + filler.take(50)
    assert count_tokens(text) == 57
    again = FillerText("k")
    assert again.take(57) == text
