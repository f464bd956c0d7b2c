"""Ollama's API over the same engine, chooser and consensus as the OpenAI routes, so apps made for
Ollama (OpenWebUI and others) can use the swarm: GET /api/version, /api/tags, /api/ps; POST
/api/show, /api/chat and /api/generate, streamed as NDJSON (one JSON object a line) unless
`"stream": false`. Failures answer Ollama's `{"error": "..."}` body with a 4xx (network/api/errors.py
renders it for every /api/ path), or an `{"error": ...}` line once a stream has started.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from consensus.candidates import STRATEGIES
from network.api.embeddings import Embedder
from network.api.errors import as_request_error
from network.api.limits import parse_json_body
from network.api.ollama import schema
from network.api.openai import format as fmt
from network.api.openai.routes import CompletionRoutes
from network.api.openai.schema import ParsedRequest
from network.api.openai.trace import Trace
from network.coordination.chooser import fill
from network.federation.forwarding import SERVED_BY_HEADER
from swarm.engine.backend import StreamEnd

log = logging.getLogger(__name__)

OLLAMA_VERSION = "0.9.0"  # the Ollama API version these routes follow
NDJSON = "application/x-ndjson"
_NS = 1_000_000_000


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class OllamaRoutes:
    """/api/*: Ollama's endpoints, served by `openai`'s pool, consensus, forwarder and ledger."""

    def __init__(self, openai: CompletionRoutes, embedder: Embedder) -> None:
        self.openai = openai
        self.embedder = embedder
        self.pool = openai.pool
        self.started = datetime.now(UTC).isoformat().replace("+00:00", "Z")

    def add_to(self, app: web.Application) -> None:
        """Register the seven routes."""
        app.router.add_get("/api/version", self.version)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_get("/api/ps", self.running)
        app.router.add_post("/api/show", self.show)
        app.router.add_post("/api/chat", self.chat)
        app.router.add_post("/api/generate", self.generate)
        app.router.add_post("/api/embed", self.embed)

    def _details(self) -> dict[str, Any]:
        return {"parent_model": "", "format": self.pool.backend_name, "family": "",
                "families": None, "parameter_size": "", "quantization_level": ""}

    def _model(self, tag: str) -> dict[str, Any]:
        name = f"{self.pool.model_id}:{tag}"
        return {"name": name, "model": name, "modified_at": self.started, "size": 0,
                "digest": hashlib.sha256(name.encode()).hexdigest(), "details": self._details()}

    async def version(self, _request: web.Request) -> web.Response:
        """GET /api/version."""
        return web.json_response({"version": OLLAMA_VERSION})

    async def tags(self, _request: web.Request) -> web.Response:
        """GET /api/tags: the model, once per way of answering (`:latest` routes; a strategy as
        the tag runs that consensus)."""
        tags = [schema.DEFAULT_TAG, *(s for s in STRATEGIES if s != "route")]
        return web.json_response({"models": [self._model(t) for t in tags]})

    async def running(self, _request: web.Request) -> web.Response:
        """GET /api/ps: the model this node keeps loaded."""
        model = {**self._model(schema.DEFAULT_TAG), "expires_at": "9999-12-31T23:59:59Z",
                 "size_vram": 0}
        return web.json_response({"models": [model]})

    async def show(self, request: web.Request) -> web.Response:
        """POST /api/show: what Ollama tells of a model (404 for another one)."""
        body = schema.check(schema.SHOW_SCHEMA, parse_json_body(await request.read()))
        name = body.get("model") or body.get("name") or ""
        base, tag = schema.split_model(name)
        schema.swarm_field(tag, {})  # an unknown tag is a 404
        self.openai.check_model(base or None)
        return web.json_response({
            "license": "", "modelfile": f"FROM {self.pool.model_id}\n", "parameters": "",
            "template": "", "details": self._details(), "capabilities": ["completion"],
            "modified_at": self.started,
            "model_info": {"general.name": self.pool.model_id,
                           "general.context_length": self.pool.context_length}})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """POST /api/chat."""
        async with self.openai.limiter.hold(request.remote or "unknown"), \
                Trace("ollama", request.path).recorded(self.openai.ledger) as trace:
            body = parse_json_body(await request.read())
            parsed, tag = schema.parse_chat(body, max_tokens_limit=self.openai.api.max_tokens_limit)
            if parsed is None:  # Ollama: a chat without messages loads the model
                return self._loaded(body["model"], chat=True)
            return await self._serve(request, parsed, tag, trace, chat=True)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        """POST /api/generate."""
        async with self.openai.limiter.hold(request.remote or "unknown"), \
                Trace("ollama", request.path).recorded(self.openai.ledger) as trace:
            body = parse_json_body(await request.read())
            parsed, tag = schema.parse_generate(body,
                                                max_tokens_limit=self.openai.api.max_tokens_limit)
            if parsed is None:  # Ollama: an empty prompt loads the model
                return self._loaded(body["model"], chat=False)
            return await self._serve(request, parsed, tag, trace, chat=False)

    async def embed(self, request: web.Request) -> web.Response:
        """POST /api/embed: the same embeddings as /v1/embeddings (network/api/embeddings.py),
        in Ollama's shape, routed whatever the tag; `truncate` is not done (an input over the
        limit is a 400)."""
        async with self.openai.limiter.hold(request.remote or "unknown"):
            started = time.perf_counter_ns()
            body = schema.check(schema.EMBED_SCHEMA, parse_json_body(await request.read()))
            base, tag = schema.split_model(body["model"])
            schema.swarm_field(tag, {})  # an unknown tag is a 404; a strategy tag still routes
            self.openai.check_model(base or None)
            texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
            dimensions = body.get("dimensions")
            result = await self.embedder.embed(
                texts, int(dimensions) if dimensions is not None else None)
            return web.json_response({
                "model": body["model"], "embeddings": result.vectors.tolist(),
                "total_duration": time.perf_counter_ns() - started, "load_duration": 0,
                "prompt_eval_count": result.prompt_tokens})

    def _loaded(self, model: str, chat: bool) -> web.Response:
        """The answer to a request that only loads `model` (this node keeps it loaded); it must
        still be this node's model (404 otherwise)."""
        base, tag = schema.split_model(model)
        self.openai.check_model(base)
        return web.json_response({**self._head(tag), **self._empty(chat), "done": True,
                                  "done_reason": "load"})

    def _head(self, tag: str) -> dict[str, Any]:
        return {"model": f"{self.pool.model_id}:{tag}", "created_at": _now()}

    def _piece(self, tag: str, text: str, chat: bool) -> dict[str, Any]:
        if chat:
            return {**self._head(tag), "message": {"role": "assistant", "content": text},
                    "done": False}
        return {**self._head(tag), "response": text, "done": False}

    def _final(self, tag: str, chat: bool, *, text: str, reason: str, prompt_tokens: int,
               completion_tokens: int, started: float, first_at: float) -> dict[str, Any]:
        now = time.perf_counter()
        record = self._piece(tag, text, chat)
        record.update(done=True, done_reason="length" if reason == "length" else "stop",
                      total_duration=int((now - started) * _NS), load_duration=0,
                      prompt_eval_count=prompt_tokens,
                      prompt_eval_duration=int((first_at - started) * _NS),
                      eval_count=completion_tokens, eval_duration=int((now - first_at) * _NS))
        if not chat:
            record["context"] = []
        return record

    async def _serve(self, request: web.Request, parsed: ParsedRequest, tag: str, trace: Trace,
                     chat: bool) -> web.StreamResponse:
        openai = self.openai
        openai.model_name(parsed)
        options = openai.options(parsed)
        trace.id, trace.model, trace.strategy = fmt.new_id("ollama"), self.pool.model_id, \
            options.strategy
        await openai.check_prompt(parsed, chat)
        started = time.perf_counter()
        if options.strategy != "route":
            decision = await openai.consensus.decide(parsed.generation, options,
                                                     parsed.response_format)
            trace.decided(decision)
            winner = decision.completion
            assert winner is not None
            final = self._final(tag, chat, text=winner.text, reason=winner.finish_reason,
                                prompt_tokens=winner.prompt_tokens,
                                completion_tokens=winner.completion_tokens, started=started,
                                first_at=time.perf_counter())
            final["swarm"] = decision.to_dict()
            if not parsed.stream:
                return web.json_response(final)
            opened = await self._open(request)
            await self._write(opened, self._piece(tag, winner.text, chat))
            await self._write(opened, {**final, **self._empty(chat)})
            await opened.write_eof()
            return opened
        if openai.forwarder is not None:
            relayed = await openai.forwarder.maybe_forward(request)
            if relayed is not None:
                trace.forwarded_to = relayed.headers.get(SERVED_BY_HEADER)
                return relayed
        instance = fill(self.pool.instances, 1)[0]
        events = instance.stream(parsed.generation)
        first = await anext(aiter(events))  # before the 200, so a bad prompt is still a 4xx
        first_at = time.perf_counter()
        response = await self._open(request) if parsed.stream else None
        texts: list[str] = []
        event: Any = first
        try:
            while not isinstance(event, StreamEnd):
                if event.text:
                    texts.append(event.text)
                    if response is not None:
                        await self._write(response, self._piece(tag, event.text, chat))
                event = await anext(events)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            if response is None:
                raise
            known = as_request_error(exc)
            await self._write(response, {"error": str(known) if known else "internal error"})
            trace.fail(exc)
            await response.write_eof()
            return response
        finally:
            await events.aclose()
        trace.prompt_tokens, trace.completion_tokens = event.prompt_tokens, event.completion_tokens
        trace.report = {"strategy": "route", "winner": instance.source_id, "candidates": [
            {"source": instance.source_id, "tokens": event.completion_tokens, "valid": True,
             "latency_ms": round((time.perf_counter() - started) * 1000.0, 1)}]}
        final = self._final(tag, chat, text="" if response is not None else "".join(texts),
                            reason=event.finish_reason, prompt_tokens=event.prompt_tokens,
                            completion_tokens=event.completion_tokens, started=started,
                            first_at=first_at)
        if response is None:
            return web.json_response(final)
        await self._write(response, final)
        await response.write_eof()
        return response

    @staticmethod
    def _empty(chat: bool) -> dict[str, Any]:
        return {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}

    @staticmethod
    async def _open(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": NDJSON,
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        return response

    @staticmethod
    async def _write(response: web.StreamResponse, record: dict[str, Any]) -> None:
        await response.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
