"""Operators' admission rules: rate limits and budgets, set per subject, read, listed, deleted.

A *subject* is what a rule is about: a key, a team, a model, or a team on a
model (budgets: a team or a key). Each subject has at most one limit, and at
most one budget per period; ``set_limit`` / ``set_budget`` create it or replace
it whole (values not given become unset). The unique ``subject`` column
(``key:<id>``, ``team:<id>``, ``model:<name>``, ``team_model:<id>/<name>``) is
derived here, and is what keeps "one per subject" true when two writers race.

Validation failures are ``Invalid`` naming the field; an unknown key or team
is ``NotFound``. Every mutation bumps the revision (the rules are part of the
snapshot); reads never do. Money is integer nano-units (``platform.policy``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.platform.policy import CURRENCIES, MAX_COUNTER
from inferenceops.store.errors import Conflict, Invalid, NotFound, translating
from inferenceops.store.records import BudgetRecord, LimitRecord, Page
from inferenceops.store.repo._common import bump_revision, check_choice, check_name, page
from inferenceops.store.tables_admission import (
    BUDGET_MODES,
    BUDGET_SCOPES,
    LIMIT_SCOPES,
    PERIODS,
    Budget,
    Limit,
)
from inferenceops.store.tables_identity import ApiKey, Team

#: The largest limit or nano-amount: what the ledgers count exactly (below BIGINT's 2**63 - 1).
MAX_VALUE = MAX_COUNTER
#: Which subject columns each scope needs; the others must be absent.
_LIMIT_SUBJECT = {"key": ("key_id",), "team": ("team_id",), "model": ("model",),
                  "team_model": ("team_id", "model")}
_BUDGET_SUBJECT = {"team": ("team_id",), "key": ("key_id",)}
_ROW = TypeVar("_ROW", Limit, Budget)


def limit_record(row: Limit) -> LimitRecord:
    return LimitRecord(row.id, row.scope, row.key_id, row.team_id, row.model, row.rpm, row.tpm,
                       row.concurrency, row.created_at, row.updated_at)


def budget_record(row: Budget) -> BudgetRecord:
    return BudgetRecord(row.id, row.scope, row.key_id, row.team_id, row.amount_nanos, row.currency,
                        row.period, row.mode, row.created_at, row.updated_at)


# ---- validation -------------------------------------------------------------------------------

def _subject_columns(kind: str, scope: str, needs: Mapping[str, tuple[str, ...]],
                     given: dict[str, str | None]) -> dict[str, str | None]:
    """The subject columns for ``scope``: required ones present, the others absent."""
    check_choice(f"a {kind} scope", scope, tuple(needs), field="scope")
    for column in needs[scope]:  # what is missing first: it says what the scope is about
        if given[column] is None:
            raise Invalid(f"a {scope} {kind} needs {column}", field=column)
    for column, value in given.items():
        if column not in needs[scope] and value is not None:
            raise Invalid(f"a {scope} {kind} takes no {column} (it applies to "
                          f"{' + '.join(needs[scope])})", field=column)
    if given.get("model") is not None:
        given["model"] = check_name("a model name", given["model"] or "", field="model")
    return given


def subject_of(scope: str, key_id: str | None, team_id: str | None, model: str | None) -> str:
    """The unique subject text: ``key:<id>``, ``team:<id>``, ``model:<name>``, ``team_model:<id>/<name>``."""
    if scope == "key":
        return f"key:{key_id}"
    if scope == "team":
        return f"team:{team_id}"
    if scope == "model":
        return f"model:{model}"
    return f"team_model:{team_id}/{model}"  # team ids never contain "/"


def _positive(field: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_VALUE:
        raise Invalid(f"{field} must be a whole number from 1 to {MAX_VALUE}, not {value!r}",
                      field=field)
    return value


async def _check_refs(session: AsyncSession, key_id: str | None, team_id: str | None) -> None:
    if key_id is not None and await session.get(ApiKey, key_id) is None:
        raise NotFound(f"no API key with id {key_id!r}")
    if team_id is not None and await session.get(Team, team_id) is None:
        raise NotFound(f"no team with id {team_id!r}")


async def _upsert(session: AsyncSession, stmt: Select[Any], make: Callable[[], _ROW],
                  values: dict[str, Any], doing: str) -> tuple[_ROW, bool]:
    """Replace the row ``stmt`` finds (locked) with ``values``, else insert ``make()``.

    The insert runs in a savepoint: if a concurrent writer created the same
    subject first (a unique violation), its row is replaced instead.
    """
    for attempt in range(2):
        row = (await session.execute(stmt.with_for_update())).scalar_one_or_none()
        if row is not None:
            for name, value in values.items():
                setattr(row, name, value)
            with translating(doing):
                await session.flush()
            return row, False
        new = make()
        try:
            with translating(doing):
                async with session.begin_nested():
                    session.add(new)
        except Conflict:
            if attempt:
                raise
            continue
        return new, True
    raise AssertionError("unreachable")  # pragma: no cover


def _team_filter(column_team: Any, column_key: Any, team_id: str) -> Any:
    """Rules about a team: its own (team, team_model) and those of its keys."""
    return or_(column_team == team_id,
               column_key.in_(select(ApiKey.id).where(ApiKey.team_id == team_id)))


# ---- limits -----------------------------------------------------------------------------------

async def set_limit(
    session: AsyncSession, *, scope: str, key_id: str | None = None, team_id: str | None = None,
    model: str | None = None, rpm: int | None = None, tpm: int | None = None,
    concurrency: int | None = None,
) -> tuple[LimitRecord, bool]:
    """Create or replace the limit of a subject; returns (the limit, whether it was created).

    Replacing sets all three values: one not given becomes unlimited.
    """
    subject = _subject_columns("limit", scope, _LIMIT_SUBJECT,
                               {"key_id": key_id, "team_id": team_id, "model": model})
    values = {"rpm": _positive("rpm", rpm), "tpm": _positive("tpm", tpm),
              "concurrency": _positive("concurrency", concurrency)}
    if all(v is None for v in values.values()):
        raise Invalid("set at least one of rpm, tpm, concurrency", field="rpm")
    await _check_refs(session, subject["key_id"], subject["team_id"])
    text = subject_of(scope, subject["key_id"], subject["team_id"], subject["model"])
    row, created = await _upsert(
        session, select(Limit).where(Limit.subject == text),
        lambda: Limit(scope=scope, subject=text, **subject, **values), values,
        f"setting the limit of {text}")
    await bump_revision(session)
    return limit_record(row), created


async def find_limit(session: AsyncSession, *, scope: str, key_id: str | None = None,
                     team_id: str | None = None, model: str | None = None) -> LimitRecord | None:
    """The limit of exactly this subject, or None (``Invalid`` for a malformed subject)."""
    subject = _subject_columns("limit", scope, _LIMIT_SUBJECT,
                               {"key_id": key_id, "team_id": team_id, "model": model})
    text = subject_of(scope, subject["key_id"], subject["team_id"], subject["model"])
    row = (await session.execute(select(Limit).where(Limit.subject == text))).scalar_one_or_none()
    return None if row is None else limit_record(row)


async def get_limit(session: AsyncSession, limit_id: str) -> LimitRecord:
    row = await session.get(Limit, limit_id)
    if row is None:
        raise NotFound(f"no limit with id {limit_id!r}")
    return limit_record(row)


async def list_limits(
    session: AsyncSession, *, scope: str | None = None, team_id: str | None = None,
    key_id: str | None = None, model: str | None = None, limit: int = 100, after: str | None = None,
) -> Page[LimitRecord]:
    """Limits matching every filter, ordered by id; ``after`` is the previous page's last id.

    ``team_id`` matches the team's own limits (team, team_model) and those of its keys.
    """
    stmt = select(Limit)
    if scope is not None:
        stmt = stmt.where(Limit.scope == check_choice("a limit scope", scope, LIMIT_SCOPES,
                                                       field="scope"))
    if team_id is not None:
        stmt = stmt.where(_team_filter(Limit.team_id, Limit.key_id, team_id))
    if key_id is not None:
        stmt = stmt.where(Limit.key_id == key_id)
    if model is not None:
        stmt = stmt.where(Limit.model == model)
    return await page(session, stmt, Limit.id, after, limit, limit_record, lambda r: r.id)


async def delete_limit(session: AsyncSession, limit_id: str) -> None:
    result = await session.execute(delete(Limit).where(Limit.id == limit_id))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"no limit with id {limit_id!r}")
    await bump_revision(session)


# ---- budgets ----------------------------------------------------------------------------------

async def set_budget(
    session: AsyncSession, *, scope: str, key_id: str | None = None, team_id: str | None = None,
    amount_nanos: int, currency: str, period: str, mode: str = "hard",
) -> tuple[BudgetRecord, bool]:
    """Create or replace the budget of a subject for ``period``; returns (budget, whether created)."""
    subject = _subject_columns("budget", scope, _BUDGET_SUBJECT, {"key_id": key_id, "team_id": team_id})
    values = {"amount_nanos": _positive("amount_nanos", amount_nanos),
              "currency": check_choice("a currency", currency, sorted(CURRENCIES), field="currency"),
              "mode": check_choice("a budget mode", mode, BUDGET_MODES, field="mode")}
    check_choice("a budget period", period, PERIODS, field="period")
    await _check_refs(session, subject["key_id"], subject["team_id"])
    text = subject_of(scope, subject["key_id"], subject["team_id"], None)
    row, created = await _upsert(
        session, select(Budget).where(Budget.subject == text, Budget.period == period),
        lambda: Budget(scope=scope, subject=text, period=period, **subject, **values), values,
        f"setting the {period} budget of {text}")
    await bump_revision(session)
    return budget_record(row), created


async def find_budget(session: AsyncSession, *, scope: str, period: str, key_id: str | None = None,
                      team_id: str | None = None) -> BudgetRecord | None:
    """The budget of exactly this subject and period, or None."""
    subject = _subject_columns("budget", scope, _BUDGET_SUBJECT, {"key_id": key_id, "team_id": team_id})
    text = subject_of(scope, subject["key_id"], subject["team_id"], None)
    row = (await session.execute(select(Budget).where(
        Budget.subject == text, Budget.period == period))).scalar_one_or_none()
    return None if row is None else budget_record(row)


async def get_budget(session: AsyncSession, budget_id: str) -> BudgetRecord:
    row = await session.get(Budget, budget_id)
    if row is None:
        raise NotFound(f"no budget with id {budget_id!r}")
    return budget_record(row)


async def list_budgets(
    session: AsyncSession, *, scope: str | None = None, team_id: str | None = None,
    key_id: str | None = None, period: str | None = None, limit: int = 100, after: str | None = None,
) -> Page[BudgetRecord]:
    """Budgets matching every filter, ordered by id; ``team_id`` also matches its keys' budgets."""
    stmt = select(Budget)
    if scope is not None:
        stmt = stmt.where(Budget.scope == check_choice("a budget scope", scope, BUDGET_SCOPES,
                                                        field="scope"))
    if team_id is not None:
        stmt = stmt.where(_team_filter(Budget.team_id, Budget.key_id, team_id))
    if key_id is not None:
        stmt = stmt.where(Budget.key_id == key_id)
    if period is not None:
        stmt = stmt.where(Budget.period == check_choice("a budget period", period, PERIODS,
                                                         field="period"))
    return await page(session, stmt, Budget.id, after, limit, budget_record, lambda r: r.id)


