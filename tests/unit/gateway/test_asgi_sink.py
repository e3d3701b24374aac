"""AsgiSink: how a stream notices its caller leaving, with either kind of ASGI ``receive``.

granian's ``receive`` returns a future (completed from its own threads); other
servers' is a coroutine function. Either way ``gone`` resolves on
``http.disconnect`` only, the watch starts on the loop's next turn, and a
stream that ends leaves no ``receive`` pending.
"""

from __future__ import annotations

import asyncio
from typing import Any

from inferenceops.gateway.http import AsgiSink, Message


async def _ignore(message: Message) -> None:
    return None


class FutureReceive:
    """A granian-like ``receive``: every call hands out a new future."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[Message]] = []

    def __call__(self) -> asyncio.Future[Message]:
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future


class CoroutineReceive:
    """A uvicorn-like ``receive``: messages from a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.calls = 0
        self.called = asyncio.Condition()

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        async with self.called:
            self.called.notify_all()
        return await self.queue.get()

    async def wait_calls(self, n: int) -> None:
        async with self.called:
            await asyncio.wait_for(self.called.wait_for(lambda: self.calls >= n), 1)


async def _turn() -> None:
    await asyncio.sleep(0)


async def test_a_future_receive_is_watched_from_the_next_turn_and_a_disconnect_resolves_gone() -> None:
    receive = FutureReceive()
    sink = AsgiSink(_ignore, receive)
    gone = sink.gone()
    assert sink.gone() is gone and receive.pending == []  # nothing asked yet: a chunk may go first
    await _turn()
    assert len(receive.pending) == 1
    receive.pending[0].set_result({"type": "http.disconnect"})
    await asyncio.wait_for(gone, 1)
    assert gone.done() and not gone.cancelled()


async def test_a_message_that_is_not_a_disconnect_keeps_the_watch_on() -> None:
    receive = FutureReceive()
    sink = AsgiSink(_ignore, receive)
    gone = sink.gone()
    await _turn()
    receive.pending[0].set_result({"type": "http.request", "body": b"", "more_body": False})
    await _turn()
    assert not gone.done() and len(receive.pending) == 2
    receive.pending[1].set_result({"type": "http.disconnect"})
    await asyncio.wait_for(gone, 1)


async def test_the_end_of_a_stream_cancels_the_pending_receive_and_gone_stays_open() -> None:
    receive = FutureReceive()
    sink = AsgiSink(_ignore, receive)
    gone = sink.gone()
    await _turn()
    await sink.end()
    assert receive.pending[0].cancelled()
    gone.cancel()
    await _turn()
    assert len(receive.pending) == 1


async def test_a_stream_that_ends_before_the_watch_starts_never_calls_receive() -> None:
    receive = FutureReceive()
    sink = AsgiSink(_ignore, receive)
    gone = sink.gone()
    await sink.end()
    gone.cancel()
    await _turn()
    await _turn()
    assert receive.pending == []


async def test_a_coroutine_receive_is_driven_by_a_task_and_cancelled_with_gone() -> None:
    receive = CoroutineReceive()
    sink = AsgiSink(_ignore, receive)
    gone = sink.gone()
    await receive.wait_calls(1)
    await receive.queue.put({"type": "http.request", "body": b"", "more_body": False})
    await receive.wait_calls(2)  # not a disconnect: asked again
    assert not gone.done()
    await receive.queue.put({"type": "http.disconnect"})
    await asyncio.wait_for(gone, 1)

    other = CoroutineReceive()
    sink = AsgiSink(_ignore, other)
    left_open = sink.gone()
    await other.wait_calls(1)
    waiter = sink._waiter
    assert waiter is not None
    left_open.cancel()
    await asyncio.wait([waiter], timeout=1)
    assert waiter.cancelled()  # the task that drove receive() is gone with the stream
