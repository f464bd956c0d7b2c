"""The instance pool's threading: a worker never runs on a freed engine, cancellation stops the
worker at its next token and frees the slot only once it has let go, a request cancelled while
queued never reaches the engine, and closing waits (boundedly) for the worker before freeing.

The backend here is a gate: each token waits for the test to let it through, so every interleaving
below is forced, not timed. The real engines under the same load are in test_engine_stress.py.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams, TokenEvent
from swarm.engine.pool import InstanceClosedError, InstancePool, StreamEnd
from swarm.errors import EngineError
from tests.federation_fixtures import until

ASK = GenerationRequest(messages=(ChatMessage("user", "Hi"),), params=SamplingParams(max_tokens=50))


class GateBackend:
    """Yields one token per `step()` of the test; records every use after `close()`."""

    name = "gate"
    model_id = "gate"
    context_length = 2048

    def __init__(self, *, honours_cancel: bool = True) -> None:
        self.honours_cancel = honours_cancel
        self.gate = threading.Semaphore(0)
        self.entered = threading.Event()  # a generation reached the engine
        self.prompts: list[GenerationRequest] = []
        self.used_after_close: list[str] = []
        self.tokens_after_cancel = 0
        self.inside = 0
        self.closed = False

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.gate.release()

    def _touch(self, what: str) -> None:
        if self.closed:
            self.used_after_close.append(what)

    def prompt_text(self, request: GenerationRequest) -> str:
        self._touch("prompt_text")
        return request.messages[0].content

    def count_tokens(self, text: str) -> int:
        self._touch("count_tokens")
        return len(text.split())

    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[TokenEvent]:
        self.prompts.append(request)
        self.inside += 1
        self.entered.set()
        try:
            for k in range(request.params.max_tokens):
                if cancel.is_set() and self.honours_cancel:
                    return
                self.gate.acquire()
                self._touch("token")
                self.tokens_after_cancel += cancel.is_set()
                yield TokenEvent(f" t{k}", k, -0.5)
        finally:
            self.inside -= 1

    def close(self) -> None:
        assert self.inside == 0, "engine freed while a generation runs in it"
        self.closed = True


async def drain(pool: InstancePool, request: GenerationRequest = ASK) -> list[object]:
    return [event async for event in pool.instances[0].stream(request)]


async def test_a_cancelled_stream_stops_at_the_next_token_and_frees_the_slot_after_the_worker():
    backend = GateBackend()
    pool = InstancePool([backend], queue_depth=2)
    instance = pool.instances[0]
    task = asyncio.create_task(drain(pool))
    backend.step(3)
    await until(lambda: backend.entered.is_set(), what="the generation to start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert instance.active == 1  # the worker may still be inside the engine: slot held
    backend.step(1)  # at most one more token, then the worker sees the cancel
    await until(lambda: instance.active == 0, what="the worker to let go")
    assert backend.inside == 0 and backend.tokens_after_cancel <= 1
    assert pool.close() and backend.closed and not backend.used_after_close


async def test_a_request_cancelled_in_the_queue_never_reaches_the_engine():
    backend = GateBackend()
    pool = InstancePool([backend], queue_depth=2)
    first = asyncio.create_task(drain(pool))
    await until(lambda: backend.entered.is_set(), what="the first generation to start")
    queued = asyncio.create_task(drain(pool))
    await until(lambda: pool.instances[0].active == 2, what="the second to queue")
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    backend.step(ASK.params.max_tokens)
    events = await first
    assert isinstance(events[-1], StreamEnd) and events[-1].finish_reason == "length"
    await until(lambda: pool.instances[0].active == 0, what="both jobs to leave the worker")
    assert len(backend.prompts) == 1  # the cancelled one was never generated
    pool.close()


async def test_close_cancels_running_and_queued_work_and_frees_only_after_the_worker_left():
    backend = GateBackend()
    pool = InstancePool([backend], queue_depth=4)
    running = asyncio.create_task(drain(pool))
    await until(lambda: backend.entered.is_set(), what="the generation to start")
    queued = asyncio.create_task(drain(pool))
    await until(lambda: pool.instances[0].active == 2, what="the second to queue")

    threading.Timer(0.2, backend.step).start()  # the worker is parked mid-token until then
    assert await asyncio.to_thread(pool.close, 5.0)  # waited for the worker, then freed
    assert backend.closed and not backend.used_after_close and backend.inside == 0
    for task in (running, queued):
        with pytest.raises(InstanceClosedError):
            await task
    assert len(backend.prompts) == 1
    with pytest.raises(InstanceClosedError):
        await drain(pool)
    with pytest.raises(EngineError):
        await pool.prompt_tokens(ASK)


async def test_close_leaks_rather_than_frees_an_engine_a_stuck_worker_is_still_in():
    backend = GateBackend(honours_cancel=False)
    pool = InstancePool([backend], queue_depth=1)
    running = asyncio.create_task(drain(pool))
    await until(lambda: backend.entered.is_set(), what="the generation to start")
    assert not await asyncio.to_thread(pool.close, 0.2)
    assert not backend.closed  # never freed under the running thread
    backend.step(ASK.params.max_tokens)
    with pytest.raises(InstanceClosedError):
        await running
    await until(lambda: backend.inside == 0, what="the stuck worker to finish")
    assert pool.close(1.0) and backend.closed and not backend.used_after_close


async def test_a_process_about_to_exit_waits_for_its_workers_without_freeing_the_engines():
    backend = GateBackend()
    pool = InstancePool([backend], queue_depth=1)
    running = asyncio.create_task(drain(pool))
    await until(lambda: backend.entered.is_set(), what="the generation to start")
    threading.Timer(0.2, backend.step).start()  # lets the parked worker reach its next token
    assert await asyncio.to_thread(pool.close, 5.0, False)
    assert backend.inside == 0 and not backend.closed  # joined; the exit frees the memory
    with pytest.raises(InstanceClosedError):
        await running


async def test_closing_answers_the_consumers_at_once_while_the_worker_is_still_inside():
    """A shutdown's 429 must not wait for the engine's next token (a slow token under load
    outlasts the server's own shutdown wait, and the client would get a dropped connection)."""
    backend = GateBackend()
    pool = InstancePool([backend], queue_depth=1)
    running = asyncio.create_task(drain(pool))
    await until(lambda: backend.entered.is_set(), what="the generation to start")
    pool.begin_close()
    async with asyncio.timeout(5):  # the worker stays parked: only the close itself can answer
        with pytest.raises(InstanceClosedError):
            await running
    assert backend.inside == 1 and pool.instances[0].active == 1  # parked mid-token, slot held
    backend.step()
    assert await asyncio.to_thread(pool.close, 5.0)
    assert backend.closed and backend.inside == 0 and not backend.used_after_close
