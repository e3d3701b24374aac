"""What an engine's Prometheus ``/metrics`` says about its load: a parser that never raises.

Reads only the few gauges routing needs, by name, and ignores every other line
(real vLLM exports ~130 series, histograms included):

==============  ==============================  ==========================
                vLLM (and the simulator)        SGLang
==============  ==============================  ==========================
running         ``vllm:num_requests_running``   ``sglang:num_running_reqs``
waiting         ``vllm:num_requests_waiting``   ``sglang:num_queue_reqs``
KV-cache use    ``vllm:kv_cache_usage_perc``    ``sglang:token_usage``
==============  ==============================  ==========================

Both report KV use as a fraction (0..1). A server that serves several models
(one series per ``model_name`` label) is summed for counts and maxed for the
KV fraction: routing picks a replica, not a model on it. The text comes from a
peer we do not control, so anything malformed — a bad number, a torn line, a
different exposition format — is skipped, never raised: a page with none of the
gauges gives ``None`` and the replica is judged by the gateway's own counts.

Pure: no I/O here (``routing.scraper`` fetches the text).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["EngineLoad", "parse_engine_metrics"]


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """One scrape's view of an engine: requests running and queued, KV-cache use (0..1)."""

    running: float = 0.0
    waiting: float = 0.0
    kv_usage: float = 0.0


_RUNNING, _WAITING, _KV = 0, 1, 2
#: Series name → which gauge it feeds.
_NAMES: dict[str, int] = {
    "vllm:num_requests_running": _RUNNING,
    "vllm:num_requests_waiting": _WAITING,
    "vllm:kv_cache_usage_perc": _KV,
    "vllm:gpu_cache_usage_perc": _KV,  # vLLM V0's name for the same fraction
    "sglang:num_running_reqs": _RUNNING,
    "sglang:num_queue_reqs": _WAITING,
    "sglang:token_usage": _KV,
}
#: Every wanted name starts with one of these: other lines are dropped on one ``startswith``.
_PREFIXES = ("vllm:num_requests_", "vllm:kv_cache_usage", "vllm:gpu_cache_usage", "sglang:")


def _sample(line: str) -> tuple[str, float] | None:
    """``name{labels} value [timestamp]`` → (name, value); None when it is not one."""
    brace = line.find("{")
    if brace >= 0:
        close = line.rfind("}")
        if close < brace:
            return None
        name, rest = line[:brace], line[close + 1:]
    else:
        name, _, rest = line.replace("\t", " ").partition(" ")
    fields = rest.split()
    if not fields:
        return None
    try:
        value = float(fields[0])
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return name.strip(), value


def parse_engine_metrics(text: str | bytes) -> EngineLoad | None:
    """The load ``text`` reports, or None when it holds none of the gauges (never raises)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    found = [False, False, False]
    totals = [0.0, 0.0, 0.0]
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith(_PREFIXES):
            continue
        sample = _sample(line)
        if sample is None:
            continue
        which = _NAMES.get(sample[0])
        if which is None:
            continue
        found[which] = True
        if which == _KV:
            totals[_KV] = max(totals[_KV], min(sample[1], 1.0))
        else:
            totals[which] += sample[1]
    if not any(found):
        return None
    return EngineLoad(running=totals[_RUNNING], waiting=totals[_WAITING], kv_usage=totals[_KV])