async def delete_budget(session: AsyncSession, budget_id: str) -> None:
    result = await session.execute(delete(Budget).where(Budget.id == budget_id))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"no budget with id {budget_id!r}")
    await bump_revision(session)


# ---- keys -------------------------------------------------------------------------------------

async def copy_key_rules(session: AsyncSession, from_key_id: str, to_key_id: str) -> int:
    """Give ``to_key_id`` the limit and budgets of ``from_key_id`` (a rotation); returns how many.

    Without it, rotating a key would shed its limits. The caller bumps the revision.
    """
    copied = 0
    subject = subject_of("key", to_key_id, None, None)
    for old_limit in (await session.execute(select(Limit).where(Limit.key_id == from_key_id))).scalars():
        session.add(Limit(scope="key", subject=subject, key_id=to_key_id, rpm=old_limit.rpm,
                          tpm=old_limit.tpm, concurrency=old_limit.concurrency))
        copied += 1
    for b in (await session.execute(select(Budget).where(Budget.key_id == from_key_id))).scalars():
        session.add(Budget(scope="key", subject=subject, key_id=to_key_id, amount_nanos=b.amount_nanos,
                           currency=b.currency, period=b.period, mode=b.mode))
        copied += 1
    with translating(f"copying the limits and budgets of key {from_key_id!r}"):
        await session.flush()
    return copied
