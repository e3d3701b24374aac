"""The simulator's errors, each knowing its HTTP status and vLLM/OpenAI ``type``.

    SimulatorError (400 BadRequestError)
    ├── BadRequest          400 BadRequestError   malformed JSON, missing fields, too many tokens
    ├── NotFound            404 NotFoundError     unknown path, model or adapter
    ├── MethodNotAllowed    405 MethodNotAllowed  known path, wrong method
    ├── PayloadTooLarge     413 PayloadTooLarge   body over the simulator's limit
    └── EngineFailed        500 InternalServerError  the engine loop crashed (a bug, never input)

They become OpenAI-shaped JSON (``{"error": {"message", "type", "param",
"code"}}``, as vLLM's server returns) in exactly one place, :meth:`body`, used
by the app's top-level handler.
"""

from __future__ import annotations

import orjson

__all__ = [
    "BadRequest",
    "ClientGone",
    "EngineFailed",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "SimulatorError",
]


class SimulatorError(Exception):
    status = 400
    error_type = "BadRequestError"
    allow: str | None = None  # the Allow header, for 405s

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.error_type,
                    "param": self.param,
                    "code": self.status,
                }
            }
        )


class BadRequest(SimulatorError):
    pass


class NotFound(SimulatorError):
    status = 404
    error_type = "NotFoundError"


class MethodNotAllowed(SimulatorError):
    status = 405
    error_type = "MethodNotAllowed"

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow


class PayloadTooLarge(SimulatorError):
    status = 413
    error_type = "PayloadTooLarge"


class EngineFailed(SimulatorError):
    status = 500
    error_type = "InternalServerError"


class ClientGone(Exception):  # noqa: N818 - a signal, not an error shown to anyone
    """The client disconnected before the request body was read; nothing to answer."""
