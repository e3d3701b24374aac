"""The admin REST API (FastAPI), mounted by the platform at ``/admin/api/v1``.

    app.py                  build_admin_app: the factory (auth everywhere, one error handler)
    deps.py                 authentication, the RBAC table, ``require(permission)``, ``Access``
    errors.py               the one exception → OpenAI-error-JSON mapping
    schemas.py              request/response bodies; explicit conversion from store records
    services.py             teams (+ weight), members, users, service accounts, grants, audit (+ audit hook)
    key_service.py          API keys: create (secret once), revoke, rotate
    admission_service.py    rate limits and budgets: list (scoped to the caller), set, delete
    catalog_schemas.py      providers, deployments, models: bodies (the YAML's specs) and responses
    catalog_service.py      the catalog: CRUD, provider API keys (write-only, encrypted)
    apply_schemas.py        POST /apply: the platform file in, the plan out
    apply_service.py        config as code: validate a platform file, apply it (inferenceops.apply)
    routes_*.py             thin handlers, one module per resource

Never imported by the data plane.
"""

from inferenceops.admin.api.app import PREFIX, build_admin_app

__all__ = ["PREFIX", "build_admin_app"]
