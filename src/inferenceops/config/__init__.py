"""The platform file: the catalog and admission rules as code, and keeping the store in line with it.

    spec     the platform YAML's schema, parsing and validation (errors name line and field),
             and the served ``Platform`` built from it; pure, no store
    source   the served ``Platform`` built from the catalog stored in the database
    apply    make the store's catalog match a platform file (idempotent, all or nothing, audited)

Process settings (how this process runs) are ``inferenceops.settings``, not here.
"""
