"""Applying an ``Effective`` policy set to a request's text and to an answer's.

Pure functions over parsed documents (no I/O, nothing of the pipeline): the input check
walks the prompt's text (chat messages and their text parts, ``prompt``, ``input``),
refuses what a ``block`` rule finds, rewrites what a ``redact`` rule finds in place, and
reports what a ``flag`` rule finds. The answer check does the same to a non-streamed
answer's generated text (a stream goes through ``guardrails.stream.StreamRedactor``).
What is reported names the entity type and the action, never the text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from inferenceops.errors import PolicyViolation
from inferenceops.guardrails.detect import placeholder, scan, settle_overlaps
from inferenceops.guardrails.findings import Finding
from inferenceops.platform.guardrails import CUSTOM, INPUT, OUTPUT, STRICTNESS, Effective


@dataclass
class Outcome:
    """What the checks found and did: ``(entity, action)`` pairs, and whether text changed."""

    found: list[tuple[str, str]] = field(default_factory=list)
    changed: bool = False


Slot = tuple[Any, Any]  # (container, key): where one piece of text lives in the document


def check_input(effective: Effective, doc: dict[str, Any], field_name: str, model: str,
                prompt_tokens: Callable[[], int]) -> Outcome:
    """Apply ``effective``'s input rules to the request ``doc`` (changed in place when a rule
    redacts); raises ``PolicyViolation`` when one blocks."""
    outcome = Outcome()
    if effective.models is not None and model not in effective.models:
        _act(outcome, "model", effective.models_action,
             f"The model '{model}' is not allowed by the guardrail policies that apply to "
             "this key.", param="model")
    if effective.max_input_tokens is not None and prompt_tokens() > effective.max_input_tokens:
        _act(outcome, "input_size", effective.size_action,
             f"The input is longer than the {effective.max_input_tokens} tokens the guardrail "
             "policies allow.", param=field_name)
    _check_text(effective, INPUT, _slots(doc.get(field_name), doc, field_name), outcome,
                field_name)
    return outcome


def check_answer(effective: Effective, doc: dict[str, Any]) -> Outcome:
    """Apply ``effective``'s output rules to a non-streamed answer ``doc`` (in place)."""
    outcome = Outcome()
    slots: list[Slot] = []
    for choice in doc.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            slots.append((message, "content"))
        elif isinstance(choice.get("text"), str):
            slots.append((choice, "text"))
    _check_text(effective, OUTPUT, iter(slots), outcome, None)
    return outcome


def _check_text(effective: Effective, where: str, slots: Iterator[Slot], outcome: Outcome,
                param: str | None) -> None:
    actions = effective.entity_actions.get(where, {})
    wanted = frozenset(e for e, a in actions.items() if a != "allow")
    patterns = [p for p in effective.patterns if where in p.on]
    if not wanted and not patterns:
        return
    for container, key in slots:
        text = container[key]
        findings = scan(text, wanted) if wanted else []
        custom_action: dict[tuple[int, int], str] = {}
        for pattern in patterns:
            for m in pattern.regex.finditer(text):
                if m.end() > m.start():
                    span = (m.start(), m.end())
                    custom_action[span] = max(custom_action.get(span, "allow"), pattern.action,
                                              key=STRICTNESS.__getitem__)
                    findings.append(Finding(CUSTOM, "pattern", *span))
        redact: list[Finding] = []
        for f in settle_overlaps(findings):
            action = custom_action[(f.start, f.end)] if f.entity == CUSTOM else actions[f.entity]
            if action == "block":
                _act(outcome, f.entity, "block",
                     f"The {'request' if where == INPUT else 'answer'} contains "
                     f"{_described(f.entity)}, which the guardrail policies that apply to this "
                     "key do not allow.", param=param)
            outcome.found.append((f.entity, action))
            if action == "redact":
                redact.append(f)
        if redact:
            container[key] = _redacted(text, redact)
            outcome.changed = True


def _redacted(text: str, findings: list[Finding]) -> str:
    parts, at = [], 0
    for f in findings:
        parts += [text[at:f.start], "[REDACTED]" if f.entity == CUSTOM else placeholder(f.entity)]
        at = f.end
    parts.append(text[at:])
    return "".join(parts)


def _act(outcome: Outcome, entity: str, action: str, message: str, *, param: str | None) -> None:
    if action == "block":
        raise PolicyViolation(message, param=param, extra={"guardrail": entity})
    if action != "allow":
        outcome.found.append((entity, action))


def _described(entity: str) -> str:
    return {"custom": "text matching a blocked pattern or keyword",
            "secret": "a secret (a key, token or password)",
            "national_id": "a national identifier", "ip_address": "an IP address",
            "iban": "an IBAN", "email": "an email address", "card": "a payment card number",
            "phone": "a phone number"}.get(entity, entity)


def _slots(value: Any, parent: Any, key: Any) -> Iterator[Slot]:
    """Every piece of text in a prompt field: strings, messages' ``content`` (a string or
    parts with ``text``), lists of them."""
    if isinstance(value, str):
        yield parent, key
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _slots(item, value, i)
    elif isinstance(value, dict):
        for name in ("content", "text"):
            if name in value:
                yield from _slots(value[name], value, name)
