"""The simulator's timing and capacity behaviour: queueing, KV, prefix cache, LoRA, disconnects.

Timing assertions compare relative quantities with wide margins; waits poll
with deadlines.
"""

from __future__ import annotations

import asyncio
import time

import orjson

COMPLETIONS = "/v1/completions"


async def _timed(coro) -> tuple[float, object]:
    start = time.perf_counter()
    result = await coro
    return time.perf_counter() - start, result


async def test_queueing_when_batch_is_full(make_client) -> None:
    client = await make_client(max_num_seqs=2)
    bodies = [{"prompt": f"request number {i}", "max_tokens": 20} for i in range(6)]
    finished: list[int] = []

    async def one(i: int) -> float:
        elapsed, resp = await _timed(client.post(COMPLETIONS, bodies[i]))
        assert resp.status == 200  # type: ignore[attr-defined]
        finished.append(i)
        return elapsed

    tasks = [asyncio.ensure_future(one(i)) for i in range(6)]
    seen = await client.wait_for(lambda m: m["vllm:num_requests_waiting"] > 0)
    assert seen["vllm:num_requests_running"] <= 2
    latencies = await asyncio.gather(*tasks)
    # Three FIFO waves of two: each wave starts only when the previous one is done,
    # so completion order is by wave and the last wave waited for two earlier ones.
    assert set(finished[:2]) == {0, 1} and set(finished[2:4]) == {2, 3}
    assert min(latencies[4:]) > max(latencies[:2])
    assert min(latencies[4:]) > 1.3 * max(latencies[:2])  # ~3x in theory; wide margin
    final = await client.metrics()
    assert final["vllm:num_requests_waiting"] == 0 and final["vllm:num_requests_running"] == 0
    assert final["vllm:request_success_total"] == 6
    assert final["vllm:generation_tokens_total"] == 120


