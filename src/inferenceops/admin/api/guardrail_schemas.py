"""The admin API's guardrail bodies: policies and attachments in, and out. No I/O.

A policy's ``rules`` are the platform file's rule objects (``guardrails.spec.RuleSpec``: the
same parser, the same messages), so a rule is written the same way in the file, in a
``PUT`` body and in ``inferenceops guardrails apply -f``. Where a policy or attachment comes
from is in ``source``: ``api`` (the store; changed here) or ``file`` (the platform file;
read-only here: ``read_only`` is true, and it has no id or times).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from inferenceops.guardrails.spec import AttachSpec, PolicySpec, RuleSpec
from inferenceops.store.records_guardrails import GuardrailAttachmentRecord, GuardrailPolicyRecord

Source = Literal["api", "file"]
PolicyName = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyBody(_Request):
    """A policy's content: what ``PUT /guardrails/policies/{name}`` sets (a change adds one to
    the version)."""

    description: str = Field("", max_length=2000)
    rules: list[RuleSpec] = Field(min_length=1, max_length=1000)

    def rule_dicts(self) -> list[dict[str, Any]]:
        return [r.model_dump(mode="json", exclude_none=True) for r in self.rules]


class PolicyCreate(PolicyBody):
    name: str = PolicyName


class PolicyOut(BaseModel):
    name: str
    version: int
    label: str = Field(description="name@version: what usage records and metrics name")
    description: str
    rules: list[dict[str, Any]]
    source: Source
    read_only: bool = Field(description="Defined in the platform file: change it there")
    id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def of(cls, r: GuardrailPolicyRecord) -> PolicyOut:
        return cls(name=r.name, version=r.version, label=f"{r.name}@{r.version}",
                   description=r.description, rules=list(r.rules), source="api",
                   read_only=False, id=r.id, created_at=r.created_at, updated_at=r.updated_at)

    @classmethod
    def of_file(cls, spec: PolicySpec) -> PolicyOut:
        return cls(name=spec.name, version=spec.version, label=f"{spec.name}@{spec.version}",
                   description=spec.description,
                   rules=[r.model_dump(mode="json", exclude_none=True) for r in spec.rules],
                   source="file", read_only=True)


class AttachmentCreate(_Request):
    """Attach ``policy`` (of the store or the platform file) to the platform (``global``), a
    team (``team_id``), a model (``model``: its name) or a key (``key_id``)."""

    policy: str = PolicyName
    scope: Literal["global", "team", "model", "key"]
    team_id: str | None = Field(None, max_length=200)
    model: str | None = Field(None, max_length=200)
    key_id: str | None = Field(None, max_length=200)


class AttachmentOut(BaseModel):
    id: str | None = Field(description="None for the platform file's (detach them there)")
    policy: str
    scope: str
    team_id: str | None = None
    team_name: str | None = Field(None, description="The platform file names teams by name")
    model: str | None = None
    key_id: str | None = None
    source: Source
    created_at: datetime | None = None

    @classmethod
    def of(cls, r: GuardrailAttachmentRecord) -> AttachmentOut:
        return cls(id=r.id, policy=r.policy, scope=r.scope, team_id=r.team_id, model=r.model,
                   key_id=r.key_id, source="api", created_at=r.created_at)

    @classmethod
    def of_file(cls, spec: AttachSpec, team_id: str | None) -> AttachmentOut:
        scope = next((s for s in ("team", "model", "key") if getattr(spec, s) is not None),
                     "global")
        return cls(id=None, policy=spec.policy, scope=scope, team_id=team_id,
                   team_name=spec.team, model=spec.model, key_id=spec.key, source="file")
