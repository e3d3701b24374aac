"""The chargeback report's JSON, described for the OpenAPI document. No I/O.

The routes answer ``metering.chargeback_report.report_json``'s dict as it is; these models say
what that JSON holds, and a test keeps the two equal.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ChargebackLineOut(BaseModel):
    """A team's part of one deployment's GPU cost in one bucket, or the part nobody used."""

    start: str = Field(description="The bucket's start (UTC, ISO 8601)")
    deployment: str
    kind: str = Field(description="team, or idle: the cost no team's work accounts for")
    team_id: str | None = Field(description="null on the idle line, and for keys in no team")
    cost: str = Field(description="Decimal text in the platform currency")
    cost_cents: int = Field(description="The same in cents; a deployment's lines add up to its "
                            "cost exactly")
    share_percent: float = Field(description="Of the deployment's cost in the bucket")
    work: float = Field(description="Engine work the team's requests caused (cost-model units)")
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


class ChargebackDeploymentOut(BaseModel):
    """One deployment in one bucket: its GPU cost and how it was shared."""

    start: str
    deployment: str
    cost: str
    cost_cents: int
    teams_cost_cents: int
    idle_cost_cents: int
    costed_hours: float = Field(description="Hours of the bucket the deployment was costed for")
    work: float
    capacity: float = Field(description="Work it could have done in those hours (0: not "
                            "calibrated)")


class ChargebackTotalsOut(BaseModel):
    cost: str
    cost_cents: int
    idle_cost_cents: int


class ChargebackReportOut(BaseModel):
    object: str = Field("chargeback.report")
    from_: str = Field(alias="from", description="Start (inclusive)")
    to: str = Field(description="End (exclusive)")
    granularity: str = Field(description="period, day or hour")
    view: str = Field(description="showback (idle cost apart) or chargeback (spread over the "
                      "teams)")
    filters: dict[str, str]
    currency: str
    current_to: str | None = Field(description="The rollups hold the ledger as it was then")
    data: list[ChargebackLineOut]
    deployments: list[ChargebackDeploymentOut] = Field(
        description="Per deployment and bucket; only for platform roles")
    totals: ChargebackTotalsOut = Field(description="Over this page's lines")
    next_after: str | None = Field(description=(
        "By hour: where the next page starts (pass it as `after`); null on the last page and "
        "for reports by period or day, which come whole"))
