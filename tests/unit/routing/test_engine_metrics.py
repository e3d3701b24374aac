"""The /metrics parser: known gauges are read by name, anything else (or anything broken) is skipped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from inferenceops.engines.simulator.metrics import EngineCounters, Gauges, render_metrics
from inferenceops.routing.engine_metrics import EngineLoad, parse_engine_metrics

VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 7.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="llama"} 12.0
vllm:kv_cache_usage_perc{engine="0",model_name="llama"} 0.625
vllm:prefix_cache_hits_total{engine="0",model_name="llama"} 1.2e+06
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="llama"} 3.0
"""

SGLANG = """\
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="qwen"} 3
sglang:num_queue_reqs{model_name="qwen"} 4
sglang:token_usage{model_name="qwen"} 0.5
sglang:gen_throughput{model_name="qwen"} 1234.5
"""


def test_vllm_gauges_are_read_by_name_and_the_rest_ignored() -> None:
    assert parse_engine_metrics(VLLM) == EngineLoad(running=7, waiting=12, kv_usage=0.625)
    assert parse_engine_metrics(VLLM.encode()) == EngineLoad(running=7, waiting=12, kv_usage=0.625)


def test_sglang_equivalents_are_read_too() -> None:
    assert parse_engine_metrics(SGLANG) == EngineLoad(running=3, waiting=4, kv_usage=0.5)


def test_the_simulators_own_page_parses() -> None:
    page = render_metrics("m", EngineCounters(), Gauges(running=5, waiting=9, kv_usage=0.25,
                                                        running_loras=(), waiting_loras=(),
                                                        max_lora=0))
    assert parse_engine_metrics(page) == EngineLoad(running=5, waiting=9, kv_usage=0.25)


def test_several_models_are_summed_and_kv_is_the_fullest() -> None:
    text = ('vllm:num_requests_running{model_name="a"} 1\n'
            'vllm:num_requests_running{model_name="b"} 2\n'
            'vllm:kv_cache_usage_perc{model_name="a"} 0.2\n'
            'vllm:kv_cache_usage_perc{model_name="b"} 0.7\n')
    assert parse_engine_metrics(text) == EngineLoad(running=3, waiting=0, kv_usage=0.7)


def test_unlabelled_samples_timestamps_and_whitespace_are_fine() -> None:
    text = "  vllm:num_requests_waiting 4 1700000000000\r\nvllm:num_requests_running\t2\n"
    assert parse_engine_metrics(text) == EngineLoad(running=2, waiting=4, kv_usage=0)


def test_broken_lines_are_skipped_not_believed() -> None:
    text = ('vllm:num_requests_running{model_name="a"} NaN\n'
            'vllm:num_requests_running{model_name="a"} -3\n'
            'vllm:num_requests_running{model_name="a" 5\n'
            'vllm:num_requests_running{model_name="a"}\n'
            'vllm:num_requests_running{model_name="a"} +Inf\n'
            'vllm:num_requests_waiting{model_name="a"} 2\n'
            'vllm:kv_cache_usage_perc{model_name="a"} 7\n')
    assert parse_engine_metrics(text) == EngineLoad(running=0, waiting=2, kv_usage=1.0)


def test_a_page_without_the_gauges_is_none() -> None:
    assert parse_engine_metrics("") is None
    assert parse_engine_metrics("<html>404</html>") is None
    assert parse_engine_metrics("process_cpu_seconds_total 3\n") is None


@given(st.text())
def test_any_text_parses_without_raising(text: str) -> None:
    load = parse_engine_metrics(text)
    assert load is None or min(load.running, load.waiting, load.kv_usage) >= 0


@given(st.binary())
def test_any_bytes_parse_without_raising(data: bytes) -> None:
    parse_engine_metrics(data)


_LINE = st.one_of(
    st.text(max_size=80),
    st.builds(lambda name, labels, value: f"{name}{{{labels}}} {value}",
              st.sampled_from(["vllm:num_requests_running", "vllm:num_requests_waiting",
                               "vllm:kv_cache_usage_perc", "sglang:num_queue_reqs", "vllm:x"]),
              st.text(max_size=20), st.text(max_size=12)),
)


@given(st.lists(_LINE, max_size=20), st.integers(0, 10_000), st.integers(0, 10_000))
def test_known_lines_are_read_among_any_noise(noise: list[str], running: int,
                                              waiting: int) -> None:
    # Noise may hold more samples of the same names (counted too), but never loses the known ones.
    lines = [*noise, f'vllm:num_requests_running{{model_name="m"}} {running}',
             f"vllm:num_requests_waiting {waiting}"]
    load = parse_engine_metrics("\n".join(lines))
    assert load is not None
    assert load.running >= running and load.waiting >= waiting
