"""Admin service for sign-in links: which OIDC or proxy identity acts as which user.

Most links make themselves on a person's first sign-in (``admin.linking``: by a
verified email, or by provisioning). The rest — a user with a platform role (the
bootstrap admin among them), a user already linked to another identity of the same
issuer, an identity with no verified email — are linked here, by a platform admin
(``users:write``), who can also remove a link. Reading them needs ``users:read``.
Every change writes one audit entry (``user.link``, ``user.unlink``).
"""

from __future__ import annotations

from inferenceops.admin.api import schemas as s
from inferenceops.admin.api.deps import Access, AdminContext
from inferenceops.admin.api.services import audit
from inferenceops.errors import NotFound
from inferenceops.store import repo
from inferenceops.store.repo import sign_in_links


async def list_links(ctx: AdminContext, access: Access, user_id: str) -> list[s.SignInLinkOut]:
    access.check(None, f"user {user_id!r}")
    async with ctx.db.read() as tx:
        await repo.get_user(tx, user_id)
        return [s.SignInLinkOut.of(r) for r in await sign_in_links.list_links(tx, user_id=user_id)]


async def create_link(ctx: AdminContext, access: Access, user_id: str,
                      body: s.SignInLinkCreate) -> s.SignInLinkOut:
    """Link the identity to the user; 409 if it is linked already (unlink it first)."""
    access.check(None, f"user {user_id!r}")
    async with ctx.db.transaction("linking a sign-in identity") as tx:
        await repo.get_user(tx, user_id)
        out = s.SignInLinkOut.of(await sign_in_links.create_link(
            tx, body.issuer, body.subject, user_id, method="admin",
            linked_by=access.principal.actor))
        await audit(tx, access.principal, "user.link", "user", user_id, after=out)
    return out


async def delete_link(ctx: AdminContext, access: Access, user_id: str, link_id: str) -> None:
    access.check(None, f"user {user_id!r}")
    async with ctx.db.transaction("removing a sign-in link") as tx:
        link = await sign_in_links.get_link(tx, link_id)
        if link.user_id != user_id:
            raise NotFound(f"user {user_id!r} has no sign-in link {link_id!r}")
        await sign_in_links.delete_link(tx, link_id)
        await audit(tx, access.principal, "user.unlink", "user", user_id,
                    before=s.SignInLinkOut.of(link))
