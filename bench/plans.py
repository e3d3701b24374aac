"""How much a foundation benchmark run measures, and the admission rules it runs with."""

from __future__ import annotations

from dataclasses import dataclass

from bench import upstream

#: With --admission memory|redis every request is checked against 3 key limits, 2 model
#: limits and a priced key budget (6 counters, usage settled), and takes a deployment slot;
#: the limits are high enough never to refuse, so the cost of the checks is what is measured.
ADMISSION_RULES = """\
    price: {input_per_million: "0.15", output_per_million: "0.60"}
limits:
  - {key: "*", rpm: 100000000, tpm: 10000000000, concurrency: 100000}
  - {model: MODEL, rpm: 100000000, tpm: 10000000000}
budgets:
  - {key: "*", amount: "1000000", currency: USD, period: monthly}
""".replace("MODEL", upstream.MODEL)
#: The paced model's price (its model entry's continuation), so its streams are settled priced.
PACED_PRICE = '    price: {input_per_million: "0.15", output_per_million: "0.60"}\n'


@dataclass(frozen=True, slots=True)
class Plan:
    """How much of each measurement to do; ``FULL`` is the recorded run, ``QUICK`` a smoke test."""

    latency_blocks: int
    latency_requests: int  # per block and side
    ttfc_blocks: int
    ttfc_requests: int  # per block and side
    stream_blocks: int  # whole paced streams (bench.stream)
    stream_requests: int  # per block and side
    stream_warmup: int  # per side, untimed
    wrk_blocks: int
    wrk_seconds: float  # per block and side
    wrk_connections: int
    memory_early: int  # gateway requests before the first RSS reading
    memory_late: int  # gateway requests (at least) before the second RSS reading
    max_soak_s: float  # the top-up to memory_late gives up after this long


FULL = Plan(latency_blocks=5, latency_requests=2000, ttfc_blocks=5, ttfc_requests=200,
            stream_blocks=6, stream_requests=40, stream_warmup=20,
            wrk_blocks=3, wrk_seconds=10, wrk_connections=64,
            memory_early=10_000, memory_late=200_000, max_soak_s=150)
QUICK = Plan(latency_blocks=2, latency_requests=300, ttfc_blocks=2, ttfc_requests=100,
             stream_blocks=2, stream_requests=15, stream_warmup=5,
             wrk_blocks=1, wrk_seconds=3, wrk_connections=64,
             memory_early=5_000, memory_late=30_000, max_soak_s=15)
