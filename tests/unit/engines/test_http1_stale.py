"""A kept-alive connection the engine closed while idle is found stale *before* writing.

The engine runs on a thread of its own with blocking sockets, so the test can
let its FIN arrive while the client's event loop is not running: the client's
protocol has not heard of the close yet, only the socket knows. The request
must then go out on a fresh connection, and the dead one must carry nothing.
"""

from __future__ import annotations

import socket
import threading
import time

from inferenceops.engines.http1 import Pool

REQUEST = b"POST /v1/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class ThreadEngine:
    """Answers one request per connection, then closes it when told to."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests_per_connection: list[int] = []
        self.close_now = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                seen = 0
                data = b""
                while REQUEST not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if REQUEST in data:
                    seen += 1
                    conn.sendall(ANSWER)
                self.requests_per_connection.append(seen)
                self.close_now.wait(5)  # then closes while the client's loop sleeps

    def close(self) -> None:
        self.listener.close()


async def test_stale_connection_is_found_before_the_request_is_written() -> None:
    engine = ThreadEngine()
    pool = Pool(f"http://127.0.0.1:{engine.port}/v1", max_connections=1, connect_timeout_s=1)
    try:
        conn = await pool.request(REQUEST)
        assert conn.status == 200
        assert await conn.read() == b"{}"
        conn.release()  # kept alive, idle in the pool
        engine.close_now.set()
        time.sleep(0.2)  # blocking: the FIN arrives, but the event loop does not see it
        idle = pool._idle[0]
        assert not idle.closed  # the protocol has not been told
        assert not idle.looks_open()  # the socket has
        conn = await pool.request(REQUEST)  # not idempotent: it must not be re-sent
        assert conn.status == 200
        assert await conn.read() == b"{}"
        conn.release()
        deadline = time.monotonic() + 2
        while len(engine.requests_per_connection) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.requests_per_connection[:2] == [1, 1]  # the dead one carried nothing more
    finally:
        pool.close()
        engine.close()
