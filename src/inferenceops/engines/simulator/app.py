"""The simulator as a raw ASGI3 application: routing and the OpenAI/vLLM endpoints.

Handlers are thin: parse the body (``requests``), submit sequences to the
engine (``scheduler``), wait, and answer (``responses``). Routing uses
``scope["path"]`` only — the gateway mounts the app by rewriting the path, so
``root_path`` is ignored on purpose. Errors become OpenAI-shaped JSON in one
place, :meth:`SimulatorApp._http`. Every response is labelled
``x-simulator: inferenceops``; ``/v1/models`` says ``owned_by:
inferenceops-simulator``. No pydantic per request.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable

import orjson

from ._asgi import (
    SSE_HEADERS,
    TEXT_TYPE,
    Receive,
    Scope,
    Send,
    json_headers,
    read_body,
    safe_send,
    send_bytes,
    send_error,
    start_watcher,
)
from .errors import BadRequest, ClientGone, EngineFailed, MethodNotAllowed, NotFound
from .errors import SimulatorError as _SimulatorError
from .metrics import CONTENT_TYPE, EngineCounters, render_metrics
from .prefix_cache import block_hashes
from .profile import SimulatorProfile
from .requests import (
    GenerateRequest,
    parse_embed,
    parse_generate,
    parse_json,
    prompt_of,
    requested_model,
)
from .responses import DONE, StreamEncoder, completion_body, embeddings_body, usage
from .scheduler import Engine, SeqState, Sequence
from .text import FillerText, natural_length, prompt_key

__all__ = ["SimulatorApp", "build_simulator_app"]

_log = logging.getLogger(__name__)
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


def build_simulator_app(profile: SimulatorProfile, *, model: str, seed: int = 0) -> SimulatorApp:
    """A simulated engine serving ``model`` with ``profile``'s timing, as an ASGI3 app."""
    return SimulatorApp(profile, model=model, seed=seed)


