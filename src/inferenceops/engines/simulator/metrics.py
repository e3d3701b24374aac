"""The simulator's counters and their Prometheus text rendering, with vLLM series names.

Names and meanings follow vLLM v1 so that routing and dashboards written for
vLLM work unchanged against the simulator: ``vllm:num_requests_running`` /
``_waiting``, ``vllm:kv_cache_usage_perc`` (0..1), prefix-cache queries/hits
counted in tokens, token and success counters, ``vllm:lora_requests_info``.
The text is written by hand (exposition format 0.0.4) to keep the simulator
free of prometheus_client. Counters are plain ints bumped by the scheduler;
rendering happens only when ``/metrics`` is scraped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from inferenceops.histogram import Histogram

__all__ = ["CONTENT_TYPE", "EngineCounters", "Gauges", "Histogram", "render_metrics"]

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

_TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
_E2E_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
)


@dataclass(slots=True)
class EngineCounters:
    """Monotonic counters owned by one simulated engine."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_queries: int = 0
    prefix_hits: int = 0
    preemptions: int = 0
    success: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0})
    ttft: Histogram = field(default_factory=lambda: Histogram(_TTFT_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(_E2E_BUCKETS))


@dataclass(slots=True, frozen=True)
class Gauges:
    """Point-in-time engine state, sampled when ``/metrics`` is scraped."""

    running: int
    waiting: int
    kv_usage: float
    running_loras: tuple[str, ...]
    waiting_loras: tuple[str, ...]
    max_lora: int


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(model: str, counters: EngineCounters, gauges: Gauges) -> bytes:
    """The ``/metrics`` body."""
    label = f'model_name="{_escape(model)}"'
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{{{labels}}} {float(value)!r}")

    family(
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
        [(label, gauges.running)],
    )
    family(
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        [(label, gauges.waiting)],
    )
    family(
        "vllm:kv_cache_usage_perc",
        "gauge",
        "KV-cache usage. 1 means 100 percent usage.",
        [(label, gauges.kv_usage)],
    )
    family(
        "vllm:prefix_cache_queries_total",
        "counter",
        "Prefix cache queries, in terms of number of queried tokens.",
        [(label, counters.prefix_queries)],
    )
    family(
        "vllm:prefix_cache_hits_total",
        "counter",
        "Prefix cache hits, in terms of number of cached tokens.",
        [(label, counters.prefix_hits)],
    )
    family(
        "vllm:num_preemptions_total",
        "counter",
        "Cumulative number of preemptions from the engine.",
        [(label, counters.preemptions)],
    )
    family(
        "vllm:prompt_tokens_total",
        "counter",
        "Number of prefill tokens processed.",
        [(label, counters.prompt_tokens)],
    )
    family(
        "vllm:generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
        [(label, counters.generation_tokens)],
    )
    family(
        "vllm:request_success_total",
        "counter",
        "Count of successfully processed requests.",
        [(f'{label},finished_reason="{reason}"', n) for reason, n in counters.success.items()],
    )
    lora_labels = (
        f'running_lora_adapters="{_escape(",".join(gauges.running_loras))}",'
        f'waiting_lora_adapters="{_escape(",".join(gauges.waiting_loras))}",'
        f'max_lora="{gauges.max_lora}"'
    )
    family(
        "vllm:lora_requests_info",
        "gauge",
        "Running stats on lora requests.",
        [(lora_labels, time.time())],
    )
    _histogram(
        lines,
        "vllm:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        label,
        counters.ttft,
    )
    _histogram(
        lines,
        "vllm:e2e_request_latency_seconds",
        "Histogram of end to end request latency in seconds.",
        label,
        counters.e2e,
    )
    lines.append("")
    return "\n".join(lines).encode("utf-8")


def _histogram(lines: list[str], name: str, help_text: str, label: str, h: Histogram) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} histogram")
    cumulative = 0
    for bound, n in zip(h.bounds, h.counts, strict=False):
        cumulative += n
        lines.append(f'{name}_bucket{{{label},le="{bound!r}"}} {float(cumulative)!r}')
    lines.append(f'{name}_bucket{{{label},le="+Inf"}} {float(h.count)!r}')
    lines.append(f"{name}_sum{{{label}}} {h.total!r}")
    lines.append(f"{name}_count{{{label}}} {float(h.count)!r}")
