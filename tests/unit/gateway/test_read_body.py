"""read_body: the request body as the server hands it over, and when to stop asking for more.

granian sends a body as one message marked ``more_body`` and then an empty last
message; with a declared Content-Length the body is whole once that many bytes
are in, so the last message is not waited for. Without a length, every message
is read until one says there is no more. granian's ``receive`` returns a future,
so the first message is asked for before the stages run (``early_read``).
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest

from inferenceops.errors import InvalidRequest, PayloadTooLarge
from inferenceops.gateway.http import early_read, read_body


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


class Granian:
    """A ``receive`` as granian's: each call returns a future its threads complete later."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.messages = list(messages)
        self.calls = 0

    def __call__(self) -> asyncio.Future[dict[str, Any]]:
        self.calls += 1
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[dict[str, Any]] = loop.create_future()
        message = self.messages.pop(0)
        loop.call_soon(waiter.set_result, message)
        return waiter


async def test_an_early_read_is_the_bodys_first_message_asked_for_once() -> None:
    receive = Granian(part(b'{"a":1}', True), part(b"", False))
    first = early_read(receive)
    assert first is not None and receive.calls == 1  # asked for now, before any stage
    assert await read_body(receive, 100, declared=7, first=first) == b'{"a":1}'
    assert receive.calls == 1
    receive = Granian(part(b"abc", True), part(b"def", False))
    assert await read_body(receive, 100, declared=6, first=early_read(receive)) == b"abcdef"


async def test_a_coroutine_receive_is_not_started_early_and_warns_of_nothing() -> None:
    receive = Messages(part(b"abc", False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would fail here
        assert early_read(receive) is None
        gc.collect()
    assert receive.calls == 0 and receive.messages  # closed before it ran: nothing taken
    assert await read_body(receive, 100, declared=3) == b"abc"


async def test_an_early_read_nobody_takes_is_dropped_without_a_logged_error() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))

    def a_stranger_is_refused() -> None:  # its early read is never awaited, then fails
        failing: asyncio.Future[dict[str, Any]] = loop.create_future()
        assert early_read(lambda: failing) is failing
        failing.set_exception(OSError("the client left"))

    try:
        a_stranger_is_refused()
        await asyncio.sleep(0)
        gc.collect()
        assert reported == []
    finally:
        loop.set_exception_handler(None)
