"""The built-in detector set: every finder run over a text, overlaps settled, and redaction.

``scan`` asks only the finders of the entity types wanted. Where findings overlap the
stronger type wins (``findings.ENTITIES`` order: a card number inside a secret is the
secret), then the longer one. ``redact`` replaces each finding with ``[ENTITY]``
(``[EMAIL]``, ``[CARD]``…) so the reader still sees what kind of thing was there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Protocol

from inferenceops.guardrails import pii, secrets
from inferenceops.guardrails.findings import (
    CARD,
    EMAIL,
    ENTITIES,
    IBAN,
    IP_ADDRESS,
    NATIONAL_ID,
    PHONE,
    RANK,
    SECRET,
    Finding,
)
from inferenceops.guardrails.pii import ScanText

Finder = Callable[[ScanText], Iterator[Finding]]

FINDERS: dict[str, tuple[Finder, ...]] = {
    SECRET: (secrets.find_secrets,), IBAN: (pii.find_ibans,), CARD: (pii.find_cards,),
    NATIONAL_ID: (pii.find_national_ids, pii.find_uk_ninos), EMAIL: (pii.find_emails,),
    PHONE: (pii.find_phones,), IP_ADDRESS: (pii.find_ip_addresses,),
}


class Detector(Protocol):
    """Another detector set for some entity types (``guardrails.presidio``)."""

    entities: frozenset[str]

    def find(self, text: str, entities: Collection[str]) -> Iterator[Finding]: ...


#: The process's other detector set, if the operator chose one at start (``use_detector``);
#: it finds its ``entities``, the built-in finders the rest.
_other: Detector | None = None


def use_detector(detector: Detector | None) -> None:
    """Make ``detector`` find its entity types in every scan of this process (None: built-in
    only). Called once at start (``app.build_state``), from ``guardrails_detector``."""
    global _other
    _other = detector


def scan(text: str, entities: Collection[str] = ENTITIES) -> list[Finding]:
    """The findings of ``entities`` in ``text``, in text order, none overlapping."""
    found: list[Finding] = []
    shared = ScanText(text)
    other = _other
    theirs = other.entities if other is not None else frozenset()
    for entity in ENTITIES:
        if entity in entities and entity not in theirs:
            for finder in FINDERS[entity]:
                found.extend(finder(shared))
    if other is not None:
        wanted = [entity for entity in entities if entity in theirs]
        if wanted:
            found.extend(other.find(text, wanted))
    return settle_overlaps(found)


def settle_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Keep, of overlapping findings, the stronger type (a custom pattern's after the built-in
    ones), then the longer, then the earlier."""
    ranked = sorted(findings, key=lambda f: (RANK.get(f.entity, len(RANK)), f.start - f.end,
                                             f.start))
    kept: list[Finding] = []
    for finding in ranked:
        if all(finding.end <= k.start or finding.start >= k.end for k in kept):
            kept.append(finding)
    kept.sort(key=lambda f: f.start)
    return kept


def placeholder(entity: str) -> str:
    return f"[{entity.upper()}]"


def redact(text: str, findings: Iterable[Finding]) -> str:
    """``text`` with every (non-overlapping, ordered) finding replaced by its placeholder."""
    parts: list[str] = []
    at = 0
    for f in findings:
        parts.append(text[at:f.start])
        parts.append(placeholder(f.entity))
        at = f.end
    parts.append(text[at:])
    return "".join(parts)
