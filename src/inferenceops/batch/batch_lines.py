"""What a batch's lines must hold beyond the upload's rules, checked when the batch is created.

The upload (``file_lines``) already made sure each line is a well-formed request. What it
could not know is the batch: every line must name the batch's ``endpoint``, and its model
must be one the creating key may use on that endpoint, *now* (grants change; the snapshot
says). ``scan`` reads the stored file once, in a thread (blocking reads, no event loop
held), and returns where each request's bytes are (the executor reads them from there
when the line runs, so the database holds no copy of the bodies) or the lines that do not
fit, each as OpenAI's ``errors.data`` item naming its ``line`` (1-based, every physical line
counted, like the upload's messages). At most ``MAX_ERRORS`` are listed.

Pure apart from reading the one file: no store, no network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from inferenceops.platform import ApiKey, Endpoint, Snapshot
from inferenceops.store.records import BatchLine

MAX_ERRORS = 100
ENDPOINTS = {"/v1/chat/completions": Endpoint.CHAT, "/v1/completions": Endpoint.COMPLETIONS,
             "/v1/embeddings": Endpoint.EMBEDDINGS}


@dataclass
class Scan:
    """The lines of a batch to run, or why it cannot run."""

    lines: list[BatchLine] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def scan(path: Path, endpoint: str, key: ApiKey, snapshot: Snapshot) -> Scan:
    """Every request line of ``path`` checked against the batch (see the module doc)."""
    out = Scan()
    wanted = ENDPOINTS[endpoint]
    offset = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            length = len(raw)
            text = raw.rstrip(b"\r\n")
            if text.strip():
                problem, custom_id = _check(text, endpoint, wanted, key, snapshot)
                if problem is not None:
                    if len(out.errors) < MAX_ERRORS:
                        out.errors.append({"code": problem[0], "message": problem[1],
                                           "param": problem[2], "line": number})
                elif not out.errors:
                    out.lines.append(BatchLine(number, custom_id, offset, len(text)))
            offset += length
    if not out.lines and not out.errors:
        out.errors.append({"code": "empty_file", "message": "The input file has no requests.",
                           "param": "input_file_id", "line": None})
    return out


def _check(text: bytes, endpoint: str, wanted: Endpoint, key: ApiKey,
           snapshot: Snapshot) -> tuple[tuple[str, str, str] | None, str]:
    try:
        doc = orjson.loads(text)
        custom_id, url, body = doc["custom_id"], doc["url"], doc["body"]
    except (orjson.JSONDecodeError, KeyError, TypeError):  # the upload checked; a file changed
        return ("invalid_json", "This line is not a batch request.", "body"), ""
    if not isinstance(custom_id, str) or "\x00" in custom_id or not isinstance(body, dict):
        return ("invalid_json", "This line's custom_id or body is not usable.", "custom_id"), ""
    if url != endpoint:
        return ("mismatched_endpoint", f"The line's url {str(url)[:64]!r} is not the batch's "
                f"endpoint {endpoint!r}.", "url"), custom_id
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return ("missing_required_parameter", "The line's body has no 'model'.",
                "body.model"), custom_id
    visible = snapshot.visible(key, model)  # a model, or an adapter on its base model
    found = visible[0] if visible is not None else None
    if found is None:
        return ("model_not_found", f"The model '{model[:128]}' does not exist or you do not "
                "have access to it.", "body.model"), custom_id
    if wanted not in found.endpoints:
        return ("unsupported_endpoint", f"The model '{model[:128]}' does not support "
                f"{endpoint}.", "body.model"), custom_id
    if body.get("stream") is True:
        return ("invalid_value", "A batch request cannot stream; remove 'stream'.",
                "body.stream"), custom_id
    return None, custom_id
