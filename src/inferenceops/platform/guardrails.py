"""Guardrail policies as data, where they are attached, and the rule for combining them.

A **policy** is named and versioned and holds **rules**; each rule looks for one thing
on the input, the output or both, and says what to do when it is found:

* ``entities`` — built-in detectors (``guardrails.detect``: email, phone, card, iban,
  national_id, ip_address, secret);
* ``regex`` — a custom regular expression; ``keywords`` — a deny list (whole words,
  case-insensitive);
* ``max_input_tokens`` — the prompt's size; ``models`` — the models (and adapters) a
  request may name.

Actions, from the mildest: ``allow`` (nothing), ``flag`` (recorded, the request goes on),
``redact`` (the text is replaced by ``[ENTITY]`` / ``[REDACTED]``), ``block`` (the request
is refused with 400 ``content_policy_violation``; a stream is ended with an error event).
A size or model rule can only flag or block.

**Attachments** put a policy on the whole platform, a team, a model or a key. **The rule
for combining:** every policy attached to anything the request is made with (the platform,
its key's team, its model, its key) applies; where two of them say different things about
the same entity type, the strictest action wins; size limits take the smallest; model
allow-lists intersect. So attaching a policy can only tighten what a request may do,
never loosen it, and the order of attachment does not matter (property-tested).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ACTIONS = ("allow", "flag", "redact", "block")  # mildest first
#: The entity types the built-in detectors find (``guardrails.findings.ENTITIES``; a test holds
#: the two equal: the platform's data model imports nothing of the detectors).
ENTITIES = ("secret", "iban", "card", "national_id", "email", "phone", "ip_address")
STRICTNESS = {action: rank for rank, action in enumerate(ACTIONS)}
INPUT, OUTPUT = "input", "output"
KINDS = ("entities", "regex", "keywords", "max_input_tokens", "models")
SCOPES = ("global", "team", "model", "key")
#: A pattern or keyword finding is an entity of its own for redaction and counting.
CUSTOM = "custom"


def stricter(a: str, b: str) -> str:
    return a if STRICTNESS[a] >= STRICTNESS[b] else b


@dataclass(frozen=True, slots=True)
class Rule:
    """One thing a policy looks for, where, and what it does (see the module doc)."""

    kind: str
    action: str
    on: frozenset[str] = frozenset({INPUT, OUTPUT})
    entities: frozenset[str] = frozenset()
    pattern: str | None = None
    keywords: tuple[str, ...] = ()
    limit: int | None = None
    models: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.action not in ACTIONS:
            raise ValueError(f"action: {self.action!r} is not one of {', '.join(ACTIONS)}")
        if not self.on or not self.on <= {INPUT, OUTPUT}:
            raise ValueError("on: input, output or both")
        unknown = self.entities - set(ENTITIES)
        if unknown:
            raise ValueError(f"entities: {', '.join(sorted(unknown))} unknown; the detectors "
                             f"know {', '.join(ENTITIES)}")
        if self.kind == "entities" and not self.entities:
            raise ValueError("entities: name at least one entity type")
        if self.kind == "regex":
            if not self.pattern:
                raise ValueError("pattern: a regex rule needs a pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern: not a regular expression ({exc})") from None
        if self.kind == "keywords" and not any(w.strip() for w in self.keywords):
            raise ValueError("keywords: name at least one word")
        if self.kind in ("max_input_tokens", "models"):
            if self.action in ("redact",):
                raise ValueError(f"action: a {self.kind} rule can flag or block, not redact")
            if self.on != frozenset({INPUT}):
                object.__setattr__(self, "on", frozenset({INPUT}))  # they concern the request
        if self.kind == "max_input_tokens" and (self.limit is None or self.limit < 1):
            raise ValueError("limit: a max_input_tokens rule needs a limit of at least 1")
        if self.kind == "models" and not self.models:
            raise ValueError("models: name at least one model")


@dataclass(frozen=True, slots=True)
class GuardrailPolicy:
    name: str
    version: int
    rules: tuple[Rule, ...]
    description: str = ""

    @property
    def label(self) -> str:
        """``name@version``: what usage records and metrics name."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class Attachment:
    policy: str
    scope: str  # global | team | model | key
    target: str | None = None  # the team id, model name or key id; None for global

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"scope: {self.scope!r} is not one of {', '.join(SCOPES)}")
        if (self.scope == "global") != (self.target is None):
            raise ValueError("target: global attachments name nothing; the others name what "
                             "they attach to")


