"""The ``guardrails:`` section of the platform file: policies and where they are attached.

    guardrails:
      policies:
        - name: pii
          version: 2                        # optional (1); usage records name pii@2
          rules:
            - {entities: [card, iban, secret], action: block, applies_to: [input]}
            - {entities: [email, phone], action: redact}          # on input and output
            - {regex: "PROJECT-[0-9]{4}", action: redact}
            - {keywords: [confidential, "internal only"], action: flag}
            - {max_input_tokens: 8000, action: block}
            - {models: [chat-model], action: block}                # the only models allowed
      attach:
        - {policy: pii}                     # the whole platform
        - {policy: pii, team: research}     # a team by name; or model: <name>, key: <key id>

A ``regex`` must compile and must not be able to backtrack exponentially
(``regex_safety``). Validated at start with messages naming the field (``config.spec`` reports them with the
line). The rules and the combining rule are ``platform.guardrails``'s.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inferenceops.guardrails import regex_safety
from inferenceops.guardrails.findings import ENTITIES
from inferenceops.platform.guardrails import (
    Attachment,
    GuardrailPolicy,
    Guardrails,
    Rule,
)

Entity = Literal["email", "phone", "card", "iban", "national_id", "ip_address", "secret"]
assert set(Entity.__args__) == set(ENTITIES)  # type: ignore[attr-defined]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleSpec(_Strict):
    entities: list[Entity] | None = Field(None, min_length=1)
    regex: str | None = Field(None, min_length=1, max_length=2000)
    keywords: list[str] | None = Field(None, min_length=1, max_length=10_000)
    max_input_tokens: int | None = Field(None, ge=1, le=100_000_000)
    models: list[str] | None = Field(None, min_length=1)
    action: Literal["allow", "flag", "redact", "block"]
    # Not "on": YAML 1.1 reads a bare ``on`` key as the boolean true.
    applies_to: list[Literal["input", "output"]] = Field(["input", "output"], min_length=1)

    @field_validator("regex")
    @classmethod
    def _safe_pattern(cls, value: str | None) -> str | None:
        """A pattern that compiles and cannot backtrack exponentially (``regex_safety``)."""
        if value is not None:
            try:
                regex_safety.check(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> RuleSpec:
        kinds = [k for k in ("entities", "regex", "keywords", "max_input_tokens", "models")
                 if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a rule names exactly one of: entities, regex, keywords, "
                             "max_input_tokens, models")
        self.rule()  # the rule's own checks (a pattern that compiles, an action that fits)
        return self

    def rule(self) -> Rule:
        kind = next(k for k in ("entities", "regex", "keywords", "max_input_tokens", "models")
                    if getattr(self, k) is not None)
        return Rule(kind, self.action, frozenset(self.applies_to),
                    entities=frozenset(self.entities or ()), pattern=self.regex,
                    keywords=tuple(self.keywords or ()), limit=self.max_input_tokens,
                    models=frozenset(self.models or ()))


class PolicySpec(_Strict):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: int = Field(1, ge=1, le=1_000_000)
    description: str = Field("", max_length=2000)
    rules: list[RuleSpec] = Field(min_length=1, max_length=1000)

    def policy(self) -> GuardrailPolicy:
        return GuardrailPolicy(self.name, self.version, tuple(r.rule() for r in self.rules),
                               self.description)


class AttachSpec(_Strict):
    policy: str = Field(min_length=1, max_length=200)
    team: str | None = Field(None, min_length=1, max_length=200, description="a team name")
    model: str | None = Field(None, min_length=1, max_length=200)
    key: str | None = Field(None, min_length=1, max_length=200, description="a key id")

    @model_validator(mode="after")
    def _at_most_one(self) -> AttachSpec:
        if sum(x is not None for x in (self.team, self.model, self.key)) > 1:
            raise ValueError("an attachment names at most one of: team, model, key "
                             "(none: the whole platform)")
        return self

    def attachment(self) -> Attachment:
        for scope in ("team", "model", "key"):
            target = getattr(self, scope)
            if target is not None:
                return Attachment(self.policy, scope, target)
        return Attachment(self.policy, "global")


class GuardrailsSpec(_Strict):
    policies: list[PolicySpec] = []
    attach: list[AttachSpec] = []

    @model_validator(mode="after")
    def _consistent(self) -> GuardrailsSpec:
        names = [p.name for p in self.policies]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"policies[{index}].name: a second policy named {name!r}")
        for index, attach in enumerate(self.attach):
            if attach.policy not in names:
                raise ValueError(f"attach[{index}].policy: {attach.policy!r} is not one of the "
                                 "policies above")
        return self

    def guardrails(self, team_ids: dict[str, str] | None = None) -> Guardrails:
        """The policies and attachments, team attachments by id (``team_ids``: name → id; an
        attachment to a team that does not exist yet waits for it, as limits do)."""
        attachments = []
        for spec in self.attach:
            attachment = spec.attachment()
            if attachment.scope == "team":
                if team_ids is None or attachment.target not in team_ids:
                    continue
                attachment = Attachment(attachment.policy, "team", team_ids[attachment.target])
            attachments.append(attachment)
        return Guardrails({p.name: p.policy() for p in self.policies}, tuple(attachments))
