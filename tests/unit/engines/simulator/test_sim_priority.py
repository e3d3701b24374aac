"""Priority scheduling in the simulator, as vLLM's ``--scheduling-policy priority``: a request's
``priority`` (lower first) orders the waiting queue and picks whom KV shortage preempts; under
the default FCFS policy any priority but 0 is refused, as vLLM refuses it."""

from __future__ import annotations

import asyncio

COMPLETIONS = "/v1/completions"


async def test_fcfs_refuses_a_priority_other_than_zero_as_vllm_does(make_client) -> None:
    client = await make_client()
    ok = await client.post(COMPLETIONS, {"prompt": "hi", "max_tokens": 2, "priority": 0})
    assert ok.status == 200
    refused = await client.post(COMPLETIONS, {"prompt": "hi", "max_tokens": 2, "priority": 1})
    assert refused.status == 400
    assert "Priority scheduling is not enabled" in refused.json()["error"]["message"]
    bad = await client.post(COMPLETIONS, {"prompt": "hi", "max_tokens": 2, "priority": "high"})
    assert bad.status == 400 and bad.json()["error"]["param"] == "priority"


async def _finish_order(client, requests: list[tuple[str, int]], **extra) -> list[str]:
    """Send ``(name, priority)`` one after another (distinct arrivals); names in finish order."""
    order: list[str] = []

    async def one(name: str, priority: int) -> None:
        resp = await client.post(COMPLETIONS, {"prompt": f"request {name}", "priority": priority,
                                               "ignore_eos": True, **extra})
        assert resp.status == 200, resp.json()
        order.append(name)

    tasks = []
    for name, priority in requests:
        tasks.append(asyncio.ensure_future(one(name, priority)))
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    return order


async def test_a_waiting_high_priority_request_goes_before_earlier_low_priority_ones(
        make_client) -> None:
    client = await make_client(scheduling_policy="priority", max_num_seqs=1,
                               decode_step_ms_base=5.0)
    order = await _finish_order(client, [("low-running", 1), ("low-1", 1), ("low-2", 1),
                                         ("high", 0)], max_tokens=40)
    assert order == ["low-running", "high", "low-1", "low-2"]  # a running one is not stopped


async def test_under_fcfs_the_same_requests_run_in_arrival_order(make_client) -> None:
    client = await make_client(max_num_seqs=1, decode_step_ms_base=5.0)
    order = await _finish_order(client, [("a", 0), ("b", 0), ("c", 0), ("d", 0)], max_tokens=40)
    assert order == ["a", "b", "c", "d"]


async def test_kv_shortage_preempts_the_lowest_priority_sequence_not_the_newest(
        make_client, words) -> None:
    # 80 blocks of KV; three 400-token prompts take 25 blocks each (+1 spare to be admitted);
    # decoding 60 tokens each needs 29 blocks a piece: one must be preempted. FCFS takes the
    # newest; priority takes the low-priority one, although it is the oldest.
    shape = {"max_model_len": 1024, "kv_cache_tokens": 1280, "max_num_seqs": 4,
             "decode_step_ms_base": 1.0, "decode_step_ms_per_seq": 0.0}
    requests = [("low", 1), ("high-1", 0), ("high-2", 0)]

    async def run(policy: str) -> tuple[list[str], float]:
        client = await make_client(scheduling_policy=policy, **shape)
        order: list[str] = []

        async def one(name: str, priority: int) -> None:
            body = {"prompt": words(400, f"p{len(name)}{name[-1]}x"), "max_tokens": 60, "ignore_eos": True,
                    "priority": priority if policy == "priority" else 0}
            resp = await client.post(COMPLETIONS, body)
            assert resp.status == 200, resp.json()
            order.append(name)

        tasks = []
        for name, priority in requests:
            tasks.append(asyncio.ensure_future(one(name, priority)))
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
        return order, (await client.metrics())["vllm:num_preemptions_total"]

    by_priority, preempted = await run("priority")
    assert preempted > 0 and by_priority[-1] == "low"
    fcfs, preempted = await run("fcfs")
    assert preempted > 0 and fcfs[-1] == "high-2"
