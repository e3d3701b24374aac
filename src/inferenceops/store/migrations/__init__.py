"""Alembic migrations of the store, shipped inside the wheel (no alembic.ini needed).

``inferenceops.store.migrate`` configures Alembic programmatically with this
folder as ``script_location``; ``env.py`` runs on the connection it is handed.
Revisions are hand-written and self-contained: they never import ``tables``,
whose present shape may differ from the shape a past revision created.
"""
