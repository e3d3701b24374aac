"""What the forward stage sends an engine for a stream whose usage the client did not ask for."""

from __future__ import annotations

import orjson

from inferenceops.metering.usage import request_stream_usage
from inferenceops.pipeline.forward import asking_for_usage


def test_the_usage_request_is_added_and_the_clients_bytes_follow_untouched() -> None:
    body = (b' \n{"model": "m",  "stream":true, "messages": [{"role": "user", '
            b'"content": "caf\\u00e9 {\\"x\\": 1}"}]}')
    sent = asking_for_usage(body)
    doc = orjson.loads(body)
    assert request_stream_usage(doc) is False
    assert orjson.loads(sent) == doc  # the same document the pipeline decided on
    assert sent.endswith(body[body.index(b"{") + 1:])  # the prompt was not re-encoded
