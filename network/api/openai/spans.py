"""`"swarm": {"strategy": "spans"}`: one answer generated through the span chain (the node's
`SpanService`), as a JSON body or streamed as SSE like any other completion."""
from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from network.api.openai import format as fmt
from network.api.openai.schema import ParsedRequest
from swarm.engine.backend import Completion
from swarm.errors import RequestError


def span_request(parsed: ParsedRequest) -> dict[str, Any]:
    """The span worker's generate request for an API request."""
    generation = parsed.generation
    params = generation.params
    request: dict[str, Any] = {"max_tokens": params.max_tokens, "temperature": params.temperature,
                               "top_p": params.top_p, "seed": params.seed}
    if generation.prompt is not None:
        request["prompt"] = generation.prompt
    else:
        request["messages"] = [{"role": m.role, "content": m.content}
                               for m in generation.messages]
    return request


def _report(node_id: str, started: float, tokens: int) -> dict[str, Any]:
    return {"strategy": "spans", "winner": node_id, "early_stop": False,
            "candidates": [{"source": f"{node_id}/spans", "latency_s":
                            round(time.perf_counter() - started, 4), "tokens": tokens}]}


async def serve_spans(spans: Any, request: web.Request, parsed: ParsedRequest, model: str,
                      rid: str, chat: bool) -> web.StreamResponse:
    """Answer through the span chain; 400 without --spans, 503 while the chain cannot serve."""
    if spans is None:
        raise RequestError("this node does not serve layer spans (start it with --federation "
                           "--spans)", param="swarm", code="spans_disabled")
    if parsed.n > 1:
        raise RequestError("n > 1 cannot be combined with spans", param="n")
    started = time.perf_counter()
    events = spans.generate(span_request(parsed))
    first = await anext(aiter(events))  # errors before the 200 become a 4xx/5xx body
    if not parsed.stream:
        texts, ids, final = [], [], first
        if not first.get("done"):
            texts.append(first["text"])
            ids.append(first["token"])
            async for event in events:
                if event.get("done"):
                    final = event
                    break
                texts.append(event["text"])
                ids.append(event["token"])
        completion = Completion("".join(texts), tuple(ids), tuple(0.0 for _ in ids),
                                final.get("finish_reason", "stop"), final.get("prompt_tokens", 0))
        build = fmt.chat_completion if chat else fmt.text_completion
        return web.json_response(build(rid, model, [completion],
                                       {"swarm": _report(spans.node_id, started, len(ids))}))
    chunks = fmt.ChunkBuilder(rid, model, chat)
    response = EventSourceResponse(sep="\n", ping_interval=10, allow_all_methods=True)
    await response.prepare(request)
    if chat:
        await response.send(json.dumps(chunks.role(0)))
    tokens, event = 0, first
    try:
        while not event.get("done"):
            tokens += 1
            if event["text"]:
                await response.send(json.dumps(chunks.delta(0, event["text"])))
            event = await anext(events)
        final = chunks.finish(0, event.get("finish_reason", "stop"))
        final["swarm"] = _report(spans.node_id, started, tokens)
        await response.send(json.dumps(final))
        if parsed.include_usage:
            await response.send(json.dumps(chunks.usage(event.get("prompt_tokens", 0), tokens)))
    except RequestError as exc:  # the 200 is gone: the error travels as the last event
        await response.send(json.dumps(exc.body()))
    await response.send("[DONE]")
    response.stop_streaming()
    return response