class SimulatorApp:
    """ASGI callable; one engine loop per instance, started on the first request."""

    def __init__(self, profile: SimulatorProfile, *, model: str, seed: int = 0) -> None:
        self.profile = profile
        self.model = model
        self.seed = seed
        self.counters = EngineCounters()
        self.engine = Engine(profile, self.counters)
        self._created = int(time.time())
        self._id_prefix = os.urandom(4).hex()
        self._next_id = 0
        post, get = "POST", "GET"
        self._routes: dict[str, dict[str, Handler]] = {
            "/v1/chat/completions": {post: self._chat},
            "/v1/completions": {post: self._completions},
            "/v1/embeddings": {post: self._embeddings},
            "/v1/models": {get: self._models},
            "/health": {get: self._health},
            "/metrics": {get: self._metrics},
            "/version": {get: self._version},
            "/tokenize": {post: self._tokenize},
            "/v1/load_lora_adapter": {post: self._load_lora},
            "/v1/unload_lora_adapter": {post: self._unload_lora},
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # Other scope types (websocket) are not served by an inference engine: ignored.

    async def aclose(self) -> None:
        """Stop the engine loop; in-flight requests are aborted."""
        await self.engine.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        try:
            methods = self._routes.get(path)
            if methods is None:
                raise NotFound(f"Not Found: {path}")
            handler = methods.get(scope["method"])
            if handler is None:
                raise MethodNotAllowed(
                    f"Method {scope['method']} not allowed for {path}", allow=", ".join(methods)
                )
            await handler(scope, receive, send)
        except _SimulatorError as exc:
            await send_error(send, exc)
        except ClientGone:
            return
        except Exception:  # top-level handler: log, answer 500, never crash the server
            _log.exception("simulator failed on %s", path)
            await safe_send(send, {"type": "http.response.start", "status": 500, "headers": []})
            await safe_send(send, {"type": "http.response.body", "body": b""})

    def _rid(self, prefix: str) -> str:
        self._next_id += 1
        return f"{prefix}-{self._id_prefix}{self._next_id:08x}"

    # ---- generation -----------------------------------------------------------

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(receive, send, chat=True)

    async def _completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(receive, send, chat=False)

    async def _generate(self, receive: Receive, send: Send, *, chat: bool) -> None:
        data = parse_json(await read_body(receive))
        model = requested_model(data, self.model, self.engine.lora.known)
        if self.profile.task != "generate":
            api = "Chat Completions" if chat else "Completions"
            raise BadRequest(f"The model does not support {api} API")
        req = parse_generate(data, chat=chat, model=model, max_model_len=self.profile.max_model_len,
                             priority_scheduling=self.profile.scheduling_policy == "priority")
        key = prompt_key(self.seed, req.seed, req.prompt)
        seq = self._sequence(req, key)
        self.engine.submit(seq)
        watcher = start_watcher(receive, lambda: self.engine.abort(seq))
        try:
            if req.stream:
                await self._stream(send, seq, req, key, chat=chat)
            else:
                await self._wait(seq)
                if seq.state is SeqState.FINISHED:
                    body = completion_body(
                        chat=chat,
                        rid=self._rid("chatcmpl" if chat else "cmpl"),
                        created=int(time.time()),
                        model=model,
                        text=FillerText(key).take(seq.generated),
                        finish_reason=seq.finish_reason,
                        usage_=usage(seq.prompt_len, seq.generated, seq.cached_tokens),
                    )
                    await safe_send(
                        send,
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": json_headers(len(body)),
                        },
                    )
                    await safe_send(send, {"type": "http.response.body", "body": body})
        finally:
            watcher.cancel()
            self.engine.abort(seq)  # no-op when finished; frees the slot on any other exit

    def _sequence(self, req: GenerateRequest, key: str) -> Sequence:
        p = self.profile
        prompt_len = len(req.token_ids)
        limit = req.max_tokens if req.max_tokens is not None else p.max_model_len - prompt_len
        natural = natural_length(key, p.default_output_tokens, p.output_tokens_min, p.output_tokens_max)
        if req.ignore_eos or natural > limit:
            target, reason = limit, "length"
        else:
            target, reason = natural, "stop"
        hashes = block_hashes(req.token_ids, p.block_size) if p.prefix_cache_blocks else []
        lora = req.model if req.model != self.model else None
        return Sequence(prompt_len, hashes, target, reason, lora=lora, stream=req.stream,
                        priority=req.priority)

    async def _wait(self, seq: Sequence) -> None:
        while not seq.done:
            await seq.event.wait()
            seq.event.clear()
        if seq.failed:
            raise EngineFailed("the simulated engine stopped unexpectedly")

    async def _stream(self, send: Send, seq: Sequence, req: GenerateRequest, key: str, *, chat: bool) -> None:
        enc = StreamEncoder(
            chat=chat,
            rid=self._rid("chatcmpl" if chat else "cmpl"),
            created=int(time.time()),
            model=req.model,
        )
        if not await safe_send(send, {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS}):
            return
        filler = FillerText(key)
        sent = 0
        first = chat
        while True:
            await seq.event.wait()
            seq.event.clear()
            if seq.state is SeqState.ABORTED:
                if seq.failed:
                    error = EngineFailed("the simulated engine stopped unexpectedly")
                    tail = enc.error_chunk(error.body()) + DONE
                    await safe_send(send, {"type": "http.response.body", "body": tail})
                return
            finished = seq.state is SeqState.FINISHED
            n = seq.generated - sent
            if n == 0 and not finished:
                continue
            sent += n
            parts = [enc.role_chunk()] if first else []
            first = False
            parts.append(enc.text_chunk(filler.take(n), seq.finish_reason if finished else None))
            if finished:
                if req.include_usage:
                    parts.append(enc.usage_chunk(usage(seq.prompt_len, sent, seq.cached_tokens)))
                parts.append(DONE)
            message = {
                "type": "http.response.body",
                "body": b"".join(parts),
                "more_body": not finished,
            }
            if not await safe_send(send, message) or finished:
                return

    # ---- embeddings -------------------------------------------------------------

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = parse_json(await read_body(receive))
        model = requested_model(data, self.model, self.engine.lora.known)
        p = self.profile
        if p.task != "embed" or p.embedding_dim is None:
            raise BadRequest("The model does not support Embeddings API")
        req = parse_embed(data, model=model, max_model_len=p.max_model_len, dim=p.embedding_dim)
        lora = model if model != self.model else None
        seqs = [
            Sequence(
                len(ids),
                block_hashes(ids, p.block_size) if p.prefix_cache_blocks else [],
                0,
                "stop",
                lora=lora,
            )
            for _, ids in req.inputs
        ]
        for seq in seqs:
            self.engine.submit(seq)

        def abort_all() -> None:
            for seq in seqs:
                self.engine.abort(seq)

        watcher = start_watcher(receive, abort_all)
        try:
            for seq in seqs:
                await self._wait(seq)
            if any(seq.state is not SeqState.FINISHED for seq in seqs):
                return
        finally:
            watcher.cancel()
            abort_all()
        body = embeddings_body(
            rid=self._rid("embd"),
            created=int(time.time()),
            model=model,
            seed=self.seed,
            keys=[key for key, _ in req.inputs],
            dim=p.embedding_dim,
            base64=req.base64,
            prompt_tokens=sum(seq.prompt_len for seq in seqs),
        )
        await send_bytes(send, body)

    # ---- small endpoints ----------------------------------------------------------

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        card = {
            "object": "model",
            "created": self._created,
            "owned_by": "inferenceops-simulator",
            "max_model_len": self.profile.max_model_len,
            "permission": [],
        }
        data = [{"id": self.model, **card, "root": self.model, "parent": None}]
        data.extend(
            {"id": name, **card, "root": path, "parent": self.model}
            for name, path in self.engine.lora.known.items()
        )
        await send_bytes(send, orjson.dumps({"object": "list", "data": data}))

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, b"", content_type=TEXT_TYPE)

    async def _version(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, b'{"version":"inferenceops-simulator"}')

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = render_metrics(self.model, self.counters, self.engine.gauges())
        await send_bytes(send, body, content_type=CONTENT_TYPE)

    async def _tokenize(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = parse_json(await read_body(receive))
        requested_model(data, self.model, self.engine.lora.known)
        _, ids = prompt_of(data, chat="messages" in data)
        body = {
            "count": len(ids),
            "max_model_len": self.profile.max_model_len,
            "tokens": ids,
            "token_strs": None,
        }
        await send_bytes(send, orjson.dumps(body))

    async def _load_lora(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = parse_json(await read_body(receive))
        name, path = data.get("lora_name"), data.get("lora_path")
        if not isinstance(name, str) or not name or not isinstance(path, str) or not path:
            raise BadRequest("Both 'lora_name' and 'lora_path' must be provided.")
        if self.profile.max_loras == 0:
            raise BadRequest("LoRA is not enabled: this profile has max_loras = 0.")
        if name in self.engine.lora.known or name == self.model:
            raise BadRequest(f"The lora adapter '{name}' has already been loaded.")
        self.engine.lora.load(name, path)
        await send_bytes(
            send,
            f"Success: LoRA adapter '{name}' added successfully.".encode(),
            content_type=TEXT_TYPE,
        )

    async def _unload_lora(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = parse_json(await read_body(receive))
        name = data.get("lora_name")
        if not isinstance(name, str) or not name:
            raise BadRequest("'lora_name' must be provided.")
        if name not in self.engine.lora.known:
            raise NotFound(f"The lora adapter '{name}' cannot be found.")
        self.engine.lora.unload(name)
        await send_bytes(
            send,
            f"Success: LoRA adapter '{name}' removed successfully.".encode(),
            content_type=TEXT_TYPE,
        )
