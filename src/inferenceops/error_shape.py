"""Exceptions become OpenAI error JSON here, and only here.

Shape: ``{"error": {"message", "type", "param", "code", ...}}`` with the
status the exception class carries, plus the exception's ``extra`` members.
An upstream's own 4xx keeps its message, type, param and code (the client
called a real engine and should see what it said), all already redacted of
secrets by the engine adapter. An upstream failure's ``detail`` is never
rendered from here: the forwarder copies it into ``extra["upstream"]`` for
callers allowed to see it (``pipeline.upstream_failure.sees_upstream_detail``).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from inferenceops.errors import InferenceOpsError, UpstreamClientError

log = logging.getLogger("inferenceops.errors")


def error_document(exc: InferenceOpsError) -> dict[str, Any]:
    error: dict[str, Any] = {"message": exc.message, "type": exc.type, "param": exc.param,
                             "code": exc.code}
    if isinstance(exc, UpstreamClientError) and exc.body:
        theirs = exc.body["error"]
        for key in ("type", "param", "code"):
            if theirs.get(key) is not None:
                error[key] = theirs[key]
    error.update(exc.extra)
    return {"error": error}


def error_json(exc: InferenceOpsError) -> bytes:
    return orjson.dumps(error_document(exc))


def sse_error_event(exc: InferenceOpsError) -> bytes:
    """How a failure is told to a client whose stream already started (status was 200)."""
    return b"data: " + error_json(exc) + b"\n\n"


def internal_error(exc: BaseException) -> InferenceOpsError:
    """Anything unexpected: logged with its traceback, shown to the client as a plain 500."""
    log.error("unhandled error in request", exc_info=exc)
    return InferenceOpsError("The server had an error while processing your request.")
