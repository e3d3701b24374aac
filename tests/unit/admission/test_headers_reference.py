"""Rate-limit headers in one pass are the headers of the two-pass reference, for any counters.

``reference`` is the straightforward implementation (a pass per kind, ``remaining``
from the property); ``rate_limit_headers`` must agree on every mix of kinds, ties,
counters over their limit and reset times.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferenceops.admission.headers import format_reset, rate_limit_headers
from inferenceops.admission.ledger import Check, CheckKind, CounterState


def reference(checks: Sequence[Check], states: Sequence[CounterState]) -> list[tuple[bytes, bytes]] | None:
    headers: list[tuple[bytes, bytes]] = []
    for kind, name in ((CheckKind.REQUESTS, b"requests"), (CheckKind.TOKENS, b"tokens")):
        tightest: CounterState | None = None
        for check, state in zip(checks, states, strict=True):
            if check.kind is kind and (tightest is None or state.remaining < tightest.remaining):
                tightest = state
        if tightest is not None:
            headers += [(b"x-ratelimit-limit-" + name, b"%d" % tightest.limit),
                        (b"x-ratelimit-remaining-" + name, b"%d" % tightest.remaining),
                        (b"x-ratelimit-reset-" + name, format_reset(tightest.reset_s).encode())]
    return headers or None


counters = st.tuples(st.sampled_from(list(CheckKind)), st.integers(0, 20), st.integers(0, 25),
                     st.sampled_from([0.0, 0.25, 1.0, 12.5, 59.9, 60.0, 61.0]))


@settings(max_examples=500, deadline=None)
@given(st.lists(counters, max_size=8))
def test_headers_are_those_of_the_reference(counters: list[tuple[CheckKind, int, int, float]]) -> None:
    checks = [Check(kind, f"c{i}", limit, 1, f"c{i}") for i, (kind, limit, _, _) in enumerate(counters)]
    states = [CounterState(limit, used, reset) for _, limit, used, reset in counters]
    assert rate_limit_headers(checks, states) == reference(checks, states)


def test_checks_and_states_of_different_lengths_are_a_bug() -> None:
    with pytest.raises(ValueError):
        rate_limit_headers([Check(CheckKind.REQUESTS, "a", 1, 1, "a")], [])
