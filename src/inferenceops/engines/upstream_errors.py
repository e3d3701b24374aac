"""What an engine's failing answer becomes in our error tree, redacted before it is built.

Who sees what (docs/errors.md):

- a **4xx** is the caller's business (the engine refused *their* request): its
  status, message, type, param and code pass through, with every secret cut out
  (``engines.redaction``). A 429 always carries ``Retry-After``.
- a **5xx**, a redirect, or a body that is not an answer is the platform's
  business: the caller gets a plain message naming the deployment; what the
  engine said (redacted, but possibly a traceback, paths, host names) is kept
  in ``UpstreamError.detail`` for the log and for platform admins only.

Pure functions of (status, bytes, headers); no I/O, nothing of the gateway.
"""

from __future__ import annotations

import math
import time
from contextlib import suppress
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from inferenceops.engines.redaction import Redactor
from inferenceops.errors import (
    UpstreamClientError,
    UpstreamError,
    UpstreamInvalidResponse,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamResponseTooLarge,
    UpstreamServerError,
)

#: An error answer is read this far at most: engines' errors are short, and a long one is
#: parsed and redacted whole, so it must stay cheap.
ERROR_BODY_BYTES = 1024 * 1024
#: Retry-After when a 429 gives none (or one we cannot read).
DEFAULT_RETRY_AFTER_S = 1
_MAX_RETRY_AFTER_S = 86_400
_SHOWN_CHARS = 500  # of a refusal that is not JSON, shown to the caller (kept: 4000)
_MESSAGE_CHARS = 4000  # of an engine's own message, shown (4xx) or kept (5xx)
_LOOK_UP = ("Its details are logged under this request's id (error.request_id, also the "
            "x-request-id header); the platform team can look them up.")


def http_error(status: int, body: bytes, *, complete: bool, deployment: str,
               retry_after: bytes | None, redactor: Redactor) -> UpstreamError:
    """An engine's 4xx/5xx answer, as the error the caller will see."""
    client_error = 400 <= status < 500
    message, theirs = _their_words(body, complete, redactor,
                                   _SHOWN_CHARS if client_error else _MESSAGE_CHARS)
    message = message or f"HTTP {status}"
    extra = {"deployment": deployment}
    if client_error:
        openai_body = {"error": theirs} if theirs is not None else None
        if status == 429:
            return UpstreamRateLimited(message, status=status, body=openai_body, extra=extra,
                                       headers={"Retry-After": retry_after_value(retry_after)})
        return UpstreamClientError(message, status=status, body=openai_body, extra=extra)
    text = f"The engine serving deployment {deployment!r} failed (HTTP {status}). {_LOOK_UP}"
    detail = {"status": status, "message": message}
    if status == 503:  # not taken: the forwarder may retry it (with backoff)
        wait = float(retry_after_value(retry_after)) if retry_after else None
        return UpstreamOverloaded(text, extra=extra, detail=detail, retry_after_s=wait)
    return UpstreamServerError(text, extra=extra, detail=detail)


def redirected(status: int, deployment: str) -> UpstreamInvalidResponse:
    """An engine answered with a redirect. Not followed: an engine is addressed exactly,
    and where it points (an internal host, a login page) is no business of the caller."""
    return UpstreamInvalidResponse(f"The engine serving deployment {deployment!r} answered with "
                                   f"a redirect (HTTP {status}) instead of an answer. {_LOOK_UP}",
                                   extra={"deployment": deployment}, detail={"status": status})


def not_json(status: int, body: bytes, content_type: bytes, deployment: str,
             redactor: Redactor) -> UpstreamInvalidResponse:
    """A 2xx answer to a non-streamed request whose body is not a JSON object."""
    start = body[:_MESSAGE_CHARS].decode("utf-8", "replace")
    return UpstreamInvalidResponse(
        f"The engine serving deployment {deployment!r} answered HTTP {status} with a body that "
        f"is not a JSON object. {_LOOK_UP}", extra={"deployment": deployment},
        detail={"status": status, "content_type": content_type.decode("latin-1"),
                "body_start": redactor.text(start, cut_off=len(body) > _MESSAGE_CHARS)})


def too_large(status: int, limit: int, deployment: str) -> UpstreamResponseTooLarge:
    return UpstreamResponseTooLarge(
        f"The engine serving deployment {deployment!r} sent an answer larger than this gateway "
        f"accepts ({limit} bytes); it was cut off. {_LOOK_UP}", extra={"deployment": deployment},
        detail={"status": status, "limit_bytes": limit})


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` parsed, when it is a JSON object (what every OpenAI answer is)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def retry_after_value(value: bytes | None) -> str:
    """Seconds to wait, from an engine's ``Retry-After`` (seconds or an HTTP date) or the default."""
    if value:
        text = value.decode("latin-1").strip()
        if text.isascii() and text.isdigit():
            return str(min(int(text[:6]), _MAX_RETRY_AFTER_S))
        with suppress(TypeError, ValueError, IndexError, OverflowError):
            wait = parsedate_to_datetime(text).timestamp() - time.time()
            return str(min(max(0, math.ceil(wait)), _MAX_RETRY_AFTER_S))
    return str(DEFAULT_RETRY_AFTER_S)


def _their_words(body: bytes, complete: bool, redactor: Redactor,
                 raw_chars: int) -> tuple[str, dict[str, Any] | None]:
    """The engine's message, and its OpenAI ``error`` object when it sent one; both redacted.

    A body that is not JSON is its own message, its first ``raw_chars`` characters.
    """
    parsed = json_object(body) if complete else None
    error = parsed.get("error") if parsed is not None else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = redactor.text(error["message"])[:_MESSAGE_CHARS]
        theirs = {"message": message, **{key: _scalar(error.get(key), redactor)
                                         for key in ("type", "param", "code")}}
        return message, theirs
    if isinstance(error, str):
        return redactor.text(error)[:_MESSAGE_CHARS], None
    if parsed is not None and isinstance(parsed.get("detail"), str):
        return redactor.text(parsed["detail"])[:_MESSAGE_CHARS], None
    text = redactor.text(body.decode("utf-8", "replace"), cut_off=not complete)
    return text.strip()[:raw_chars].strip(), None


def _scalar(value: object, redactor: Redactor) -> str | int | None:
    """An OpenAI error field, as it may be shown: a redacted string, an integer, or nothing."""
    if isinstance(value, str):
        return redactor.text(value)[:_MESSAGE_CHARS]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None
