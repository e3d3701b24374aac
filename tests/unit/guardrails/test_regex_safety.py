"""The static check that keeps exponential-time patterns out of guardrail policies.

Each refused pattern is one that really does backtrack exponentially on Python's ``re``
(``test_a_refused_pattern_really_is_slow`` times one on a short input); each accepted one
is a pattern people write, or an unsafe one made atomic or possessive.
"""

from __future__ import annotations

import re
import time

import pytest

from inferenceops.guardrails.regex_safety import UnsafePattern, check
from inferenceops.guardrails.spec import RuleSpec

UNSAFE = [r"(a+)+$", r"(a*)*b", r"(\w+\s?)*$", r"(x+x+)+y", r"^(([a-z])+.)+[A-Z]([a-z])+$",
          r"(a|a)*b", r"(.|\s)*x", r"(?:\d+)*!", r"(a{1,200})+z", r"(?=(a+)+)"]
SAFE = [r"PROJECT-[0-9]{4}", r"\b[A-Z]{2}\d{6}\b", r"(foo|bar)+", r"(\d{3}-)+\d{4}",
        r"(?:ab|cd)*", r"x*y*z*", r"(\d|1)+", r"(a|ab)*c", r"(?>\w+\s?)*$", r"(\w++\s?)*$",
        r"(?>(a+)+)$", r"(a{1,3})+z", r"(?i)confidential|internal only", r"(a?)*"]


@pytest.mark.parametrize("pattern", UNSAFE)
def test_exponential_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(UnsafePattern, match="exponential time"):
        check(pattern)


@pytest.mark.parametrize("pattern", SAFE)
def test_ordinary_and_atomic_patterns_pass(pattern: str) -> None:
    check(pattern)


@pytest.mark.parametrize("pattern", ["([a-z", "a{99999999999}", "(" * 1000 + ")" * 1000])
def test_what_is_not_a_pattern_is_re_error(pattern: str) -> None:
    """Also what ``re`` refuses with OverflowError or RecursionError (a 500 otherwise)."""
    with pytest.raises(re.error):
        check(pattern)


def test_a_refused_pattern_really_is_slow() -> None:
    """The first refused pattern takes measurable time on 20 characters, and its atomic
    spelling (accepted) does not: the check refuses what would hurt."""
    text = "a" * 20 + "!"
    started = time.perf_counter()
    re.match(r"(a+)+$", text)
    slow = time.perf_counter() - started
    started = time.perf_counter()
    re.match(r"(?>a+)+$", text)
    fast = time.perf_counter() - started
    assert slow > 20 * fast and slow > 0.01


def test_the_rule_parser_names_the_regex_field() -> None:
    with pytest.raises(ValueError) as info:
        RuleSpec.model_validate({"regex": "(a+)+$", "action": "block"})
    assert "regex" in str(info.value) and "(?>" in str(info.value)
