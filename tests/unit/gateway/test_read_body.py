"""read_body: the request body as the server hands it over, and when to stop asking for more.

granian sends a body as one message marked ``more_body`` and then an empty last
message; with a declared Content-Length the body is whole once that many bytes
are in, so the last message is not waited for. Without a length, every message
is read until one says there is no more.
"""

from __future__ import annotations

from typing import Any

import pytest

from inferenceops.errors import InvalidRequest, PayloadTooLarge
from inferenceops.gateway.http import read_body


class Messages:
    """A ``receive`` that hands out ``messages`` in order and counts the calls."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.messages = list(messages)
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return self.messages.pop(0)


def part(body: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_a_body_of_its_declared_length_is_whole_without_the_servers_empty_last_message() -> None:
    receive = Messages(part(b'{"a":1}', True), part(b"", False))
    assert await read_body(receive, 100, declared=7) == b'{"a":1}'
    assert receive.calls == 1  # granian's closing empty message is left unread


async def test_parts_stop_at_the_declared_length() -> None:
    receive = Messages(part(b"abc", True), part(b"def", True), part(b"", False))
    assert await read_body(receive, 100, declared=6) == b"abcdef"
    assert receive.calls == 2


async def test_without_a_length_every_message_is_read_until_there_is_no_more() -> None:
    receive = Messages(part(b"abc", True), part(b"def", True), part(b"", False))
    assert await read_body(receive, 100) == b"abcdef"
    assert receive.calls == 3


async def test_a_body_shorter_than_declared_waits_for_the_rest() -> None:
    receive = Messages(part(b"abc", True), part(b"def", False))
    assert await read_body(receive, 100, declared=6) == b"abcdef"
    assert receive.calls == 2


async def test_the_limit_holds_whatever_was_declared() -> None:
    with pytest.raises(PayloadTooLarge):
        await read_body(Messages(part(b"x" * 11, True), part(b"", False)), 10, declared=11)
    with pytest.raises(PayloadTooLarge):
        await read_body(Messages(part(b"x" * 6, True), part(b"x" * 6, True)), 10, declared=12)


async def test_a_client_that_leaves_mid_body_is_refused() -> None:
    receive = Messages(part(b"abc", True), {"type": "http.disconnect"})
    with pytest.raises(InvalidRequest):
        await read_body(receive, 100, declared=6)
