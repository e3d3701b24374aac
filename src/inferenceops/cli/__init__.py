"""The ``inferenceops`` command line.

    app          the top-level commands: serve, worker, simulate, db, audit, apply, version
    admin        teams, users, keys, grants (on a running server's admin API)
    admission    limits, budgets
    catalog      providers, deployments, models
    invitations  teams invite, invitations list|accept|decline
    _client      what those share: the admin API client, output, common options
"""

from inferenceops.cli.app import app, main

__all__ = ["app", "main"]
