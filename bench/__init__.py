"""Reproducible benchmarks of the InferenceOps gateway (``python -m bench.run``).

Kept outside ``src/`` on purpose: nothing here ships with the package, and the
benchmark must be able to measure any checkout of the gateway without changing it.
"""
