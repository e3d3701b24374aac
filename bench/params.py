"""What the edge checks of request parameters cost: ``python -m bench.params``.

CPU (``process_time``) per call of ``parse_inference`` — the data plane's parse
stage as the handler runs it — on the same bodies with the checks on (as
shipped) and off (``check_params`` and ``check_depth`` replaced by no-ops, i.e.
what parsing cost before them). Each round times both back to back, in ABBA
order, so noise from the shared machine falls on both alike; "added" is the
median over ROUNDS rounds of the per-round difference (steadier than the
difference of medians), the other columns medians of PER_ROUND-call rounds.
``orjson.loads`` alone is measured too, as the floor.

Bodies: a typical chat request with a handful of the checked fields (the
target's case), one with a tool whose parameters are a nested JSON Schema and a
``response_format``, a completions and an embeddings request, and a chat body
with more brackets than the depth limit (the only case that pays for the
depth measurement).

Target (issue 8): the checks add <= 5 µs CPU per request for the typical chat
body. Results: ``bench/results/params-latest.{json,md}``.
"""

from __future__ import annotations

import gc
import importlib.metadata
import json
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import orjson

from bench.stats import median
from inferenceops.pipeline import request as request_module
from inferenceops.pipeline.request import parse_inference
from inferenceops.platform import Endpoint

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ROUNDS, PER_ROUND = 21, 10_000
TARGET_US = 5.0
LIMIT = 1_048_576  # the default INFERENCEOPS_MAX_TOKENS_LIMIT

_MESSAGES = [{"role": "system", "content": "You are a concise assistant for the support team."},
             {"role": "user", "content": "Summarise the customer's last three tickets in two "
                                         "sentences and suggest a next step."}]
_TOOL = {"type": "function", "function": {
    "name": "lookup_ticket", "description": "Fetch a support ticket by id.", "strict": True,
    "parameters": {"type": "object", "additionalProperties": False, "required": ["id", "fields"],
                   "properties": {"id": {"type": "string"},
                                  "fields": {"type": "array", "items": {
                                      "type": "object", "properties": {
                                          "name": {"type": "string"},
                                          "filter": {"anyOf": [{"type": "string"},
                                                               {"type": "null"}]}}}}}}}}

BODIES: dict[str, tuple[Endpoint, dict[str, Any]]] = {
    "chat, typical (8 checked fields)": (Endpoint.CHAT, {
        "model": "chat-model", "messages": _MESSAGES, "temperature": 0.7, "top_p": 0.95,
        "max_tokens": 256, "stream": True, "stream_options": {"include_usage": True},
        "stop": ["\n\n"], "seed": 42, "user": "team-a"}),
    "chat, tools + response_format": (Endpoint.CHAT, {
        "model": "chat-model", "messages": _MESSAGES, "temperature": 0.2, "tools": [_TOOL],
        "tool_choice": "auto", "parallel_tool_calls": False, "logprobs": True,
        "top_logprobs": 3, "response_format": {"type": "json_schema", "json_schema": {
            "name": "summary", "strict": True, "schema": {
                "type": "object", "properties": {"summary": {"type": "string"}}}}}}),
    "completions": (Endpoint.COMPLETIONS, {
        "model": "chat-model", "prompt": "Once upon a time", "max_tokens": 64,
        "temperature": 1.0, "logprobs": 2, "echo": False, "n": 2, "logit_bias": {"50256": -100}}),
    "embeddings": (Endpoint.EMBEDDINGS, {
        "model": "embed-model", "input": ["first passage", "second passage"],
        "encoding_format": "float", "dimensions": 512}),
    "chat, 200 brackets (depth measured)": (Endpoint.CHAT, {
        "model": "chat-model", "messages": _MESSAGES, "temperature": 0.7,
        "metadata": [[i] for i in range(199)]}),
}


def _noop(*args: object) -> None:
    return None


def cpu_us(call: Callable[[], object]) -> float:
    """CPU µs per call over one round (the garbage collector paused, as in bench.client)."""
    gc.disable()
    try:
        started = time.process_time()
        for _ in range(PER_ROUND):
            call()
        return (time.process_time() - started) / PER_ROUND * 1e6
    finally:
        gc.enable()


def measure_body(endpoint: Endpoint, doc: dict[str, Any]) -> dict[str, Any]:
    body = orjson.dumps(doc)

    def parse() -> object:
        return parse_inference(body, endpoint, LIMIT)

    def loads() -> object:
        return orjson.loads(body)

    parse()  # the checks accept it (a refused body would measure the error path)

    def unchecked() -> float:
        with mock.patch.object(request_module, "check_params", _noop), \
                mock.patch.object(request_module, "check_depth", _noop):
            return cpu_us(parse)

    with_checks: list[float] = []
    without: list[float] = []
    floor: list[float] = []
    cpu_us(parse)  # warm-up
    for i in range(ROUNDS):
        if i % 2:
            with_checks.append(cpu_us(parse))
            without.append(unchecked())
        else:
            without.append(unchecked())
            with_checks.append(cpu_us(parse))
        floor.append(cpu_us(loads))
    added = [on - off for on, off in zip(with_checks, without, strict=True)]
    return {"endpoint": endpoint.value, "bytes": len(body),
            "with_checks_us": round(median(with_checks), 2),
            "without_checks_us": round(median(without), 2),
            "added_us": round(median(added), 2), "added_min_us": round(min(added), 2),
            "orjson_loads_us": round(median(floor), 2),
            "rounds_with_us": [round(r, 2) for r in with_checks],
            "rounds_without_us": [round(r, 2) for r in without]}


def measure() -> dict[str, Any]:
    results = {name: measure_body(endpoint, doc) for name, (endpoint, doc) in BODIES.items()}
    typical = results["chat, typical (8 checked fields)"]["added_us"]
    return {"benchmark": "params", "rounds": ROUNDS, "per_round": PER_ROUND,
            "target_added_us": TARGET_US, "target_met": typical <= TARGET_US,
            "bodies": results,
            "machine": {"python": platform.python_version(), "orjson": _version("orjson"),
                        "timestamp": datetime.now(UTC).isoformat(timespec="seconds")}}


def markdown(doc: dict[str, Any]) -> str:
    lines = ["# Parameter checks per request (parse_inference, in-process CPU)", "",
             "| body | bytes | without checks | with checks | added (median / least) "
             "| orjson.loads alone |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in doc["bodies"].items():
        lines.append(f"| {name} | {r['bytes']} | {r['without_checks_us']:.2f} µs | "
                     f"{r['with_checks_us']:.2f} µs | {r['added_us']:+.2f} / "
                     f"{r['added_min_us']:+.2f} µs | {r['orjson_loads_us']:.2f} µs |")
    typical = doc["bodies"]["chat, typical (8 checked fields)"]["added_us"]
    lines += ["", f"Target: the checks add ≤ {doc['target_added_us']:g} µs for the typical chat "
              f"body — measured {typical:+.2f} µs {'✅' if doc['target_met'] else '❌'}.",
              f"{doc['rounds']} rounds × {doc['per_round']:,} calls, on and off back to back "
              "(ABBA); added = median (and least) of the per-round differences; "
              f"'without' = check_params and check_depth patched to no-ops. Python "
              f"{doc['machine']['python']}, orjson {doc['machine']['orjson']}, "
              f"{doc['machine']['timestamp']}."]
    return "\n".join(lines) + "\n"


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def main() -> None:
    doc = measure()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "params-latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    table = markdown(doc)
    (RESULTS / "params-latest.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
