"""Async repositories over the store's tables, used by bootstrap, the admin API and the snapshot builder.

Every function takes the caller's ``AsyncSession`` (from ``Database.transaction()``
for writes, ``Database.read()`` for reads) so several calls can share one
transaction, and returns plain records (``store.records``), never ORM objects.
Every mutation that changes what a snapshot would contain bumps the
``revision`` row in the same transaction. Errors are ``store.errors`` classes.

    teams      teams and service accounts
    users      users, platform roles, memberships
    invitations  offers to join a team, accepted by the invitee (imported as a module)
    sign_in_links  which OIDC/proxy identity acts as which user (imported as a module)
    keys       API keys: create, revoke, rotate, last use
    grants     per-team model grants
    admission  operators' rate limits and budgets (per subject); team weights live in teams
    catalog    deployments, models; load_catalog (catalog_providers: providers, API keys
               encrypted; catalog_rows: the catalog lock and the row steps they share)
    adapters   LoRA adapters on the models (adapter_refs: what the model catalog checks)
               (catalog_specs: rows/records <-> the platform YAML's specs)
    prices     a model's price history: list, schedule a price, delete one still to come
    identity   load_identity (the snapshot read), is_empty
    audit      the hash-chained audit log: append (never bumps the revision), list, iterate
"""

from inferenceops.store.repo._common import revision
from inferenceops.store.repo.adapters import (
    adapter_spec,
    create_adapter,
    delete_adapter,
    get_adapter,
    get_adapter_by_name,
    list_adapters,
    update_adapter,
)
from inferenceops.store.repo.admission import (
    delete_budget,
    delete_limit,
    find_budget,
    find_limit,
    get_budget,
    get_limit,
    list_budgets,
    list_limits,
    set_budget,
    set_limit,
)
from inferenceops.store.repo.audit import append_audit, iter_audit, list_audit
from inferenceops.store.repo.catalog import (
    create_deployment,
    create_model,
    delete_deployment,
    delete_model,
    get_deployment,
    get_deployment_by_name,
    get_model,
    get_model_by_name,
    list_deployments,
    list_models,
    load_catalog,
    update_deployment,
    update_model,
)
from inferenceops.store.repo.catalog_providers import (
    clear_provider_key,
    create_provider,
    delete_provider,
    get_provider,
    get_provider_by_name,
    list_providers,
    set_provider_key,
    update_provider,
)
from inferenceops.store.repo.catalog_rows import UNCHANGED, lock_catalog
from inferenceops.store.repo.catalog_specs import deployment_spec, model_spec, provider_spec
from inferenceops.store.repo.grants import grant, list_grants, revoke_grant
from inferenceops.store.repo.identity import is_empty, load_identity
from inferenceops.store.repo.keys import (
    create_api_key,
    get_api_key,
    list_api_keys,
    revoke_api_key,
    rotate_api_key,
    touch_last_used,
)
from inferenceops.store.repo.prices import add_price, delete_price, list_prices
from inferenceops.store.repo.teams import (
    create_service_account,
    create_team,
    delete_team,
    get_service_account,
    get_team,
    get_team_by_name,
    list_service_accounts,
    list_teams,
    set_team_weight,
)
from inferenceops.store.repo.users import (
    create_user,
    get_user,
    get_user_by_email,
    list_memberships,
    list_users,
    remove_membership,
    set_membership,
    set_platform_role,
    set_user_disabled,
)

__all__ = [
    "adapter_spec", "create_adapter", "delete_adapter", "get_adapter", "get_adapter_by_name",
    "list_adapters", "update_adapter",
    "append_audit", "iter_audit", "list_audit",
    "UNCHANGED", "clear_provider_key", "create_deployment", "create_model", "create_provider",
    "delete_deployment", "delete_model", "delete_provider", "deployment_spec", "get_deployment",
    "get_deployment_by_name", "get_model", "get_model_by_name", "get_provider",
    "get_provider_by_name", "list_deployments", "list_models", "list_providers", "load_catalog",
    "lock_catalog", "model_spec", "provider_spec", "set_provider_key", "update_deployment", "update_model",
    "update_provider", "add_price", "delete_price", "list_prices",
    "delete_budget", "delete_limit", "find_budget", "find_limit", "get_budget", "get_limit",
    "list_budgets", "list_limits", "set_budget", "set_limit", "set_team_weight",
    "create_api_key", "create_service_account", "create_team", "create_user", "delete_team",
    "get_api_key", "get_service_account", "get_team", "get_team_by_name", "get_user",
    "get_user_by_email", "grant", "is_empty", "list_api_keys", "list_grants", "list_memberships",
    "list_service_accounts", "list_teams", "list_users", "load_identity", "remove_membership",
    "revision", "revoke_api_key", "revoke_grant", "rotate_api_key", "set_membership",
    "set_platform_role", "set_user_disabled", "touch_last_used",
]
