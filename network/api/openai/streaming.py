"""Server-sent events for the OpenAI routes: one event per token written straight to the socket,
n choices fanned in, an error after the 200 sent as the last event, and the TaskGroup that
re-raises its first failure bare."""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

from aiohttp_sse import EventSourceResponse

from network.api.errors import as_request_error
from network.api.openai import format as fmt
from network.api.openai.schema import ParsedRequest
from swarm.engine.backend import StreamEnd
from swarm.errors import RequestError

log = logging.getLogger(__name__)

SSE_BUFFER_LIMIT = 1 << 16  # bytes a stream may have unsent before a write waits, with a timeout


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


async def emit(response: EventSourceResponse, data: str, transport: Any = None) -> None:
    """One SSE event of one-line JSON. Written straight to the socket while its buffer has room
    (the common case: one write per token, no timer); through `send` and its stalled-client
    timeout once the client stops reading (or when the `transport` is not known)."""
    if transport is not None and transport.get_write_buffer_size() < SSE_BUFFER_LIMIT:
        await response.write(b"data: " + data.encode() + b"\n\n")
    else:
        await response.send(data)


async def send_error(response: EventSourceResponse, exc: Exception) -> None:
    """End a stream that already sent its 200 with an OpenAI error event and `[DONE]`."""
    error = as_request_error(exc)
    if error is None:
        log.error("stream failed after it started", exc_info=exc)
        error = RequestError("internal error; see the node's log", status=500,
                             type_="server_error")
    await response.send(json.dumps(error.body()))
    await response.send("[DONE]")
    response.stop_streaming()


async def pump_route(response: EventSourceResponse, parsed: ParsedRequest,
                      chunks: fmt.ChunkBuilder, streams: list[Any], first: Any,
                     chat: bool, transport: Any) -> dict[str, Any]:
    """Send route-mode streams as OpenAI chunks (one per token, n choices fanned in), usage and
    `[DONE]`; the token totals, per choice too."""
    totals: dict[str, Any] = {"prompt": 0, "completion": 0, "per_choice": [0] * parsed.n}
    offsets = [0] * parsed.n
    params = parsed.generation.params

    async def send(index: int, event: Any) -> None:
        if isinstance(event, StreamEnd):
            totals["prompt"] = event.prompt_tokens
            totals["completion"] += event.completion_tokens
            totals["per_choice"][index] = event.completion_tokens
            for data in chunks.end(index, event.finish_reason):
                await emit(response, data, transport)
            return
        logprobs = None
        if params.logprobs and event.token_id >= 0:
            logprobs = (fmt.chat_logprobs if chat else fmt.text_logprobs)(
                [event.piece], [event.logprob], [event.top] if params.top_logprobs else [],
                *(() if chat else (offsets[index],)))
        if event.text or logprobs is not None:
            offsets[index] += len(event.text)
            for data in chunks.deltas(index, event.text, logprobs):
                await emit(response, data, transport)

    if chat:
        for i in range(parsed.n):
            await emit(response, json.dumps(chunks.role(i)), transport)
    await send(0, first)
    if parsed.n == 1:  # the common case: no fan-in, one task, one hop per token
        async with aclosing(streams[0]) as events:
            async for event in events:
                await send(0, event)
    else:
        await fan_in(streams, first, parsed.n, send)
    if parsed.include_usage:
        await emit(response, json.dumps(chunks.usage(totals["prompt"], totals["completion"])),
                   transport)
    await response.send("[DONE]")
    response.stop_streaming()
    return totals

async def fan_in(streams: list[Any], first: Any, n: int, send: Any) -> None:
    """Send the events of `n` streams as they come, until each has ended."""
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(index: int) -> None:
        async with aclosing(streams[index]) as events:
            async for event in events:
                await queue.put((index, event))

    async with task_group() as tg:
        pumps = [tg.create_task(pump(i)) for i in range(n)]
        ended = 1 if isinstance(first, StreamEnd) else 0
        while ended < n:
            index, event = await queue.get()
            ended += isinstance(event, StreamEnd)
            await send(index, event)
        for task in pumps:
            task.cancel()
