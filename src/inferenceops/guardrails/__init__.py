"""Guardrails: what policies look for in prompts and answers (PII, secrets) and how it is
redacted. The detectors are pure functions over text; no I/O, no imports of the gateway."""
