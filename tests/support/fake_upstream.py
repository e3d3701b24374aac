"""A fake OpenAI-compatible engine for unit and integration tests.

Behaviour is chosen by the ``model`` the gateway forwards (so a platform YAML
can point models at it): ``ok`` answers normally, ``error-<status>`` answers
with that status, ``slow-<ms>`` waits before the headers, ``stall`` streams
one chunk then goes silent, ``crash`` streams one chunk then drops the
connection, ``plain-400`` answers a non-JSON 400. Streams end with a usage
chunk when the request asks for one (``stream_options.include_usage``). Every request is recorded
(path, headers, body) so tests can see exactly what the gateway sent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeUpstream:
    requests: list[Seen] = field(default_factory=list)
    stream_chunks: int = 5
    chunk_delay_s: float = 0.0
    active_streams: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        return app

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body = await request.read()
        self.requests.append(Seen(request.path, dict(request.headers), body))
        return orjson.loads(body)

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
        if model.startswith("slow-"):
            await asyncio.sleep(int(model.split("-")[1]) / 1000)
        if doc.get("stream"):
            options = doc.get("stream_options") or {}
            return await self._stream(request, model, bool(options.get("include_usage")))
        return web.json_response(_completion(model))

    async def _stream(self, request: web.Request, model: str,
                      include_usage: bool = False) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        self.active_streams += 1
        try:
            for i in range(self.stream_chunks):
                chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1,
                         "model": model, "choices": [{"index": 0, "delta": {"content": f"t{i} "},
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
