"""The admission part of the platform YAML: currency, limits, budgets, team weights (and
teams' body retention, ``platform.retention``).

Validated with the rest of the file (errors name the line). Teams are named
here, not identified: the names are resolved against the store each time the
snapshot is built (``StaticPolicy.rules``), so a rule for a team that does not
exist yet starts to apply when the team is created.

    currency: USD
    teams:
      - {name: ml, weight: 3}
      - {name: legal, retention: store, retention_days: 30}   # bodies kept, redacted
      - {name: health, retention: zero}                       # no body written anywhere
    limits:
      - {key: "*", rpm: 600}                    # every key by itself
      - {team: ml, tpm: 200000, concurrency: 32}
      - {model: demo-chat, rpm: 6000}
      - {team: ml, model: demo-chat, tpm: 50000}
    budgets:
      - {team: ml, amount: "500", currency: USD, period: monthly, mode: hard}
      - {key: "*", amount: "20", currency: USD, period: daily, mode: soft}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inferenceops.guardrails.spec import GuardrailsSpec
from inferenceops.platform.policy import (
    CURRENCIES,
    MAX_COUNTER,
    NANOS,
    Budget,
    BudgetRule,
    LimitRule,
    Period,
    RateLimit,
    Scope,
    to_nanos,
)
from inferenceops.platform.retention import DEFAULT, MAX_DAYS, Retention

PositiveInt = Annotated[int, Field(ge=1, le=MAX_COUNTER)]
#: At most MAX_COUNTER nano-units (about 9 million): what a ledger counts exactly.
Money = Annotated[Decimal, Field(gt=0, le=Decimal(MAX_COUNTER) / NANOS, max_digits=18,
                                 decimal_places=9)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_currency(value: str) -> str:
    code = value.upper()
    if code not in CURRENCIES:
        raise ValueError(f"unknown currency {value!r}; use an ISO 4217 code such as USD or EUR")
    return code


class TeamSpec(_Strict):
    name: str = Field(min_length=1, max_length=200)
    weight: int = Field(1, ge=1, le=1000, description="share of a saturated deployment")
    retention: Literal["none", "store", "zero"] = Field(
        "none", description="request and response bodies: never stored (none), stored redacted "
                            "for retention_days (store), or zero retention (zero)")
    retention_days: int | None = Field(None, ge=1, le=MAX_DAYS)

    @model_validator(mode="after")
    def _days_with_store(self) -> TeamSpec:
        if (self.retention == "store") != (self.retention_days is not None):
            raise ValueError("'retention_days' is required with retention: store, and only with it")
        return self

    @property
    def body_retention(self) -> Retention:
        return Retention(self.retention, self.retention_days)


class LimitSpec(_Strict):
    key: str | None = Field(None, description='a key id, or "*" for every key by itself')
    team: str | None = Field(None, description='a team name, or "*" for every team by itself')
    model: str | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    concurrency: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> LimitSpec:
        if self.rpm is None and self.tpm is None and self.concurrency is None:
            raise ValueError("a limit needs at least one of rpm, tpm, concurrency")
        if self.scope is None:
            raise ValueError("a limit applies to one of: key, team, model, or team + model")
        if self.model is not None and self.team == "*":
            raise ValueError('team "*" cannot be combined with a model; name the team')
        return self

    @property
    def scope(self) -> Scope | None:
        given = (self.key is not None, self.team is not None, self.model is not None)
        return {(True, False, False): Scope.KEY, (False, True, False): Scope.TEAM,
                (False, False, True): Scope.MODEL, (False, True, True): Scope.TEAM_MODEL}.get(given)


class BudgetSpec(_Strict):
    key: str | None = Field(None, description='a key id, or "*" for every key by itself')
    team: str | None = Field(None, description='a team name, or "*" for every team by itself')
    amount: Money
    currency: str
    period: Period
    mode: Literal["hard", "soft"] = "hard"

    _currency = field_validator("currency")(check_currency)

    @model_validator(mode="after")
    def _one_owner(self) -> BudgetSpec:
        if (self.key is None) == (self.team is None):
            raise ValueError("a budget belongs to exactly one of: team, key")
        return self


@dataclass(frozen=True)
class StaticPolicy:
    """What the YAML declares, with teams still by name."""

    currency: str = "USD"
    teams: tuple[TeamSpec, ...] = ()
    limits: tuple[LimitSpec, ...] = ()
    budgets: tuple[BudgetSpec, ...] = ()
    #: The ``guardrails:`` section (policies, attachments with teams by name), if any.
    guardrails: GuardrailsSpec | None = None

    def team_weights(self, team_ids: Mapping[str, str]) -> dict[str, int]:
        return {team_ids[t.name]: t.weight for t in self.teams if t.name in team_ids}

    def team_retention(self, team_ids: Mapping[str, str]) -> dict[str, Retention]:
        """The body retention the file sets for teams that exist (the default left out)."""
        return {team_ids[t.name]: t.body_retention for t in self.teams
                if t.name in team_ids and t.body_retention != DEFAULT}

    def limit_rules(self, team_ids: Mapping[str, str]) -> Iterator[LimitRule]:
        """Rules whose teams exist; a rule naming an unknown team waits for it to be created."""
        for spec in self.limits:
            scope = spec.scope
            assert scope is not None
            limit = RateLimit(spec.rpm, spec.tpm, spec.concurrency)
            if scope is Scope.KEY:
                yield LimitRule(scope, spec.key, limit)  # type: ignore[arg-type]
            elif scope is Scope.MODEL:
                yield LimitRule(scope, spec.model, limit)  # type: ignore[arg-type]
            else:
                team = "*" if spec.team == "*" else team_ids.get(spec.team or "")
                if team is None:
                    continue
                subject = team if scope is Scope.TEAM else (team, spec.model)
                yield LimitRule(scope, subject, limit)  # type: ignore[arg-type]

    def budget_rules(self, team_ids: Mapping[str, str]) -> Iterator[BudgetRule]:
        for spec in self.budgets:
            budget = Budget(to_nanos(spec.amount), spec.period, spec.mode == "hard")
            if spec.key is not None:
                yield BudgetRule(Scope.KEY, spec.key, budget)
            elif spec.team == "*":
                yield BudgetRule(Scope.TEAM, "*", budget)
            elif spec.team in team_ids:
                yield BudgetRule(Scope.TEAM, team_ids[spec.team], budget)  # type: ignore[index]
