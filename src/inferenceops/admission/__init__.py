"""Admission control: rate limits, budgets (reserve → settle → release) and the fair queue.

``ledger`` (the interface and its exact semantics), ``memory_ledger`` and
``redis_ledger`` (its two backends), ``plan`` (policy → checks),
``fair_queue`` (deployment capacity, priority and weighted fairness),
``control`` (the pipeline stage that ties them together), ``headers`` and
``quota`` (what callers see), ``config`` (the platform YAML part).
"""
