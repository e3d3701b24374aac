"""Refuses custom regular expressions that could take exponential time: before a policy is accepted.

A policy's ``regex`` runs over every prompt (and answer) it applies to, on Python's
backtracking ``re``, which cannot be interrupted: one pattern such as ``(a+)+$`` over 30
characters of ``a`` holds the event loop for minutes. A linear-time engine (``google-re2``)
is not a dependency, and a time limit would need a thread per match; so the pattern is
checked statically, once, when the platform file or the admin API hands it over
(``spec.RuleSpec``), with the rule of npm's *safe-regex*, plus one:

* **star height at most one**: no unbounded repetition inside another (``(a+)+``,
  ``(\\w+\\s?)*``);
* **no overlapping alternatives under an unbounded repetition** (``(a|a)*``, ``(.|\\s)*``):
  two branches that can start with the same character, or both match nothing.

Conservative on purpose: ``(\\s*,\\s*\\w+)*`` is refused although a comma separates its
rounds. Such a pattern is accepted written without backtracking — an atomic group ``(?>…)``
or a possessive quantifier (``*+``, ``++``), which Python 3.11 runs as written — and the
message says so. Pure: no I/O.
"""

from __future__ import annotations

import re
from re import _constants as c  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

_TOP = 0x10FFFF
_ANY = ((0, _TOP),)
_CATEGORIES = {
    c.CATEGORY_DIGIT: ((48, 57),),
    c.CATEGORY_SPACE: ((9, 13), (32, 32)),
    c.CATEGORY_WORD: ((48, 57), (65, 90), (95, 95), (97, 122), (128, _TOP)),
}
_REPEATS = (c.MAX_REPEAT, c.MIN_REPEAT)
_UNBOUNDED = 100  # a repetition this long or longer counts as unbounded
HINT = ("write it without nested or overlapping repetition, or make the repeated part "
        "atomic: (?>…) or a possessive quantifier (*+, ++)")


class UnsafePattern(ValueError):
    """The pattern could backtrack exponentially (the message says where and what to do)."""


def check(pattern: str) -> None:
    """Raise ``re.error`` for what is not a pattern, ``UnsafePattern`` for an unsafe one.

    ``re`` itself raises more than ``re.error`` for some text (a repetition count past its
    range, groups nested past the interpreter's recursion limit): those are ``re.error`` too.
    """
    try:
        re.compile(pattern)
        parsed = _parser.parse(pattern)
    except (OverflowError, RecursionError) as exc:
        raise re.error(str(exc)) from None
    try:
        _walk(parsed, inside_repeat=False)
    except RecursionError:
        raise UnsafePattern("groups are nested too deeply to check; simplify the pattern") from None


def _walk(items: Any, *, inside_repeat: bool) -> None:
    for op, arg in items:
        if op in _REPEATS:
            low, high, body = arg
            unbounded = high == c.MAXREPEAT or high >= _UNBOUNDED
            if unbounded and inside_repeat:
                raise UnsafePattern("a repetition inside another repetition could take "
                                    f"exponential time; {HINT}")
            _walk(body, inside_repeat=inside_repeat or unbounded)
        elif op in (c.POSSESSIVE_REPEAT, c.ATOMIC_GROUP):
            continue  # never backtracks into: safe whatever is inside
        elif op == c.SUBPATTERN:
            _walk(arg[-1], inside_repeat=inside_repeat)
        elif op == c.BRANCH:
            if inside_repeat:
                _check_branches(arg[1])
            for branch in arg[1]:
                _walk(branch, inside_repeat=inside_repeat)
        elif op in (c.ASSERT, c.ASSERT_NOT):
            _walk(arg[1], inside_repeat=inside_repeat)
        elif op == c.GROUPREF_EXISTS:
            for part in arg[1:]:
                if part is not None:
                    _walk(part, inside_repeat=inside_repeat)


def _check_branches(branches: Any) -> None:
    """Alternatives under an unbounded repetition must not both match the same start (or both
    nothing): each round could then be split two ways, 2**n ways in all. (The parser already
    merged single characters into a set, ``(\\d|1)`` into ``[\\d1]``, which is safe.)"""
    firsts = [_first(branch) for branch in branches]
    for i, a in enumerate(firsts):
        for b in firsts[i + 1:]:
            if (a is None and b is None) or (a is not None and b is not None and _meet(a, b)):
                raise UnsafePattern("alternatives that can match the same text, repeated, "
                                    f"could take exponential time; {HINT}")


def _first(items: Any) -> tuple[tuple[int, int], ...] | None:
    """The characters a sequence can start with, as ranges; None: it can match nothing at all."""
    for op, arg in items:
        if op == c.AT:
            continue
        if op == c.LITERAL:
            return ((arg, arg),)
        if op == c.IN:
            return _set_ranges(arg)
        if op == c.SUBPATTERN:
            return _first(arg[-1])
        if op in _REPEATS:
            return None if arg[0] == 0 else _first(arg[2])
        if op == c.BRANCH:
            parts = [_first(b) for b in arg[1]]
            if any(p is None for p in parts):
                return None
            return tuple(r for p in parts if p is not None for r in p)
        return _ANY  # ANY, NOT_LITERAL, a back reference…: assume it may start with anything
    return None  # empty


def _set_ranges(items: Any) -> tuple[tuple[int, int], ...]:
    ranges: list[tuple[int, int]] = []
    for op, arg in items:
        if op == c.NEGATE:
            return _ANY
        if op == c.LITERAL:
            ranges.append((arg, arg))
        elif op == c.RANGE:
            ranges.append(arg)
        elif op == c.CATEGORY and arg in _CATEGORIES:
            ranges.extend(_CATEGORIES[arg])
        else:
            return _ANY
    return tuple(ranges)


def _meet(a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> bool:
    return any(lo1 <= hi2 and lo2 <= hi1 for lo1, hi1 in a for lo2, hi2 in b)
