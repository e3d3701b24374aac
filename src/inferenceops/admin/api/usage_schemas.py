"""The usage report's JSON, described for the OpenAPI document. No I/O.

The routes answer ``metering.reports.report_json``'s dict as it is (a report may hold tens
of thousands of rows: validating each through pydantic would cost more than reading them);
these models say what that JSON holds, and a test keeps the two equal.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class UsageMeasures(BaseModel):
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = Field(description="Of the prompt tokens, those the engine's prefix cache served")
    estimated_requests: int = Field(description="Requests whose tokens the gateway counted (no engine did)")
    errors: int = Field(description="Requests that ended in an error (status >= 400, or cut short)")
    cost_nanos: int = Field(description="Cost in nano-units (1e-9) of the platform currency")
    cost: str = Field(description="The same cost as decimal text")


class UsageRowOut(UsageMeasures):
    """One bucket of one group; only the dimensions asked for in ``group_by`` are present."""

    model_config = ConfigDict(extra="allow")

    start: str = Field(description="The bucket's start (UTC, ISO 8601)")
    team_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    deployment: str | None = None
    adapter: str | None = None


class UsageReportOut(BaseModel):
    object: str = Field("usage.report")
    from_: str = Field(alias="from", description="Start of the first bucket (inclusive)")
    to: str = Field(description="End of the last bucket (exclusive)")
    granularity: str
    group_by: list[str]
    filters: dict[str, str]
    currency: str
    current_to: str | None = Field(description="The rollups hold the ledger as it was then "
                                   "(they lag it by about the rollup interval)")
    data: list[UsageRowOut]
    totals: UsageMeasures


class UsageRecordOut(BaseModel):
    """One request as the ledger recorded it: who, what, how it went, and what guardrail
    policies found and did (``guardrails``: entity types and actions, never text)."""

    id: int
    request_id: str
    at: str = Field(description="When it ended (UTC, ISO 8601)")
    team_id: str | None
    key_id: str
    model: str | None
    deployment: str | None
    replica: str | None = Field(None, description="The replica that served it")
    adapter: str | None = Field(None, description="The LoRA adapter it named (then `model` is "
                                "the adapter's base model)")
    endpoint: str
    status: int
    error_code: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_nanos: int
    guardrails: str | None = Field(description="`pii@2 card:block email:redact×2`: the "
                                   "policies that applied, then each finding's entity and action")


class UsageRecordsOut(BaseModel):
    object: str = Field("list")
    data: list[UsageRecordOut]
    next_after: str | None = Field(description="Pass back as `after` for older records")
