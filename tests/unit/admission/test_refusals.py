"""Admission's refusals exactly as a client reads them (``admission.control._refusal``; no I/O).

docs/admission.md promises that every refusal says which limit refused and when to
retry (``error.limit``, ``error.retry_after_s``), a 429 when waiting helps and a
400 when the request can never fit. mutmut (``make mutation``) found the bodies
unpinned: these tests fix each kind — status, code, param, message, extra, headers.
"""

from __future__ import annotations

import pytest

from inferenceops.admission.control import _refusal
from inferenceops.admission.ledger import Check, CheckKind
from inferenceops.admission.plan import BUDGET_MARGIN_S
from inferenceops.errors import BudgetExceeded, InvalidRequest, RateLimited


def check(kind: CheckKind, limit: int, amount: int, ttl_s: float | None = None) -> Check:
    return Check(kind, f"{kind.value}:team:t", limit, amount, f"{kind.value} of team 't'", ttl_s=ttl_s)


def test_a_rate_limit_refusal_says_when_to_retry() -> None:
    error = _refusal(check(CheckKind.REQUESTS, 10, 1), 2.34567, 10)
    assert type(error) is RateLimited
    assert error.message == ("Rate limit reached for requests of team 't': limit 10, used 10, "
                             "requested 1. Try again in 2.35 s.")
    assert error.extra == {"limit": "requests of team 't'", "limit_value": 10, "retry_after_s": 2.346}
    assert error.headers == {"Retry-After": "3", "retry-after-ms": "2346"}


@pytest.mark.parametrize(("kind", "param", "ending"), [
    (CheckKind.TOKENS, "max_tokens", "; lower max_tokens."),
    (CheckKind.REQUESTS, None, "."), (CheckKind.CONCURRENCY, None, "."),
])
def test_a_request_that_can_never_fit_a_limit_is_a_400(kind: CheckKind, param: str | None,
                                                        ending: str) -> None:
    error = _refusal(check(kind, 10, 11), None, 0)
    assert type(error) is InvalidRequest
    assert (error.status, error.code, error.param) == (400, "exceeds_limit", param)
    assert error.message == f"This request needs 11 of the {kind.value} of team 't' limit of 10; " \
        f"it can never fit{ending}"
    assert error.extra == {"limit": f"{kind.value} of team 't'", "limit_value": 10}


def test_a_request_costing_more_than_the_whole_budget_is_a_400() -> None:
    error = _refusal(check(CheckKind.BUDGET, 3 * 10**9, 3 * 10**9 + 1, ttl_s=10.0), None, 0)
    assert type(error) is InvalidRequest
    assert (error.status, error.code, error.param) == (400, "exceeds_budget", "max_tokens")
    assert error.message == ("This request may cost up to 3.000000001, more than the whole "
                             "budget of team 't' (3); lower max_tokens.")
    assert error.extra == {"limit": "budget of team 't'", "limit_value": 3 * 10**9}


@pytest.mark.parametrize(("retry", "ttl_s", "said", "told"), [
    (None, BUDGET_MARGIN_S + 3600.4, " It resets in 3600 s.", 3600.4000000000233),
    (None, BUDGET_MARGIN_S + 0.2, " It resets in 1 s.", 1.0),  # never sooner than a second
    (5.0, BUDGET_MARGIN_S + 3600.0, " It resets in 5 s.", 5.0),  # the ledger's hint wins
    (None, None, "", None),  # a lifetime budget never resets
])
def test_a_budget_with_too_little_left_is_a_429_until_it_resets(
        retry: float | None, ttl_s: float | None, said: str, told: float | None) -> None:
    # Exactly the whole budget may still cost: a request for all of it waits, it is not a 400.
    error = _refusal(check(CheckKind.BUDGET, 3 * 10**9, 3 * 10**9, ttl_s=ttl_s), retry, 10**9)
    assert type(error) is BudgetExceeded
    assert (error.status, error.code, error.type) == (429, "budget_exceeded", "insufficient_quota")
    assert error.message == ("The budget of team 't' (3) has 2 left; this request may cost up "
                             f"to 3.{said}")
    assert error.extra == {"limit": "budget of team 't'", "limit_value": 3 * 10**9,
                           "retry_after_s": pytest.approx(told) if told else None}
    assert ("Retry-After" in error.headers) is (told is not None)


def test_an_overspent_budget_says_nothing_is_left() -> None:
    error = _refusal(check(CheckKind.BUDGET, 10, 5), None, 12)
    assert "(0.00000001) has 0 left;" in error.args[0]
