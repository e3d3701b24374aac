"""Stream filters: an ordered chain every streamed answer passes through on its way out.

Each filter sees the bytes the one before it let through and may

* **pass** them (return the same bytes object — the common case, no copy),
* **rewrite** them (return other bytes),
* **hold back** a bounded amount (return less; what it holds comes out later,
  or at ``flush`` when the engine is done) — a filter that needs whole SSE
  events holds a partial one until its end arrives,
* **end the stream** with an error event (raise ``EndStream``): the engine is
  dropped and the client gets the error as the stream's last event.

Today's chain (``stream_chain``): the redaction of in-band error events
(``engines.redaction.SSEErrorScrubber``) and usage extraction
(``metering.usage.UsageTap``). Output guardrails and redaction of generated
text plug in here later, as further filters. Filters do no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from inferenceops.errors import InferenceOpsError


class EndStream(Exception):
    """Raised by a filter to end the stream with ``error`` as its last event."""

    def __init__(self, error: InferenceOpsError) -> None:
        super().__init__(error.message)
        self.error = error


class StreamFilter(Protocol):
    def feed(self, chunk: bytes) -> bytes:
        """What to pass on for ``chunk`` (may be b"": held back, or dropped)."""
        ...

    def flush(self) -> bytes:
        """What is still held when the engine's stream ends."""
        ...


class FilterChain:
    """Runs ``filters`` in order over each chunk; empty output stops the chunk early."""

    __slots__ = ("_filters",)

    def __init__(self, filters: Sequence[StreamFilter]) -> None:
        self._filters = tuple(filters)

    def __len__(self) -> int:
        return len(self._filters)

    def feed(self, chunk: bytes) -> bytes:
        for f in self._filters:
            chunk = f.feed(chunk)
            if not chunk:
                return b""
        return chunk

    def flush(self) -> bytes:
        """Each filter's held bytes, passed through the filters after it, then its own flush."""
        out = b""
        for f in self._filters:
            if out:
                out = f.feed(out)
            out += f.flush()
        return out
