"""Admin service for config as code: make the stored catalog match a platform file.

The file is validated exactly as ``serve --config`` validates it (``config.spec.parse_platform``:
an error names the line and the field), then ``inferenceops.apply.apply_platform`` plans
and — unless a dry run — carries out the changes in one transaction, appending one audit
entry per change with the caller as the actor and their address as the source. A store
refusal (e.g. a file-managed deployment to delete that an admin-API model still uses)
rolls everything back and becomes a 409.

The file's admission rules (teams, limits, budgets) are validated but not applied: the
serving process reads those from its own ``--config`` file (``inferenceops.config.apply``).
"""

from __future__ import annotations

import os

from inferenceops.admin.api.apply_schemas import ApplyOut
from inferenceops.admin.api.deps import Access, AdminContext
from inferenceops.config.apply import apply_platform
from inferenceops.config.spec import ConfigError, parse_platform

#: ``parse_platform`` needs a base URL only to build simulator replica URLs for a served
#: ``Platform``. Apply stores the specs, never those URLs (every serving worker builds its own
#: from the store), so any constant does: the admin app need not know where it is served.
_UNUSED_LOOPBACK = "http://127.0.0.1"


async def apply_file(ctx: AdminContext, access: Access, text: str, *, source: str,
                     dry_run: bool) -> ApplyOut:
    """Validate ``text`` (``ConfigError`` → 422) and apply it, or only plan it (``dry_run``)."""
    access.check(None, "the catalog")
    # Environment variables (``api_key_env``) are checked in this process's environment: the
    # serving process is where the keys are read.
    platform = parse_platform(text, source=source, loopback_base_url=_UNUSED_LOOPBACK,
                              environ=dict(os.environ))
    spec = platform.spec
    assert spec is not None  # parse_platform always keeps what it built from
    if "currency" in spec.model_fields_set and spec.currency != ctx.currency:
        raise ConfigError(f"{source}: currency: the file says {spec.currency}, but this platform's "
                          f"currency is {ctx.currency} (from the serving process's --config); "
                          "model prices are not converted: remove 'currency:' or make them match")
    plan = await apply_platform(ctx.db, spec, dry_run=dry_run, actor=access.principal.actor,
                                source=access.principal.source)
    return ApplyOut.of(plan, dry_run=dry_run)