async def test_prefix_cache_hits_and_faster_first_token(make_client, words) -> None:
    # A slow prefill (1800 tokens = 180 ms) so the cache's effect dwarfs scheduling noise.
    client = await make_client(prefill_tokens_per_s=10_000)
    body = {
        "prompt": words(1800),
        "max_tokens": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    async def ttft_and_usage() -> tuple[float, dict]:
        stream = client.stream(COMPLETIONS, body)
        events = [e async for e in stream.events()]
        return stream.arrivals[0], orjson.loads(events[-2])["usage"]

    cold_ttft, cold_usage = await ttft_and_usage()
    before = await client.metrics()
    warm_ttft, warm_usage = await ttft_and_usage()
    after = await client.metrics()
    assert cold_usage["prompt_tokens_details"]["cached_tokens"] == 0
    # 1800 tokens = 112 full blocks of 16 → 1792 cached tokens.
    assert warm_usage["prompt_tokens_details"]["cached_tokens"] == 1792
    delta = {k: after[k] - before[k] for k in after}
    assert delta["vllm:prefix_cache_hits_total"] == 1792
    assert delta["vllm:prefix_cache_queries_total"] == 1800
    # Cold prefill is 180 ms of simulated work; warm is ~1 ms.
    assert warm_ttft < cold_ttft * 0.5


async def test_kv_budget_limits_concurrency_and_preempts(make_client, words) -> None:
    # 80 blocks of KV; each 400-token prompt needs 25 blocks (+1 spare to be admitted),
    # so only 3 of 4 fit although max_num_seqs is 4, and decoding growth forces preemption.
    client = await make_client(
        max_model_len=1024,
        kv_cache_tokens=1280,
        max_num_seqs=4,
        decode_step_ms_base=1.0,
        decode_step_ms_per_seq=0.0,
    )
    bodies = [{"prompt": words(400, f"p{i}x"), "max_tokens": 60, "ignore_eos": True} for i in range(4)]
    tasks = [asyncio.ensure_future(client.post(COMPLETIONS, b)) for b in bodies]
    max_running = 0
    saw_waiting = False
    while not all(t.done() for t in tasks):
        m = await client.metrics()
        max_running = max(max_running, int(m["vllm:num_requests_running"]))
        saw_waiting = saw_waiting or m["vllm:num_requests_waiting"] > 0
        assert m["vllm:kv_cache_usage_perc"] <= 1.0
        await asyncio.sleep(0.001)
    results = [t.result().json() for t in tasks]
    assert all(r["usage"]["completion_tokens"] == 60 for r in results)
    assert max_running == 3 and saw_waiting
    final = await client.metrics()
    assert final["vllm:num_preemptions_total"] > 0
    assert final["vllm:kv_cache_usage_perc"] == 0 and final["vllm:num_requests_running"] == 0


async def test_disconnect_mid_stream_frees_slot(make_client) -> None:
    client = await make_client()
    stream = client.stream(
        COMPLETIONS,
        {"prompt": "long story", "max_tokens": 1500, "ignore_eos": True, "stream": True},
    )
    seen = 0
    async for _ in stream.events():
        seen += 1
        if seen == 3:
            break
    assert (await client.metrics())["vllm:num_requests_running"] == 1
    stream.disconnect()
    final = await client.wait_for(lambda m: m["vllm:num_requests_running"] == 0)
    assert final["vllm:kv_cache_usage_perc"] == 0
    await asyncio.wait_for(stream.task, 5)
    assert final["vllm:generation_tokens_total"] < 1500


async def test_failed_send_frees_slot(make_client) -> None:
    client = await make_client()
    stream = client.stream(
        COMPLETIONS,
        {"prompt": "x", "max_tokens": 1500, "ignore_eos": True, "stream": True},
        fail_send_after=2,
    )
    await asyncio.wait_for(stream.task, 5)  # the app returns once send fails
    final = await client.wait_for(lambda m: m["vllm:num_requests_running"] == 0)
    assert final["vllm:kv_cache_usage_perc"] == 0


async def test_disconnect_while_waiting_leaves_queue(make_client) -> None:
    client = await make_client(max_num_seqs=1)
    blocker = asyncio.ensure_future(client.post(COMPLETIONS, {"prompt": "a", "max_tokens": 60}))
    stream = client.stream(COMPLETIONS, {"prompt": "b", "max_tokens": 10, "stream": True})
    await client.wait_for(lambda m: m["vllm:num_requests_waiting"] == 1)
    stream.disconnect()
    await client.wait_for(lambda m: m["vllm:num_requests_waiting"] == 0)
    assert (await blocker).status == 200
    final = await client.wait_for(lambda m: m["vllm:num_requests_running"] == 0)
    assert final["vllm:request_success_total"] == 1


async def test_lora_load_list_use_unload(make_client) -> None:
    client = await make_client()
    ok = await client.post("/v1/load_lora_adapter", {"lora_name": "sql", "lora_path": "/a/sql"})
    assert ok.status == 200 and "sql" in ok.body.decode()
    again = await client.post("/v1/load_lora_adapter", {"lora_name": "sql", "lora_path": "/a"})
    assert again.status == 400
    models = (await client.get("/v1/models")).json()["data"]
    assert {"id": "sql", "parent": "sim-model", "root": "/a/sql"}.items() <= models[1].items()
    resp = await client.post(COMPLETIONS, {"model": "sql", "prompt": "select", "max_tokens": 3})
    assert resp.status == 200 and resp.json()["model"] == "sql"
    assert (await client.post("/v1/unload_lora_adapter", {"lora_name": "sql"})).status == 200
    gone = await client.post(COMPLETIONS, {"model": "sql", "prompt": "select"})
    assert gone.status == 404
    assert len((await client.get("/v1/models")).json()["data"]) == 1


async def test_lora_swap_costs_time_and_slots_make_requests_wait(make_client) -> None:
    client = await make_client(max_loras=1, lora_load_ms=100)
    for name in ("a", "b"):
        await client.post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": f"/{name}"})

    def body(model: str) -> dict:
        return {"model": model, "prompt": "hi", "max_tokens": 5}

    cold, _ = await _timed(client.post(COMPLETIONS, body("a")))
    warm, _ = await _timed(client.post(COMPLETIONS, body("a")))
    assert warm < cold * 0.5  # the first paid a 100 ms swap-in, the second none
    # One slot: "b" cannot start while "a" is running, so it waits.
    long_a = asyncio.ensure_future(client.post(COMPLETIONS, {**body("a"), "max_tokens": 200}))
    await client.wait_for(lambda m: m["vllm:num_requests_running"] == 1)
    b_task = asyncio.ensure_future(client.post(COMPLETIONS, body("b")))
    seen = await client.wait_for(lambda m: m["vllm:num_requests_waiting"] == 1)
    text = await client.metrics_text()
    assert seen["vllm:num_requests_running"] == 1
    assert 'running_lora_adapters="a",waiting_lora_adapters="b",max_lora="1"' in text
    assert (await long_a).status == 200 and (await b_task).status == 200