@dataclass(frozen=True, slots=True)
class Patterned:
    """A regex or keyword rule, compiled, with its action and where it applies."""

    regex: re.Pattern[str]
    action: str
    on: frozenset[str]
    policy: str


@dataclass(frozen=True, slots=True)
class Effective:
    """What applies to one request: all attached policies combined (strictest wins)."""

    policies: tuple[str, ...]  # labels, for the record
    entity_actions: Mapping[str, Mapping[str, str]]  # input|output → entity → action
    patterns: tuple[Patterned, ...] = ()
    max_input_tokens: int | None = None
    size_action: str = "block"
    models: frozenset[str] | None = None  # None: any model
    models_action: str = "block"

    def entities(self, where: str, *actions: str) -> frozenset[str]:
        wanted = set(actions)
        return frozenset(e for e, a in self.entity_actions.get(where, {}).items() if a in wanted)

    @property
    def empty(self) -> bool:
        return not (any(self.entity_actions.values()) or self.patterns
                    or self.max_input_tokens is not None or self.models is not None)


def combine(policies: Iterable[GuardrailPolicy]) -> Effective:
    """The combining rule of the module doc, over ``policies`` in any order."""
    actions: dict[str, dict[str, str]] = {INPUT: {}, OUTPUT: {}}
    patterns: list[Patterned] = []
    limit: int | None = None
    size_action = "allow"
    models: frozenset[str] | None = None
    models_action = "allow"
    labels = []
    for policy in sorted(policies, key=lambda p: p.label):
        labels.append(policy.label)
        for rule in policy.rules:
            if rule.action == "allow":
                continue
            if rule.kind == "entities":
                for where in rule.on:
                    for entity in rule.entities:
                        held = actions[where].get(entity, "allow")
                        actions[where][entity] = stricter(held, rule.action)
            elif rule.kind in ("regex", "keywords"):
                patterns.append(Patterned(_compile(rule), rule.action, rule.on, policy.label))
            elif rule.kind == "max_input_tokens":
                assert rule.limit is not None
                limit = rule.limit if limit is None else min(limit, rule.limit)
                size_action = stricter(size_action, rule.action)
            else:
                models = rule.models if models is None else models & rule.models
                models_action = stricter(models_action, rule.action)
    frozen = MappingProxyType({w: MappingProxyType(a) for w, a in actions.items()})
    return Effective(tuple(labels), frozen, tuple(patterns), limit, size_action, models,
                     models_action)


def _compile(rule: Rule) -> re.Pattern[str]:
    if rule.kind == "regex":
        assert rule.pattern is not None
        return re.compile(rule.pattern)
    words = sorted({w.strip() for w in rule.keywords if w.strip()}, key=len, reverse=True)
    return re.compile(r"(?i)(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)")


@dataclass
class Guardrails:
    """The platform's policies and attachments; ``effective`` per request, cached."""

    policies: Mapping[str, GuardrailPolicy] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    _cache: dict[tuple[str | None, str, str], Effective | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for attachment in self.attachments:
            if attachment.policy not in self.policies:
                raise ValueError(f"attachments: policy {attachment.policy!r} is not defined")

    @property
    def empty(self) -> bool:
        return not self.attachments

    def effective(self, team_id: str | None, model: str, key_id: str) -> Effective | None:
        """The combined policies for a request of ``key_id`` (of ``team_id``) to ``model``;
        None when nothing is attached to any of them."""
        cache_key = (team_id, model, key_id)
        if cache_key in self._cache:
            return self._cache[cache_key]
        names = {a.policy for a in self.attachments
                 if a.scope == "global" or (a.scope == "team" and a.target == team_id)
                 or (a.scope == "model" and a.target == model)
                 or (a.scope == "key" and a.target == key_id)}
        effective = combine(self.policies[n] for n in names) if names else None
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[cache_key] = effective
        return effective


NO_GUARDRAILS = Guardrails()
