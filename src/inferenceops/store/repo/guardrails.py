"""Guardrail policies and attachments set through the admin API: create, change, list, delete.

A policy is validated here by the platform file's own parser (``guardrails.spec.PolicySpec``),
so a stored policy means exactly what the same text in the file would; a failure is
``Invalid`` naming the field (``rules.0.regex``). Its ``name`` never changes; every change
of its rules or description adds one to ``version`` (a change to nothing changes nothing).

An attachment names its policy by name: one of this table's, or one of the platform file's
(the caller passes those names in ``file_policies``: the store does not read the file). Its
subject must exist when it is made: a team or key id, a model's name; else ``Invalid``
naming ``team_id``/``key_id``/``model``. One attachment per (policy, subject): attaching
again returns the one there is. A policy that is attached somewhere cannot be deleted
(``Conflict``: detach it first), so no attachment ever names a policy that is gone from the
store. Every mutation bumps the revision (policies are part of the snapshot).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.guardrails.spec import PolicySpec
from inferenceops.store.errors import Conflict, Invalid, NotFound, translating
from inferenceops.store.records import Page
from inferenceops.store.records_guardrails import (
    GuardrailAttachmentRecord,
    GuardrailPolicyRecord,
    StoredGuardrails,
)
from inferenceops.store.repo._common import bump_revision, check_choice, page
from inferenceops.store.repo.catalog_specs import validated
from inferenceops.store.tables_catalog import Model
from inferenceops.store.tables_guardrails import (
    ATTACH_SCOPES,
    GuardrailAttachment,
    GuardrailPolicy,
)
from inferenceops.store.tables_identity import ApiKey, Team

_SUBJECT = {"global": (), "team": ("team_id",), "model": ("model",), "key": ("key_id",)}


def policy_record(row: GuardrailPolicy) -> GuardrailPolicyRecord:
    return GuardrailPolicyRecord(row.id, row.name, row.version, row.description,
                                 tuple(row.rules), row.created_at, row.updated_at)


def attachment_record(row: GuardrailAttachment) -> GuardrailAttachmentRecord:
    return GuardrailAttachmentRecord(row.id, row.policy, row.scope, row.team_id, row.model,
                                     row.key_id, row.created_at)


def _checked(name: str, description: str, rules: Any) -> tuple[str, list[dict[str, Any]]]:
    """The description and rules as the platform file's parser reads them (JSON to store)."""
    spec = validated(PolicySpec, {"name": name, "description": description, "rules": rules},
                     "a guardrail policy")
    return spec.description, [r.model_dump(mode="json", exclude_none=True) for r in spec.rules]


# ---- policies ---------------------------------------------------------------------------------

async def create_policy(session: AsyncSession, name: str, rules: Any, *, description: str = "",
                        file_policies: Collection[str] = ()) -> GuardrailPolicyRecord:
    """A new policy at version 1; ``Conflict`` when the name is taken (here or in the file)."""
    description, checked = _checked(name, description, rules)
    if name in file_policies:
        raise Conflict(f"a guardrail policy named {name!r} is defined in the platform file")
    row = GuardrailPolicy(name=name, version=1, description=description, rules=checked)
    with translating(f"creating the guardrail policy {name!r}"):
        async with session.begin_nested():
            session.add(row)
    await bump_revision(session)
    return policy_record(row)


async def update_policy(session: AsyncSession, name: str, rules: Any, *,
                        description: str = "") -> tuple[GuardrailPolicyRecord, bool]:
    """Replace the rules and description; returns (the policy, whether anything changed).
    A change adds one to the version; the same content again changes nothing."""
    row = await _policy_row(session, name, lock=True)
    description, checked = _checked(name, description, rules)
    if row.rules == checked and row.description == description:
        return policy_record(row), False
    row.rules, row.description, row.version = checked, description, row.version + 1
    with translating(f"changing the guardrail policy {name!r}"):
        await session.flush()
    await bump_revision(session)
    return policy_record(row), True


async def get_policy(session: AsyncSession, name: str) -> GuardrailPolicyRecord:
    return policy_record(await _policy_row(session, name))


async def find_policy(session: AsyncSession, name: str) -> GuardrailPolicyRecord | None:
    row = (await session.execute(select(GuardrailPolicy).where(GuardrailPolicy.name == name))
           ).scalar_one_or_none()
    return None if row is None else policy_record(row)


async def list_policies(session: AsyncSession, *, limit: int = 100,
                        after: str | None = None) -> Page[GuardrailPolicyRecord]:
    """Policies by name; ``after`` is the previous page's last name."""
    return await page(session, select(GuardrailPolicy), GuardrailPolicy.name, after, limit,
                      policy_record, lambda r: r.name)


