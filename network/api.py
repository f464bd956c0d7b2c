"""The OpenAI-compatible HTTP API (aiohttp): routes, error mapping, SSE streaming."""
from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from network import openai_format as fmt
from network.openai_schema import ParsedRequest, RequestError, parse_chat, parse_completion
from swarm.backend import Completion, ContextOverflowError, GenerationRequest
from swarm.config import ApiConfig
from swarm.pool import InstancePool, PoolBusyError, StreamEnd

log = logging.getLogger(__name__)

POOL_KEY = web.AppKey("pool", InstancePool)
CONFIG_KEY = web.AppKey("api_config", ApiConfig)
MODEL_ALIASES = ("default", "local-swarm")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(exc: RequestError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status, headers=exc.headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure as OpenAI's error body; clients never see a bare 500 page."""
    try:
        return await handler(request)
    except RequestError as exc:
        return _error(exc)
    except PoolBusyError as exc:
        return _error(RequestError(str(exc), status=429, code="rate_limit_exceeded",
                                   type_="rate_limit_error",
                                   headers={"Retry-After": str(exc.retry_after_s)}))
    except ContextOverflowError as exc:
        return _error(RequestError(str(exc), param="messages", code="context_length_exceeded"))
    except web.HTTPRequestEntityTooLarge as exc:
        return _error(RequestError(f"request body too large ({exc.text})", status=413,
                                   code="request_too_large"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(RequestError(exc.reason, status=exc.status, type_="invalid_request_error"))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return _error(RequestError("internal error; see the node's log", status=500,
                                   type_="server_error"))


def auth_middleware(keys: tuple[str, ...]) -> Any:
    """Require `Authorization: Bearer <key>` on /v1/* when `[api] keys` is set."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if keys and request.path.startswith("/v1/"):
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
                raise RequestError("invalid or missing API key", status=401,
                                   code="invalid_api_key", type_="authentication_error")
        return await handler(request)

    return check


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}") from None


@asynccontextmanager
async def task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """A TaskGroup that re-raises its first failure bare, so the error middleware can map it."""
    try:
        async with asyncio.TaskGroup() as tg:
            yield tg
    except BaseExceptionGroup as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


def _seeded(generation: GenerationRequest, index: int) -> GenerationRequest:
    """The i-th of n choices: a distinct seed so sampled choices differ but stay reproducible."""
    seed = generation.params.seed
    if index == 0 or seed is None:
        return generation
    params = dataclasses.replace(generation.params, seed=seed + index)
    return dataclasses.replace(generation, params=params)


class OpenAIRoutes:
    """Handlers for /v1/chat/completions, /v1/completions, /v1/models and /health."""

    def __init__(self, pool: InstancePool, config: ApiConfig) -> None:
        self.pool = pool
        self.config = config
        self.started = time.time()

    def _model_name(self, parsed: ParsedRequest) -> str:
        wanted = parsed.model
        if wanted and wanted.lower() not in (self.pool.model_id.lower(), *MODEL_ALIASES):
            raise RequestError(f"the model {wanted!r} does not exist; this node serves "
                               f"{self.pool.model_id!r}", status=404, param="model",
                               code="model_not_found")
        return self.pool.model_id

    async def health(self, _request: web.Request) -> web.Response:
        """Liveness and load of this node."""
        return web.json_response({
            "status": "ok", "model": self.pool.model_id, "backend": self.pool.backend_name,
            "instances": len(self.pool.instances), "load": self.pool.load(),
            "queue_depth": self.pool.queue_depth(), "uptime_s": round(time.time() - self.started, 1),
        })

    async def models(self, _request: web.Request) -> web.Response:
        """The one model this node serves, in OpenAI's list format."""
        return web.json_response({"object": "list", "data": [{
            "id": self.pool.model_id, "object": "model", "created": int(self.started),
            "owned_by": "local-swarm"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions."""
        parsed = parse_chat(await _json_body(request), max_tokens_limit=self.config.max_tokens_limit,
                            max_n=self.config.max_n)
        return await self._serve(request, parsed, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/completions."""
        parsed = parse_completion(await _json_body(request),
                                  max_tokens_limit=self.config.max_tokens_limit,
                                  max_n=self.config.max_n)
        return await self._serve(request, parsed, chat=False)

    async def _serve(self, request: web.Request, parsed: ParsedRequest,
                     chat: bool) -> web.StreamResponse:
        model = self._model_name(parsed)
        rid = fmt.new_id("chatcmpl" if chat else "cmpl")
        if parsed.stream:
            return await self._stream(request, parsed, model, rid, chat)
        choices = await self._choices(parsed)
        build = fmt.chat_completion if chat else fmt.text_completion
        return web.json_response(build(rid, model, choices))

    async def _choices(self, parsed: ParsedRequest) -> list[Completion]:
        async with task_group() as tg:
            tasks = [tg.create_task(self.pool.complete(_seeded(parsed.generation, i)))
                     for i in range(parsed.n)]
        return [t.result() for t in tasks]

    async def _stream(self, request: web.Request, parsed: ParsedRequest, model: str, rid: str,
                      chat: bool) -> web.StreamResponse:
        chunks = fmt.ChunkBuilder(rid, model, chat)
        streams = [self.pool.stream(_seeded(parsed.generation, i)) for i in range(parsed.n)]
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        totals = {"prompt": 0, "completion": 0}

        async def pump(index: int) -> None:
            async with aclosing(streams[index]) as events:
                async for event in events:
                    await queue.put((index, event))

        # The first event comes before the 200 so that bad prompts still get a 4xx.
        first = await anext(aiter(streams[0]))
        response = EventSourceResponse(sep="\n", ping_interval=10, allow_all_methods=True)
        await response.prepare(request)

        async def send(index: int, event: Any) -> None:
            if isinstance(event, StreamEnd):
                totals["prompt"] = event.prompt_tokens
                totals["completion"] += event.completion_tokens
                await response.send(json.dumps(chunks.finish(index, event.finish_reason)))
            elif event.text:
                await response.send(json.dumps(chunks.delta(index, event.text)))

        async with task_group() as tg:
            if chat:
                for i in range(parsed.n):
                    await response.send(json.dumps(chunks.role(i)))
            await send(0, first)
            pumps = [tg.create_task(pump(i)) for i in range(parsed.n)]
            ended = 1 if isinstance(first, StreamEnd) else 0
            while ended < parsed.n:
                index, event = await queue.get()
                ended += isinstance(event, StreamEnd)
                await send(index, event)
            for task in pumps:
                task.cancel()
        if parsed.include_usage:
            await response.send(json.dumps(chunks.usage(totals["prompt"], totals["completion"])))
        await response.send("[DONE]")
        response.stop_streaming()
        return response


def build_app(pool: InstancePool, config: ApiConfig) -> web.Application:
    """The aiohttp application for one node."""
    app = web.Application(client_max_size=config.max_body_bytes,
                          middlewares=[error_middleware, auth_middleware(config.keys)])
    app[POOL_KEY] = pool
    app[CONFIG_KEY] = config
    routes = OpenAIRoutes(pool, config)
    app.router.add_get("/health", routes.health)
    app.router.add_get("/v1/models", routes.models)
    app.router.add_post("/v1/chat/completions", routes.chat)
    app.router.add_post("/v1/completions", routes.completions)
    return app
