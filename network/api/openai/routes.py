"""The generation endpoints: route to one instance (streamed as generated) or run a consensus.
Which instance or peer takes the work is the chooser's decision (network/coordination/chooser.py)."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from consensus.candidates import Decision
from consensus.service import ConsensusService, SwarmOptions, options_from
from network.api.dashboard.ledger import Ledger
from network.api.limits import ClientLimiter, parse_json_body
from network.api.openai import format as fmt
from network.api.openai.schema import ParsedRequest, parse_chat, parse_completion
from network.api.openai.streaming import pump_route, send_error, task_group
from network.api.openai.trace import Trace
from network.coordination.chooser import fill, spread
from network.federation.forwarding import SERVED_BY_HEADER, RouteForwarder
from swarm.engine.backend import (
    Completion,
    ContextOverflowError,
    GenerationRequest,
    check_context,
)
from swarm.engine.pool import Instance, InstancePool
from swarm.errors import PoolBusyError, RequestError
from swarm.node.config import ApiConfig, ConsensusConfig

log = logging.getLogger(__name__)

MODEL_ALIASES = ("default", "local-swarm")


def _seeded(generation: GenerationRequest, index: int) -> GenerationRequest:
    """The i-th of n choices: a distinct seed so sampled choices differ but stay reproducible."""
    seed = generation.params.seed
    if index == 0 or seed is None:
        return generation
    params = dataclasses.replace(generation.params, seed=seed + index)
    return dataclasses.replace(generation, params=params)


def _route_report(instances: list[Instance], latencies: list[float],
                  choices: list[Completion]) -> dict[str, Any]:
    return {"strategy": "route", "winner": instances[0].source_id, "early_stop": False,
            "candidates": [{"source": i.source_id, "latency_ms": round(t * 1000, 1),
                            "tokens": c.completion_tokens, "score": None, "votes": None,
                            "valid": True, "error": None}
                           for i, t, c in zip(instances, latencies, choices, strict=True)]}


class CompletionRoutes:
    """POST /v1/chat/completions and /v1/completions; each request is recorded in `ledger`."""

    def __init__(self, pool: InstancePool, api: ApiConfig, defaults: ConsensusConfig,
                 consensus: ConsensusService | None = None,
                 forwarder: RouteForwarder | None = None, ledger: Ledger | None = None) -> None:
        self.pool = pool
        self.forwarder = forwarder
        self.api = api
        self.defaults = defaults
        self.consensus = consensus or ConsensusService(lambda: pool.instances, spread)
        self.limiter = ClientLimiter(api.max_concurrent_per_client)
        self.ledger = ledger

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions."""
        async with self.limiter.hold(request.remote or "unknown"), \
                Trace("openai", request.path).recorded(self.ledger) as trace:
            parsed = parse_chat(await _json_body(request),
                                max_tokens_limit=self.api.max_tokens_limit, max_n=self.api.max_n)
            return await self._serve(request, parsed, trace, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/completions."""
        async with self.limiter.hold(request.remote or "unknown"), \
                Trace("openai", request.path).recorded(self.ledger) as trace:
            parsed = parse_completion(await _json_body(request),
                                      max_tokens_limit=self.api.max_tokens_limit,
                                      max_n=self.api.max_n)
            return await self._serve(request, parsed, trace, chat=False)

    async def check_prompt(self, parsed: ParsedRequest, chat: bool) -> None:
        """400 when the prompt is over `[api] max_prompt_tokens` or does not fit the context;
        the tokenizer runs off the event loop."""
        tokens = await self.pool.prompt_tokens(parsed.generation)
        limit = self.api.max_prompt_tokens
        param = "messages" if chat else "prompt"
        if tokens > limit:
            raise RequestError(f"the prompt has {tokens} tokens; this node accepts at most "
                               f"{limit}", param=param, code="prompt_too_long")
        try:
            check_context(tokens, parsed.generation.params.max_tokens, self.pool.context_length)
        except ContextOverflowError as exc:
            raise RequestError(str(exc), param=param, code="context_length_exceeded") from None

    def model_name(self, parsed: ParsedRequest) -> str:
        """The model a request names, checked against this node's (404 when another)."""
        return self.check_model(parsed.model)

    def check_model(self, wanted: str | None) -> str:
        """This node's model id when `wanted` names it (or an alias, or nothing); else 404."""
        if wanted and wanted.lower() not in (self.pool.model_id.lower(), *MODEL_ALIASES):
            raise RequestError(f"the model {wanted!r} does not exist; this node serves "
                               f"{self.pool.model_id!r}", status=404, param="model",
                               code="model_not_found")
        return self.pool.model_id

    def options(self, parsed: ParsedRequest) -> SwarmOptions:
        """The request's `swarm` field over the configured defaults (400 when invalid)."""
        try:
            options = options_from(parsed.swarm, self.defaults, self.api.max_n)
            if options.strategy != "route":
                from consensus.validators import build_validator

                build_validator(parsed.response_format, regex=options.regex)
        except (ValueError, RecursionError) as exc:
            raise RequestError(str(exc), param="swarm", code="invalid_value") from None
        if options.strategy != "route" and parsed.n > 1:
            raise RequestError("n > 1 cannot be combined with a consensus strategy; use swarm.n "
                               "for the number of candidates", param="n")
        return options

    async def _serve(self, request: web.Request, parsed: ParsedRequest, trace: Trace,
                     chat: bool) -> web.StreamResponse:
        model = self.model_name(parsed)
        options = self.options(parsed)
        rid = fmt.new_id("chatcmpl" if chat else "cmpl")
        trace.id, trace.model, trace.strategy = rid, model, options.strategy
        build = fmt.chat_completion if chat else fmt.text_completion
        logprobs = parsed.generation.params.logprobs
        tools = parsed.generation.tools is not None
        await self.check_prompt(parsed, chat)
        if options.strategy != "route":
            if self.consensus.saturated():
                # Every queue is full: refuse now rather than fan out and wait (or stream a 200).
                raise PoolBusyError(retry_after_s=1)
            if parsed.stream:
                return await self._stream_decision(request, parsed, options, model, rid, chat,
                                                   trace)
            decision = await self.consensus.decide(parsed.generation, options,
                                                   parsed.response_format)
            trace.decided(decision)
            assert decision.completion is not None
            return web.json_response(build(rid, model, [decision.completion],
                                           {"swarm": decision.to_dict()}, logprobs, tools))
        if self.forwarder is not None and parsed.n == 1:
            relayed = await self.forwarder.maybe_forward(request, parsed.generation.needs)
            if relayed is not None:
                trace.forwarded_to = relayed.headers.get(SERVED_BY_HEADER)
                return relayed
        if parsed.stream:
            return await self._stream_route(request, parsed, model, rid, chat, trace)
        instances = fill(self.pool.instances, parsed.n)
        started = time.perf_counter()
        latencies = [0.0] * parsed.n

        async def one(i: int) -> Completion:
            answer = await instances[i].complete(_seeded(parsed.generation, i))
            latencies[i] = time.perf_counter() - started
            return answer.completion

        async with task_group() as tg:
            tasks = [tg.create_task(one(i)) for i in range(parsed.n)]
        choices = [t.result() for t in tasks]
        trace.report = _route_report(instances, latencies, choices)
        trace.prompt_tokens = choices[0].prompt_tokens
        trace.completion_tokens = sum(c.completion_tokens for c in choices)
        return web.json_response(build(rid, model, choices, {"swarm": trace.report}, logprobs,
                                       tools))

    async def _stream_route(self, request: web.Request, parsed: ParsedRequest, model: str,
                            rid: str, chat: bool, trace: Trace) -> web.StreamResponse:
        chunks = fmt.ChunkBuilder(rid, model, chat, parsed.generation.tools is not None)
        instances = fill(self.pool.instances, parsed.n)
        streams = [instances[i].stream(_seeded(parsed.generation, i)) for i in range(parsed.n)]
        # The first event comes before the 200 so that bad prompts still get a 4xx.
        first = await anext(aiter(streams[0]))
        response = EventSourceResponse(sep="\n", ping_interval=10, allow_all_methods=True)
        await response.prepare(request)
        started = time.perf_counter()
        try:
            totals = await pump_route(response, parsed, chunks, streams, first, chat,
                                            request.transport)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # the 200 is gone: the error travels as the last event
            await send_error(response, exc)
            trace.fail(exc)
            return response
        trace.prompt_tokens, trace.completion_tokens = totals["prompt"], totals["completion"]
        trace.report = {"strategy": "route", "winner": instances[0].source_id, "candidates": [
            {"source": instances[i].source_id, "tokens": totals["per_choice"][i],
             "latency_ms": round((time.perf_counter() - started) * 1000.0, 1), "valid": True}
            for i in range(parsed.n)]}
        return response

    async def _stream_decision(self, request: web.Request, parsed: ParsedRequest,
                               options: SwarmOptions, model: str, rid: str,
                               chat: bool, trace: Trace) -> web.StreamResponse:
        """Keep the stream alive with SSE comments while candidates run, then stream the winner."""
        chunks = fmt.ChunkBuilder(rid, model, chat, parsed.generation.tools is not None)
        response = EventSourceResponse(sep="\n", ping_interval=2, allow_all_methods=True)
        await response.prepare(request)
        try:
            decision: Decision = await self.consensus.decide(parsed.generation, options,
                                                             parsed.response_format)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # ConsensusError and bugs alike: the 200 is already sent
            await send_error(response, exc)
            trace.fail(exc)
            return response
        trace.decided(decision)
        winner = decision.completion
        assert winner is not None
        if chat:
            await response.send(json.dumps(chunks.role(0)))
        if parsed.generation.params.logprobs:  # the whole answer at once, with its logprobs
            logprobs = (fmt.chat_logprobs if chat else fmt.text_logprobs)(
                winner.pieces, winner.logprobs, winner.top)
            for data in chunks.deltas(0, winner.text, logprobs):
                await response.send(data)
        for piece in ([] if parsed.generation.params.logprobs
                      else re.findall(r"\s*\S+|\s+$", winner.text)):
            for data in chunks.deltas(0, piece):
                await response.send(data)
        *held, last = chunks.end(0, winner.finish_reason)
        for data in held:
            await response.send(data)
        final = json.loads(last)
        final["swarm"] = decision.to_dict()
        await response.send(json.dumps(final))
        if parsed.include_usage:
            await response.send(json.dumps(chunks.usage(winner.prompt_tokens,
                                                         winner.completion_tokens)))
        await response.send("[DONE]")
        response.stop_streaming()
        return response


async def _json_body(request: web.Request) -> Any:
    return parse_json_body(await request.read())
