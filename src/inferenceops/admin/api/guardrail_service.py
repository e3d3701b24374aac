"""Admin service for guardrail policies and their attachments: the store's and the platform file's.

Same shape as ``admission_service``: check the caller's ``Access``, run the store calls in
one transaction, append one audit entry per change (``before`` what was replaced or
deleted, ``after`` what is now), return API schemas. A call that changes nothing (the same
content ``PUT`` again, an attachment that exists) writes no audit entry.

Who: platform admins write (``guardrails:write``); platform admins and auditors read
(``guardrails:read``). Policies apply to every team alike, so no team role holds either.

The platform file's policies and attachments (``ctx.guardrails_file``) are listed with
``source: file`` and are read-only here: changing, deleting or detaching one is 409 (edit
the file). Names are unique across both: creating a policy with a file policy's name is
409. Validation is the store's (``store.repo.guardrails``: the platform file's parser), its
``Invalid`` a 422 naming the field (``errors``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.admin.api import schemas as s
from inferenceops.admin.api.deps import Access, AdminContext
from inferenceops.admin.api.errors import Conflict
from inferenceops.admin.api.guardrail_schemas import (
    AttachmentCreate,
    AttachmentOut,
    PolicyBody,
    PolicyCreate,
    PolicyOut,
)
from inferenceops.admin.api.services import audit, paginate
from inferenceops.guardrails.spec import PolicySpec
from inferenceops.store import errors as store_errors
from inferenceops.store import repo
from inferenceops.store.records import Page as StorePage
from inferenceops.store.repo import guardrails as store
from inferenceops.store.repo._common import MAX_PAGE

_POLICY, _ATTACHMENT = "guardrail_policy", "guardrail_attachment"
R = TypeVar("R")


def _file_policies(ctx: AdminContext) -> dict[str, PolicySpec]:
    spec = ctx.guardrails_file
    return {} if spec is None else {p.name: p for p in spec.policies}


def _read_only(name: str) -> Conflict:
    return Conflict(f"The guardrail policy {name!r} is defined in the platform file, which "
                    "the admin API does not change: edit the file", param="name")


async def _every(fetch: Callable[[str | None], Awaitable[StorePage[R]]]) -> list[R]:
    items: list[R] = []
    after: str | None = None
    while True:
        got = await fetch(after)
        items.extend(got.items)
        if got.next_after is None:
            return items
        after = got.next_after


# ---- policies ---------------------------------------------------------------------------------

async def list_policies(ctx: AdminContext, access: Access, *, limit: int,
                        after: str | None) -> s.Page[PolicyOut]:
    """The file's and the store's, by name (a few hundred at most: merged in memory)."""
    async with ctx.db.read() as tx:
        stored = await _every(lambda page_after: store.list_policies(
            tx, limit=MAX_PAGE, after=page_after))
    outs = [PolicyOut.of_file(p) for p in _file_policies(ctx).values()]
    file_names = {o.name for o in outs}
    outs += [PolicyOut.of(r) for r in stored if r.name not in file_names]
    return paginate(outs, lambda o: o.name, lambda o: o, after, limit)


async def get_policy(ctx: AdminContext, access: Access, name: str) -> PolicyOut:
    filed = _file_policies(ctx).get(name)
    if filed is not None:
        return PolicyOut.of_file(filed)
    async with ctx.db.read() as tx:
        return PolicyOut.of(await store.get_policy(tx, name))


async def create_policy(ctx: AdminContext, access: Access, body: PolicyCreate) -> PolicyOut:
    access.check(None, "guardrail policies")
    if body.name in _file_policies(ctx):
        raise _read_only(body.name)
    async with ctx.db.transaction("creating a guardrail policy") as tx:
        out = PolicyOut.of(await store.create_policy(tx, body.name, body.rule_dicts(),
                                                     description=body.description))
        await audit(tx, access.principal, f"{_POLICY}.create", _POLICY, body.name, after=out)
    return out


async def put_policy(ctx: AdminContext, access: Access, name: str,
                     body: PolicyBody) -> tuple[PolicyOut, bool]:
    """Create (True) or change the policy ``name``; a change adds one to its version."""
    access.check(None, "guardrail policies")
    if name in _file_policies(ctx):
        raise _read_only(name)
    async with ctx.db.transaction("setting a guardrail policy") as tx:
        old = await store.find_policy(tx, name)
        if old is None:
            out = PolicyOut.of(await store.create_policy(tx, name, body.rule_dicts(),
                                                         description=body.description))
            await audit(tx, access.principal, f"{_POLICY}.create", _POLICY, name, after=out)
            return out, True
        record, changed = await store.update_policy(tx, name, body.rule_dicts(),
                                                    description=body.description)
        out = PolicyOut.of(record)
        if changed:
            await audit(tx, access.principal, f"{_POLICY}.update", _POLICY, name,
                        before=PolicyOut.of(old), after=out)
    return out, False


async def delete_policy(ctx: AdminContext, access: Access, name: str) -> None:
    access.check(None, "guardrail policies")
    if name in _file_policies(ctx):
        raise _read_only(name)
    async with ctx.db.transaction("deleting a guardrail policy") as tx:
        before = PolicyOut.of(await store.delete_policy(tx, name))
        await audit(tx, access.principal, f"{_POLICY}.delete", _POLICY, name, before=before)


# ---- attachments ------------------------------------------------------------------------------

async def _file_attachments(ctx: AdminContext, tx: AsyncSession,
                            policy: str | None) -> list[AttachmentOut]:
    spec = ctx.guardrails_file
    outs = []
    for attach in spec.attach if spec is not None else ():
        if policy is not None and attach.policy != policy:
            continue
        team_id = None
        if attach.team is not None:
            with suppress(store_errors.NotFound):  # it applies once a team of that name exists
                team_id = (await repo.get_team_by_name(tx, attach.team)).id
        outs.append(AttachmentOut.of_file(attach, team_id))
    return outs


async def list_attachments(ctx: AdminContext, access: Access, *, policy: str | None,
                           limit: int, after: str | None) -> s.Page[AttachmentOut]:
    """The file's (first, in file order) and the store's (by id)."""
    async with ctx.db.read() as tx:
        filed = await _file_attachments(ctx, tx, policy)
        stored = await _every(lambda page_after: store.list_attachments(
            tx, policy=policy, limit=MAX_PAGE, after=page_after))
    keyed = [(f"file-{i:05d}", o) for i, o in enumerate(filed)]
    keyed += [(r.id, AttachmentOut.of(r)) for r in stored]
    return paginate(keyed, lambda k: k[0], lambda k: k[1], after, limit)


async def attach(ctx: AdminContext, access: Access,
                 body: AttachmentCreate) -> tuple[AttachmentOut, bool]:
    """Attach (True: made now; False: it was there, nothing changed)."""
    access.check(None, "guardrail attachments")
    async with ctx.db.transaction("attaching a guardrail policy") as tx:
        record, created = await store.attach(
            tx, body.policy, body.scope, team_id=body.team_id, model=body.model,
            key_id=body.key_id, file_policies=_file_policies(ctx).keys())
        out = AttachmentOut.of(record)
        if created:
            await audit(tx, access.principal, f"{_ATTACHMENT}.create", _ATTACHMENT, record.id,
                        after=out)
    return out, created


async def detach(ctx: AdminContext, access: Access, attachment_id: str) -> None:
    access.check(None, "guardrail attachments")
    async with ctx.db.transaction("detaching a guardrail policy") as tx:
        before = AttachmentOut.of(await store.detach(tx, attachment_id))
        await audit(tx, access.principal, f"{_ATTACHMENT}.delete", _ATTACHMENT, attachment_id,
                    before=before)
