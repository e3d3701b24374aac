"""The pure-Python RESP reader and the encoder at their edges (no I/O).

``test_resp`` covers every reply type and failure; these pin what mutmut found
loose (``make mutation``): the exact nesting bound (16 levels read, 17 refused),
a line that starts with its own CRLF, error replies that are not UTF-8, the
words of each protocol error, the reader giving back its buffer once a reply is
consumed, integer-like arguments that are not plain ``int``, and one connection's
deadline timer moving on to the next call once the oldest is answered.
"""

from __future__ import annotations

import asyncio
import enum

import pytest

from inferenceops.admission import resp
from inferenceops.admission.resp import ProtocolError, PyReader, ReplyError, encode


def nested(levels: int) -> bytes:
    return b"*1\r\n" * levels + b":7\r\n"


def test_sixteen_levels_of_arrays_are_read_and_seventeen_refused() -> None:
    reader = PyReader()
    reader.feed(nested(16))
    reply = reader.gets()
    for _ in range(16):
        assert isinstance(reply, list) and len(reply) == 1
        reply = reply[0]
    assert reply == 7
    reader = PyReader()
    reader.feed(nested(17))
    with pytest.raises(ProtocolError) as info:
        reader.gets()
    assert str(info.value) == "Protocol error, arrays nested too deep"


def test_a_reply_that_starts_with_a_crlf_is_garbage_not_a_wait() -> None:
    reader = PyReader()
    reader.feed(b"\r\n")
    with pytest.raises(ProtocolError) as info:
        reader.gets()
    assert str(info.value) == "Protocol error, got '\\r' as reply type byte"


def test_an_error_reply_that_is_not_utf8_is_read_with_replacement_characters() -> None:
    reader = PyReader()
    reader.feed(b"-ERR bad \xff byte\r\n")
    reply = reader.gets()
    assert isinstance(reply, ReplyError) and str(reply) == "ERR bad \ufffd byte"


@pytest.mark.parametrize(("garbage", "words"), [
    (b"$2\r\nabc\r\n", "Protocol error, bulk string not followed by CRLF"),
    (b":12x\r\n", "Protocol error, invalid literal for int() with base 10: b'12x'"),
])
def test_protocol_errors_say_what_was_wrong(garbage: bytes, words: str) -> None:
    reader = PyReader()
    reader.feed(garbage)
    with pytest.raises(ProtocolError) as info:
        reader.gets()
    assert str(info.value) == words


def test_the_reader_lets_go_of_the_bytes_it_has_read() -> None:
    reader = PyReader()
    reader.feed(b"+one\r\n+two\r\n+thr")
    assert reader.gets() == b"one"
    assert reader.gets() == b"two"
    assert reader.gets() is False
    reader.feed(b"ee\r\n")
    assert reader.gets() == b"three"
    assert (len(reader._buf), reader._pos) == (0, 0)  # everything read: nothing kept
    big = b"$70000\r\n" + b"x" * 70000 + b"\r\n"
    reader.feed(big + b"+par")
    assert reader.gets() == b"x" * 70000
    assert bytes(reader._buf) == b"+par" and reader._pos == 0  # a large read is dropped at once


class Slot(enum.IntEnum):
    FIRST = 1
    BIG = 12345


def test_integer_like_arguments_are_sent_as_their_decimal_digits() -> None:
    assert encode(["SET", Slot.FIRST, Slot.BIG]) == b"*3\r\n$3\r\nSET\r\n$1\r\n1\r\n$5\r\n12345\r\n"


# -- one connection's deadline timer (a fake transport, as in test_resp) --------------------------

class SilentTransport:
    def __init__(self) -> None:
        self.aborted = False

    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True


async def test_the_deadline_timer_moves_on_to_the_next_call_once_the_oldest_is_answered() -> None:
    conn = resp._Connection(asyncio.get_running_loop(), 0.1, "fake:1")
    transport = SilentTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    first = conn.send(encode(["GET", "a"]))
    await asyncio.sleep(0.05)
    second = conn.send(encode(["GET", "b"]))  # due 50 ms after the first
    conn.data_received(b"$1\r\na\r\n")
    assert await first == b"a"
    with pytest.raises(resp.Unavailable) as info:  # never answered: it times out on its own
        await asyncio.wait_for(second, 2.0)
    assert str(info.value) == "no reply from fake:1 within 0.1s"
    assert transport.aborted and conn.closed


async def test_a_timer_that_finds_every_call_answered_does_nothing() -> None:
    conn = resp._Connection(asyncio.get_running_loop(), 0.02, "fake:1")
    transport = SilentTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    try:
        call = conn.send(encode(["PING"]))
        conn.data_received(b"+PONG\r\n")
        assert await call == b"PONG"
        await asyncio.sleep(0.05)  # the timer fires with nothing pending
        assert errors == [] and not conn.closed and not transport.aborted
        assert await asyncio.wait_for(_answered(conn), 1.0) == b"PONG"  # and the connection works on
    finally:
        asyncio.get_running_loop().set_exception_handler(None)


async def _answered(conn: resp._Connection) -> object:
    call = conn.send(encode(["PING"]))
    conn.data_received(b"+PONG\r\n")
    return await call
