"""Request and response bodies of ``POST /apply`` (config as code). No I/O.

The file itself is usually the raw request body (``application/yaml``); ``ApplyFile`` is the
JSON form, which also names the file for messages (``source``). ``ApplyOut`` is
``inferenceops.apply.ApplyPlan`` as JSON: the changes, and the same summary the CLI prints.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from inferenceops.config.apply import ApplyPlan, Change

DEFAULT_SOURCE = "request body"


class ApplyFile(BaseModel):
    """The JSON form of the request: the platform file's text, and what to call it in messages."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="The platform YAML's text (JSON is YAML too)")
    source: str = Field(DEFAULT_SOURCE, min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]+$",
                        description="The file's name, quoted in error messages (e.g. platform.yaml)")


class ChangeOut(BaseModel):
    action: Literal["create", "update", "delete"]
    kind: Literal["provider", "deployment", "model", "adapter"]
    name: str
    fields: list[str] = Field(description="What an update changes (dotted for nested fields)")
    adopt: bool = Field(description="A row made through the admin API that the file now manages")

    @classmethod
    def of(cls, change: Change) -> ChangeOut:
        return cls(action=change.action, kind=change.kind, name=change.name,
                   fields=list(change.fields), adopt=change.adopt)


class ApplyOut(BaseModel):
    dry_run: bool = Field(description="True: the changes were planned, nothing was written")
    changes: list[ChangeOut] = Field(description="Empty: the store already matches the file")
    summary: str = Field(description="The changes for people, one per line")

    @classmethod
    def of(cls, plan: ApplyPlan, *, dry_run: bool) -> ApplyOut:
        # ``dry_run`` as asked: ``apply_platform`` hands back a plan marked as a dry run when
        # there was nothing to change, even on a real apply.
        return cls(dry_run=dry_run, changes=[ChangeOut.of(c) for c in plan.changes],
                   summary=plan.text())
