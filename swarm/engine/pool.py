"""The local instance pool: N loaded backends, each a `Source` with its own thread and bounded
queue. Which instance takes a request is the chooser's decision (network/coordination/chooser.py);
an instance only refuses work past its slots."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from swarm.engine.backend import (
    Backend,
    Completion,
    FinishReason,
    GenerationRequest,
    StreamEnd,
    TokenEvent,
    TopLogprob,
    check_context,
)
from swarm.engine.decoding import StopMatcher
from swarm.engine.source import LOCAL_NODE, Answer
from swarm.errors import PoolBusyError

__all__ = ["Instance", "InstancePool", "PoolBusyError", "StreamEnd"]

log = logging.getLogger(__name__)

_DONE = object()
RECENT_GENERATIONS = 16  # generations the decode speed (`InstancePool.tok_s`) is measured over


class Instance:
    """One loaded backend with its own worker thread and a bounded queue: a `Source` of this
    node (`node_id`, benchmark `score`) that runs one request and queues `slots - 1` more."""

    def __init__(self, index: int, backend: Backend, queue_depth: int, *,
                 node_id: str = LOCAL_NODE, score: float = 0.0) -> None:
        self.index = index
        self.backend = backend
        self.node_id = node_id
        self.score = score
        self.slots = queue_depth + 1
        self.active = 0
        self.served = 0
        self.tokens = 0  # completion tokens generated here, for anyone (usage accounting)
        self.recent: deque[tuple[int, float]] = deque(maxlen=RECENT_GENERATIONS)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"instance-{index}")

    @property
    def source_id(self) -> str:
        """A stable name for this instance in consensus reports."""
        return f"local/{self.index}"

    def load(self) -> float:
        """Requests running or waiting here (0 idle, 1 running, +1 per queued)."""
        return float(self.active)

    def capacity(self) -> int:
        """Requests this instance still takes before refusing with `PoolBusyError`."""
        return max(self.slots - self.active, 0)

    def _run(self, request: GenerationRequest, cancel: threading.Event, emit) -> None:
        try:
            prompt = self.backend.count_tokens(self.backend.prompt_text(request))
            emit(prompt)
            for event in self.backend.stream(request, cancel):
                emit(event)
        except BaseException as exc:  # crosses the thread boundary to the awaiting consumer
            emit(exc)
        finally:
            emit(_DONE)

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[TokenEvent | StreamEnd, None]:
        """Run one generation; stop strings applied; the final item is a `StreamEnd`."""
        if self.active >= self.slots:
            raise PoolBusyError(retry_after_s=max(1, self.active - self.slots + 1))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()
        self.active += 1

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        future = loop.run_in_executor(self._executor, self._run, request, cancel, emit)
        future.add_done_callback(lambda _f: self._release())
        stops = StopMatcher(request.params.stop)
        count = 0
        prompt_tokens = 0
        started = time.perf_counter()
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, int):
                    prompt_tokens = item
                    continue
                assert isinstance(item, TokenEvent)
                count += 1
                text = stops.feed(item.text)
                if stops.stopped:
                    cancel.set()
                    if text:
                        yield replace(item, text=text)
                    yield StreamEnd("stop", prompt_tokens, count)
                    return
                yield item if text == item.text else replace(item, text=text)
            tail = stops.flush()
            if tail:
                yield TokenEvent(tail, -1, 0.0)
            finish: FinishReason = "length" if count >= request.params.max_tokens else "stop"
            yield StreamEnd(finish, prompt_tokens, count)
        finally:
            # The consumer left (finished, disconnected or cancelled): free the compute.
            cancel.set()
            self.tokens += count
            if count:
                self.recent.append((count, time.perf_counter() - started))

    async def complete(self, request: GenerationRequest) -> Answer:
        """Run one generation to the end and return it whole."""
        texts: list[str] = []
        ids: list[int] = []
        logprobs: list[float] = []
        pieces: list[bytes] = []
        top: list[tuple[TopLogprob, ...]] = []
        end = StreamEnd("cancelled", 0, 0)
        started = time.perf_counter()
        async for event in self.stream(request):
            if isinstance(event, StreamEnd):
                end = event
                continue
            texts.append(event.text)
            if event.token_id >= 0:
                ids.append(event.token_id)
                logprobs.append(event.logprob)
                if request.params.logprobs:
                    pieces.append(event.piece)
                if request.params.top_logprobs:
                    top.append(event.top)
        log.debug("instance %d: %d tokens in %.2fs", self.index, len(ids),
                  time.perf_counter() - started)
        return Answer(Completion("".join(texts), tuple(ids), tuple(logprobs), end.finish_reason,
                                 end.prompt_tokens, tuple(pieces), tuple(top)), self.source_id)

    def _release(self) -> None:
        self.active -= 1
        self.served += 1

    def close(self) -> None:
        """Stop the worker thread and free the model."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.backend.close()


class InstancePool:
    """This node's instances (every one serves the same model) and what they have in common."""

    def __init__(self, backends: Sequence[Backend], queue_depth: int = 8, *,
                 node_id: str = LOCAL_NODE, score: float = 0.0) -> None:
        if not backends:
            raise ValueError("an InstancePool needs at least one backend")
        self.node_id = node_id
        self.instances = [Instance(i, b, queue_depth, node_id=node_id, score=score)
                          for i, b in enumerate(backends)]

    @property
    def model_id(self) -> str:
        """The id of the model every instance serves."""
        return self.instances[0].backend.model_id

    @property
    def backend_name(self) -> str:
        """Which engine the instances run."""
        return self.instances[0].backend.name

    @property
    def context_length(self) -> int:
        """The model's context window in tokens."""
        return self.instances[0].backend.context_length

    def load(self) -> float:
        """Fraction of instance slots busy, 0..1 (queued work counts)."""
        return sum(min(i.active, 1) for i in self.instances) / len(self.instances)

    def queue_depth(self) -> int:
        """Requests waiting behind running ones, over all instances."""
        return sum(max(i.active - 1, 0) for i in self.instances)

    def tokens(self) -> int:
        """Completion tokens generated by every instance since start (for anyone: this node's
        API clients and peers' votes alike)."""
        return sum(i.tokens for i in self.instances)

    def tok_s(self) -> float:
        """Decode speed of one instance, tokens per second over its last generations (time to
        the first token included), averaged over the instances; 0 before any."""
        recent = [item for i in self.instances for item in i.recent]
        seconds = sum(s for _n, s in recent)
        return sum(n for n, _s in recent) / seconds if seconds > 0 else 0.0

    async def prompt_tokens(self, request: GenerationRequest) -> int:
        """The request's prompt length in the model's tokens, counted off the event loop."""
        backend = self.instances[0].backend

        def count() -> int:
            return backend.count_tokens(backend.prompt_text(request))

        return await asyncio.to_thread(count)

    async def check_fits(self, request: GenerationRequest) -> int:
        """Raise `ContextOverflowError` now if the request cannot fit the context (off the loop);
        return the prompt's token count."""
        tokens = await self.prompt_tokens(request)
        check_context(tokens, request.params.max_tokens, self.context_length)
        return tokens

    def close(self) -> None:
        """Close every instance."""
        for instance in self.instances:
            instance.close()
