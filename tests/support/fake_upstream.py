"""A fake OpenAI-compatible engine for unit and integration tests.

Behaviour is chosen by the ``model`` the gateway forwards (so a platform YAML
can point models at it): ``ok`` answers normally, ``error-<status>`` answers
with that status, ``slow-<ms>`` waits before the headers, ``stall`` streams
one chunk then goes silent, ``crash`` streams one chunk then drops the
connection, ``plain-400`` answers a non-JSON 400. Streams end with a usage
chunk when the request asks for one (``stream_options.include_usage``). Every request is recorded
(path, headers, body) so tests can see exactly what the gateway sent.

Engines that misbehave, for the hardening tests:

- ``echo-auth-<status>`` answers that status with an OpenAI error that echoes
  the ``Authorization`` it got (in the message, and bare in ``param``) next to
  ``OTHER_BEARER``, a bearer token the gateway has never heard of;
- ``echo-auth-stream`` streams one chunk, then an in-band error event echoing
  the same, written in two pieces split in the middle of the key;
- ``traceback-500`` answers 500 in plain text with a Python traceback (file
  paths, an internal host name, the Authorization it got), as
  llama-cpp-python's server does;
- ``echo-prompt-500`` answers 500 with a traceback that quotes the request it failed on
  (its body, as a server logging its input would);
- ``redirect`` answers 302 to an internal login page;
- ``bad-json`` / ``not-json`` answer 200 with a cut-off JSON body / an HTML page;
- ``huge`` answers 200 with ``huge_bytes`` of body, written in 64 KiB pieces;
  ``huge_sent`` counts what went out and ``huge_done`` is set when it stops
  (``huge_completed`` says whether it got all of it out);
- ``rate-limited`` answers 429 with ``Retry-After: 7``.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


OTHER_BEARER = "Bearer tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
INTERNAL_HOST = "gpu-node-7.corp.internal"


@dataclass
class FakeUpstream:
    requests: list[Seen] = field(default_factory=list)
    stream_chunks: int = 5
    chunk_delay_s: float = 0.0
    cached_prompt_tokens: int | None = None
    active_streams: int = 0
    huge_bytes: int = 64 * 1024 * 1024
    huge_sent: int = 0
    huge_completed: bool = False
    huge_done: asyncio.Event = field(default_factory=asyncio.Event)
    #: What the model "writes": the whole answer's content, or a stream's, 3 characters a chunk.
    answer_text: str | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/health", self._health)  # what the gateway's readiness probes ask
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body = await request.read()
        self.requests.append(Seen(request.path, dict(request.headers), body))
        doc: dict[str, Any] = orjson.loads(body)
        return doc

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        doc = await self._record(request)
        model = doc.get("model", "")
        if model.startswith("error-"):
            status = int(model.split("-")[1])
            return web.json_response({"error": {"message": f"upstream says {status}",
                                                "type": "BadRequestError", "param": None,
                                                "code": status}}, status=status)
        if model == "plain-400":
            return web.Response(status=400, text="nope, plain text")
        misbehaving = _MISBEHAVIOURS.get(model)
        if misbehaving is not None:
            return await misbehaving(self, request)
        if model.startswith("echo-auth-") and model != "echo-auth-stream":
            auth = request.headers.get("Authorization", "")
            return web.json_response({"error": {
                "message": f"invalid header Authorization: {auth}; x-other: {OTHER_BEARER}",
                "type": "invalid_request_error", "param": auth.removeprefix("Bearer "),
                "code": "bad_auth"}}, status=int(model.rsplit("-", 1)[1]))
        if model.startswith("slow-"):
            await asyncio.sleep(int(model.split("-")[1]) / 1000)
        if doc.get("stream"):
            options = doc.get("stream_options") or {}
            return await self._stream(request, model, bool(options.get("include_usage")))
        answer = _completion(model)
        if self.answer_text is not None:
            answer["choices"][0]["message"]["content"] = self.answer_text
        if self.cached_prompt_tokens is not None:  # what vLLM says of its prefix cache
            answer["usage"]["prompt_tokens_details"] = {"cached_tokens": self.cached_prompt_tokens}
        return web.json_response(answer)

    async def _stream(self, request: web.Request, model: str,
                      include_usage: bool = False) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        self.active_streams += 1
        try:
            text = self.answer_text
            pieces = ([text[i:i + 3] for i in range(0, len(text), 3)] if text is not None
                      else [f"t{i} " for i in range(self.stream_chunks)])
            for piece in pieces:
                chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1,
                         "model": model, "choices": [{"index": 0, "delta": {"content": piece},
                                                       "finish_reason": None}]}
                await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                if model == "stall":
                    await asyncio.sleep(3600)
                if model == "crash":
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
            if include_usage:  # like OpenAI and vLLM: a last chunk with no choices, usage filled in
                usage = {"prompt_tokens": 3, "completion_tokens": self.stream_chunks,
                         "total_tokens": 3 + self.stream_chunks}
                last = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
                        "choices": [], "usage": usage}
                await resp.write(b"data: " + orjson.dumps(last) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        finally:
            self.active_streams -= 1

    async def _embeddings(self, request: web.Request) -> web.Response:
        doc = await self._record(request)
        inputs = doc["input"] if isinstance(doc["input"], list) else [doc["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [0.5, 0.5]}
                for i in range(len(inputs))]
        return web.json_response({"object": "list", "data": data, "model": doc["model"],
                                  "usage": {"prompt_tokens": 2, "total_tokens": 2}})


    async def _echo_auth_stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": "t0 "}, "finish_reason": None}]}
        await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        auth = request.headers.get("Authorization", "")
        event = b"data: " + orjson.dumps({"error": {
            "message": f"upstream auth failed for Authorization: {auth} ({OTHER_BEARER})",
            "type": "server_error", "code": 500}}) + b"\n\n"
        middle = event.index(auth.encode()) + len(auth) // 2
        await resp.write(event[:middle])  # the key split across two network writes
        await resp.write(event[middle:])
        await resp.write_eof()
        return resp

    async def _traceback_500(self, request: web.Request) -> web.Response:
        try:
            raise ConnectionError(f"upstream model host http://{INTERNAL_HOST}:8000 refused "
                                  f"(sent Authorization: {request.headers.get('Authorization')})")
        except ConnectionError:
            text = traceback.format_exc()
        text = text.replace(__file__, "/opt/llama_cpp/server/app.py")
        return web.Response(status=500, text=text)

    async def _echo_prompt_500(self, request: web.Request) -> web.Response:
        body = await request.text()
        return web.Response(status=500, text=f"Traceback (most recent call last):\n  File "
                            f"\"/opt/engine/serve.py\", line 88, in generate\nValueError: cannot "
                            f"generate for request {body}")

    async def _redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={
            "Location": f"http://{INTERNAL_HOST}/login?next=/v1/chat/completions"})

    async def _bad_json(self, request: web.Request) -> web.Response:
        return web.Response(status=200, content_type="application/json",
                            text='{"id": "chatcmpl-x", "usage": {"prompt_tokens": 3, "choi')

    async def _not_json(self, request: web.Request) -> web.Response:
        return web.Response(status=200, content_type="text/html",
                            text="<html><body>Welcome to nginx!</body></html>")

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Content-Length": str(self.huge_bytes)})
        piece = b" " * (64 * 1024)
        try:
            await resp.prepare(request)
            while self.huge_sent < self.huge_bytes:
                part = piece[:self.huge_bytes - self.huge_sent]
                await resp.write(part)
                self.huge_sent += len(part)
            await resp.write_eof()
            self.huge_completed = True
        except ConnectionError:
            pass  # the gateway hung up on us: what the test wants to see
        finally:
            self.huge_done.set()
        return resp

    async def _rate_limited(self, request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "slow down", "type": "requests",
                                            "param": None, "code": "rate_limit_exceeded"}},
                                 status=429, headers={"Retry-After": "7"})


_MISBEHAVIOURS = {
    "echo-auth-stream": FakeUpstream._echo_auth_stream,
    "traceback-500": FakeUpstream._traceback_500,
    "echo-prompt-500": FakeUpstream._echo_prompt_500,
    "redirect": FakeUpstream._redirect,
    "bad-json": FakeUpstream._bad_json,
    "not-json": FakeUpstream._not_json,
    "huge": FakeUpstream._huge,
    "rate-limited": FakeUpstream._rate_limited,
}


def _completion(model: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


async def start(fake: FakeUpstream, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(fake.app(), access_log=None, shutdown_timeout=0.2,
                           handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    sockets = site._server.sockets  # type: ignore[union-attr]
    return runner, sockets[0].getsockname()[1]


if __name__ == "__main__":
    import sys

    web.run_app(FakeUpstream().app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None,
                print=None)
