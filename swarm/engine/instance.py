"""One loaded model on this machine: a `Source` with its own worker thread and bounded queue.

Thread safety: only the worker thread generates; `Instance.use()` counts every thread inside the
engine (the worker, and token counting from `InstancePool.prompt_tokens`), and closing cancels every
job, then frees the engine only once that count is zero. A job cancelled while queued never reaches
the engine; a running one stops at its next token (or prompt chunk), and releases its queue slot only
when the worker has let go of the engine."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace

from swarm.engine.backend import (
    Backend,
    FinishReason,
    GenerationRequest,
    StreamEnd,
    TokenEvent,
)
from swarm.engine.decoding import StopMatcher
from swarm.engine.embedding import Embeddings
from swarm.engine.source import LOCAL_NODE, Answer, gather
from swarm.errors import InstanceClosedError, PoolBusyError

log = logging.getLogger(__name__)

_DONE = object()
RECENT_GENERATIONS = 16  # generations the decode speed (`InstancePool.tok_s`) is measured over
CLOSE_WAIT_S = 1.0  # how long closing waits for workers to leave the engine before freeing it


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
        self.on_idle_change: Callable[[], None] | None = None  # called when it turns busy or idle
        self.served = 0
        self.tokens = 0  # completion tokens generated here, for anyone (usage accounting)
        self.recent: deque[tuple[int, float]] = deque(maxlen=RECENT_GENERATIONS)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"instance-{index}")
        self._state = threading.Condition()
        self._users = 0  # threads inside the engine now
        self._jobs: dict[threading.Event, Callable[[object], None]] = {}  # held jobs: cancel, emit
        self._closed = False
        self._freed = False

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

    @contextmanager
    def use(self) -> Iterator[Backend]:
        """Hold the engine for one blocking call; raises `InstanceClosedError` once closing."""
        with self._state:
            if self._closed:
                raise InstanceClosedError(self.index)
            self._users += 1
        try:
            yield self.backend
        finally:
            with self._state:
                self._users -= 1
                self._state.notify_all()

    def _run(self, request: GenerationRequest, cancel: threading.Event, emit) -> None:
        """The worker's side of one job (runs in the instance's thread)."""
        try:
            if not cancel.is_set():  # a job cancelled while queued never reaches the engine
                with self.use() as backend:
                    emit(backend.count_tokens(backend.prompt_text(request)))
                    events = backend.stream(request, cancel)
                    try:
                        for event in events:
                            emit(event)
                    finally:  # the generator's own cleanup runs here, inside the engine's use
                        getattr(events, "close", lambda: None)()
            if self._closed:
                raise InstanceClosedError(self.index)
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

        def emit(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody listens any more
                cancel.set()

        with self._state:
            if self._closed:
                raise InstanceClosedError(self.index)
            self._jobs[cancel] = emit
            future = loop.run_in_executor(self._executor, self._run, request, cancel, emit)
        self._count(+1)
        future.add_done_callback(lambda _f: self._release(cancel))
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
                count += item.token_id >= 0  # an event of text alone (id -1) is no token
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
            # The consumer left (finished, disconnected or cancelled): the worker stops at its
            # next token and frees the slot (`_release`) once it has let go of the engine.
            cancel.set()
            self.tokens += count
            if count:
                self.recent.append((count, time.perf_counter() - started))

    async def complete(self, request: GenerationRequest) -> Answer:
        """Run one generation to the end and return it whole."""
        started = time.perf_counter()
        completion = await gather(self.stream(request), request)
        log.debug("instance %d: %d tokens in %.2fs", self.index, len(completion.token_ids),
                  time.perf_counter() - started)
        return Answer(completion, self.source_id)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """Embed `texts` on this instance's thread (it queues with generations, and counts in
        its load); PoolBusyError when its slots are full, InstanceClosedError once closing."""
        if self.active >= self.slots:
            raise PoolBusyError(retry_after_s=max(1, self.active - self.slots + 1))
        loop = asyncio.get_running_loop()
        job = threading.Event()  # a batch is never cut midway: this only keys the held job
        with self._state:
            if self._closed:
                raise InstanceClosedError(self.index)
            self._jobs[job] = lambda _item: None
            future = loop.run_in_executor(self._executor, self._embed, list(texts))
        self._count(+1)
        future.add_done_callback(lambda _f: self._release(job))
        try:
            # A client that leaves does not stop a batch midway: the slot stays taken until it ends.
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled() and self._closed:  # dropped from the queue by begin_close
                raise InstanceClosedError(self.index) from None
            raise

    def _embed(self, texts: list[str]) -> Embeddings:
        with self.use() as backend:
            return backend.embed(texts)

    def _count(self, delta: int) -> None:
        """Add `delta` to the requests here; tell `on_idle_change` when that starts or ends work
        (on the event loop: a job's done callback runs there)."""
        was_idle = self.active == 0
        self.active += delta
        if was_idle != (self.active == 0) and self.on_idle_change is not None:
            self.on_idle_change()

    def _release(self, cancel: threading.Event) -> None:
        self._count(-1)
        self.served += 1
        with self._state:
            self._jobs.pop(cancel, None)

    def begin_close(self) -> None:
        """Take no more work and cancel every job, queued or running (does not wait): each
        consumer gets `InstanceClosedError` at once (a 429 while the server still answers), and
        the worker stops at its next token or prompt batch."""
        with self._state:
            self._closed = True
            for cancel, emit in self._jobs.items():
                cancel.set()
                emit(InstanceClosedError(self.index))
        self._executor.shutdown(wait=False)

    def finish_close(self, deadline: float, free: bool = True) -> bool:
        """Wait (until the `time.monotonic()` deadline) for every thread to leave the engine, then
        free it (unless `free` is False: a process about to exit); True when no thread is left
        inside. A worker still inside after the deadline keeps the engine: it is leaked rather
        than freed under a running thread."""
        with self._state:
            idle = self._state.wait_for(lambda: self._users == 0,
                                        max(0.0, deadline - time.monotonic()))
            if not idle:
                log.warning("instance %d: a worker is still inside the engine; not freeing it",
                            self.index)
            freeing = idle and free and not self._freed
            self._freed = self._freed or freeing
        if freeing:
            self.backend.close()
        return idle