async def delete_policy(session: AsyncSession, name: str) -> GuardrailPolicyRecord:
    """Delete a policy attached nowhere (``Conflict`` otherwise); returns what it was."""
    row = await _policy_row(session, name, lock=True)
    attached = (await session.execute(select(func.count()).select_from(GuardrailAttachment)
                                      .where(GuardrailAttachment.policy == name))).scalar_one()
    if attached:
        raise Conflict(f"the guardrail policy {name!r} is attached {attached} time(s); "
                       "detach it first")
    record = policy_record(row)
    await session.execute(delete(GuardrailPolicy).where(GuardrailPolicy.id == row.id))
    await bump_revision(session)
    return record


async def _policy_row(session: AsyncSession, name: str, *, lock: bool = False) -> GuardrailPolicy:
    stmt = select(GuardrailPolicy).where(GuardrailPolicy.name == name)
    row = (await session.execute(stmt.with_for_update() if lock else stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no guardrail policy named {name!r}")
    return row


# ---- attachments ------------------------------------------------------------------------------

async def attach(session: AsyncSession, policy: str, scope: str, *, team_id: str | None = None,
                 model: str | None = None, key_id: str | None = None,
                 file_policies: Collection[str] = ()) -> tuple[GuardrailAttachmentRecord, bool]:
    """Attach ``policy`` to a subject; returns (the attachment, whether it was made now)."""
    check_choice("an attachment's scope", scope, ATTACH_SCOPES, field="scope")
    given = {"team_id": team_id, "model": model, "key_id": key_id}
    for column, value in given.items():
        if column in _SUBJECT[scope] and value is None:
            raise Invalid(f"a {scope} attachment needs {column}", field=column)
        if column not in _SUBJECT[scope] and value is not None:
            raise Invalid(f"a {scope} attachment takes no {column}", field=column)
    if policy not in file_policies and await find_policy(session, policy) is None:
        raise Invalid(f"no guardrail policy named {policy!r} (in the store or the platform "
                      "file)", field="policy")
    await _check_subject(session, team_id, model, key_id)
    subject = scope if scope == "global" else f"{scope}:{team_id or model or key_id}"
    found = (await session.execute(select(GuardrailAttachment).where(
        GuardrailAttachment.policy == policy, GuardrailAttachment.subject == subject))
    ).scalar_one_or_none()
    if found is not None:
        return attachment_record(found), False
    row = GuardrailAttachment(policy=policy, scope=scope, subject=subject, **given)
    with translating(f"attaching the guardrail policy {policy!r} to {subject}"):
        async with session.begin_nested():
            session.add(row)
    await bump_revision(session)
    return attachment_record(row), True


async def _check_subject(session: AsyncSession, team_id: str | None, model: str | None,
                         key_id: str | None) -> None:
    if team_id is not None and await session.get(Team, team_id) is None:
        raise Invalid(f"no team with id {team_id!r}", field="team_id")
    if key_id is not None and await session.get(ApiKey, key_id) is None:
        raise Invalid(f"no API key with id {key_id!r}", field="key_id")
    if model is not None and (await session.execute(
            select(Model.id).where(Model.name == model))).scalar_one_or_none() is None:
        raise Invalid(f"no model named {model!r} (attach to a model's name, not an alias)",
                      field="model")


async def get_attachment(session: AsyncSession, attachment_id: str) -> GuardrailAttachmentRecord:
    row = await session.get(GuardrailAttachment, attachment_id)
    if row is None:
        raise NotFound(f"no guardrail attachment with id {attachment_id!r}")
    return attachment_record(row)


async def detach(session: AsyncSession, attachment_id: str) -> GuardrailAttachmentRecord:
    """Delete one attachment; returns what it was."""
    record = await get_attachment(session, attachment_id)
    await session.execute(delete(GuardrailAttachment)
                          .where(GuardrailAttachment.id == attachment_id))
    await bump_revision(session)
    return record


async def list_attachments(session: AsyncSession, *, policy: str | None = None,
                           limit: int = 100, after: str | None = None
                           ) -> Page[GuardrailAttachmentRecord]:
    """Attachments by id (of one policy, with ``policy``)."""
    stmt = select(GuardrailAttachment)
    if policy is not None:
        stmt = stmt.where(GuardrailAttachment.policy == policy)
    return await page(session, stmt, GuardrailAttachment.id, after, limit, attachment_record,
                      lambda r: r.id)


async def load_guardrails(session: AsyncSession) -> StoredGuardrails:
    """Every stored policy and attachment (for the snapshot; a few hundred rows at most)."""
    policies = (await session.execute(select(GuardrailPolicy).order_by(GuardrailPolicy.name))
                ).scalars()
    attachments = (await session.execute(select(GuardrailAttachment)
                                         .order_by(GuardrailAttachment.id))).scalars()
    return StoredGuardrails(tuple(policy_record(p) for p in policies),
                            tuple(attachment_record(a) for a in attachments))
