"""What is stored of a kept body: every built-in entity redacted, in every string.

Runs in the outbox writer, never on the request path. A JSON body is parsed and each
string in it — keys included — redacted where it stands, so an entity split by JSON
escaping (a private key block's ``\\n``) is still found; a body that is not JSON (an
error page, a body cut at the size limit) is redacted as text. The detector set is the
process's (``guardrails.detect``: built-in, or Presidio for the types it covers), over
every entity type, whatever the team's guardrail policies say: storage is the one place
where nothing is let through.
"""

from __future__ import annotations

from typing import Any

import orjson

from inferenceops.guardrails.detect import redact, scan
from inferenceops.guardrails.findings import ENTITIES


def redacted_text(text: str) -> str:
    found = scan(text, ENTITIES)
    return redact(text, found) if found else text


def redacted_value(value: Any) -> Any:
    """``value`` (parsed JSON) with every string in it redacted."""
    if isinstance(value, str):
        return redacted_text(value)
    if isinstance(value, dict):
        return {redacted_text(k): redacted_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted_value(v) for v in value]
    return value


def redacted_body(raw: bytes) -> str:
    """The text to store for ``raw``: its JSON redacted and written again, else its text redacted."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return redacted_text(raw.decode("utf-8", "replace"))
    return orjson.dumps(redacted_value(doc)).decode()
